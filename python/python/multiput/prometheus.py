"""Prometheus metrics of multiput clients: the counters each client keeps, per server.

Needs ``prometheus_client`` (``pip install prometheus_client``); ``multiput`` itself does not,
and importing this module does not import it either until a collector is made::

    import multiput
    from multiput.prometheus import MultiputCollector
    from prometheus_client import REGISTRY

    mc = multiput.Client(["10.0.0.1:11211", "10.0.0.2:11211"], replicas=2)
    REGISTRY.register(MultiputCollector(mc))

Every scrape reads ``mc.metrics()`` and exports each counter as a Prometheus counter,
``multiput_client_<name>_total{server="host:port"}``: hits, misses, sets, errors, timeouts,
down_events, repairs and stale. ``multiput_client_disagreements_total`` (replicated reads
whose replicas disagreed) has no ``server`` label: it counts reads, not servers. The counters
start at 0 when the client is made, so ``rate()`` works across restarts as for any counter.
docs/exporter.md lists the names with those of ``multiput exporter``, which exports the
servers' own ``stats``.

Several clients in one process (say Django's ``default`` and ``sessions`` caches) go into
one collector, each under its own ``client`` label, since Prometheus refuses two collectors
with the same metric names::

    REGISTRY.register(MultiputCollector({"default": mc, "sessions": sessions}))

Each process exports its own counters: with forked workers (gunicorn, uwsgi) a collector
reports the worker it runs in (``prometheus_client``'s multiprocess mode does not merge custom
collectors), so scrape each worker.
"""

from typing import Any, Dict, Iterator, List, Mapping, Tuple, Union

__all__ = ["MultiputCollector", "COUNTERS", "PREFIX"]

#: The prefix of every metric name.
PREFIX = "multiput_client_"

#: ``(name, help)`` of each per-server counter, in the order they are exported.
COUNTERS: Tuple[Tuple[str, str], ...] = (
    ("hits", "Reads that found the key."),
    ("misses", "Reads that did not find the key."),
    ("sets", "Stores the server confirmed."),
    (
        "errors",
        "Calls that failed on the server's side: timeouts, broken or refused connections, "
        "protocol violations, server errors.",
    ),
    ("timeouts", "Calls that timed out (also counted in errors)."),
    ("down_events", "Times the client marked the server down."),
    ("repairs", "Replicated reads that wrote the winning value back to this server."),
    ("stale", "Replicated reads that found this server's copy missing or older than the winner."),
)

DISAGREEMENTS_HELP = (
    "Replicated reads whose replicas disagreed (one per read, for the whole client)."
)


def _counter_family():
    try:
        from prometheus_client.core import CounterMetricFamily
    except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
        raise ImportError(
            "multiput.prometheus needs prometheus_client: pip install prometheus_client"
        ) from e
    return CounterMetricFamily


class MultiputCollector:
    """A ``prometheus_client`` collector of multiput clients' counters.

    ``clients`` is one client (``multiput.Client``, plain or replicated), or a mapping of
    names to clients, exported with a ``client="<name>"`` label. Register it with
    ``REGISTRY.register(MultiputCollector(...))``. Raises ImportError when
    ``prometheus_client`` is not installed.
    """

    def __init__(self, clients: Union[Any, Mapping[str, Any]]):
        self._family = _counter_family()
        if isinstance(clients, Mapping):
            self._clients: List[Tuple[Tuple[str, ...], Any]] = [
                ((str(name),), c) for name, c in clients.items()
            ]
            self._labels: Tuple[str, ...] = ("client",)
        else:
            self._clients = [((), clients)]
            self._labels = ()

    def _families(self) -> Dict[str, Any]:
        families = {
            name: self._family(PREFIX + name, text, labels=list(self._labels) + ["server"])
            for name, text in COUNTERS
        }
        families["disagreements"] = self._family(
            PREFIX + "disagreements", DISAGREEMENTS_HELP, labels=list(self._labels)
        )
        return families

    def describe(self) -> Iterator[Any]:
        """The metric names, without reading any client (what ``register`` checks)."""
        return iter(self._families().values())

    def collect(self) -> Iterator[Any]:
        """The counters of every client now (one ``metrics()`` call per client)."""
        families = self._families()
        for labels, client in self._clients:
            m = client.metrics()
            for server, counters in m["servers"].items():
                for name, _ in COUNTERS:
                    families[name].add_metric(list(labels) + [server], counters[name])
            families["disagreements"].add_metric(list(labels), m["total"]["disagreements"])
        return iter(families.values())
