"""multiput.prometheus: the client's counters through prometheus_client, against real memcached.

Needs prometheus_client (scripts/test.sh installs the pinned version); without it these tests
are skipped, except the one checking that multiput imports without it.
"""

import os
import subprocess
import sys

import pytest

import multiput
from multiput.prometheus import COUNTERS, MultiputCollector


@pytest.fixture
def prometheus_client():
    return pytest.importorskip("prometheus_client")


def exposition(collector):
    """The collector's metrics as prometheus_client writes them, and parsed back."""
    import prometheus_client
    from prometheus_client.parser import text_string_to_metric_families

    registry = prometheus_client.CollectorRegistry()
    registry.register(collector)
    text = prometheus_client.generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return text, families


def samples(family):
    """{labels as a sorted tuple: value} of a counter family's _total samples."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + "_total"
    }


def test_every_counter_per_server_equals_metrics(prometheus_client, memcached_factory):
    servers = memcached_factory(2)
    addresses = [s.address for s in servers]
    c = multiput.Client(addresses)
    keys = ["p:%d" % i for i in range(20)]
    for k in keys:
        assert c.get(k) is None
    for k in keys[:12]:
        c.set(k, k)
    for k in keys:
        c.get(k)

    text, families = exposition(MultiputCollector(c))
    m = c.metrics()
    for name, _ in COUNTERS:
        family = families["multiput_client_" + name]
        assert family.type == "counter"
        assert "# TYPE multiput_client_%s_total counter" % name in text
        assert "# HELP multiput_client_%s_total " % name in text
        assert samples(family) == {
            (("server", a),): float(m["servers"][a][name]) for a in addresses
        }, name
    hits = samples(families["multiput_client_hits"])
    assert sum(hits.values()) == 12
    assert sum(samples(families["multiput_client_misses"]).values()) == 28
    assert sum(samples(families["multiput_client_sets"]).values()) == 12
    # Each key's reads were counted on its own server.
    owners = {a: 0 for a in addresses}
    for k in keys[:12]:
        owners[c.server_for(k)] += 1
    assert hits == {(("server", a),): float(n) for a, n in owners.items()}
    disagreements = families["multiput_client_disagreements"]
    assert samples(disagreements) == {(): 0.0}


def test_a_dead_server_counts_errors_and_down_events(prometheus_client, memcached_factory):
    live, dead = memcached_factory(2)
    c = multiput.Client([live.address, dead.address], timeout=0.5, connect_timeout=0.5)
    dead.kill()
    key = next(k for k in ("d:%d" % i for i in range(1000)) if c.server_for(k) == dead.address)
    with pytest.raises(multiput.MultiputError):
        c.get(key)
    _, families = exposition(MultiputCollector(c))
    errors = samples(families["multiput_client_errors"])
    down = samples(families["multiput_client_down_events"])
    assert errors[(("server", dead.address),)] >= 1
    assert errors[(("server", live.address),)] == 0
    assert down[(("server", dead.address),)] == 1


def test_several_clients_get_a_client_label(prometheus_client, memcached_factory):
    a, b = (s.address for s in memcached_factory(2))
    plain = multiput.Client([a])
    replicated = multiput.Client([a, b], replicas=2)
    plain.set("k", 1)
    plain.get("k")
    replicated.set("r", 1)
    _, families = exposition(MultiputCollector({"default": plain, "sessions": replicated}))
    assert samples(families["multiput_client_hits"]) == {
        (("client", "default"), ("server", a)): 1.0,
        (("client", "sessions"), ("server", a)): 0.0,
        (("client", "sessions"), ("server", b)): 0.0,
    }
    # The replicated set stored a copy on each server.
    sets = samples(families["multiput_client_sets"])
    assert sets[(("client", "sessions"), ("server", a))] == 1.0
    assert sets[(("client", "sessions"), ("server", b))] == 1.0
    assert samples(families["multiput_client_disagreements"]) == {
        (("client", "default"),): 0.0,
        (("client", "sessions"),): 0.0,
    }


def test_registering_reads_no_client(prometheus_client):
    """describe() names the metrics without calling metrics() (nothing to connect to here)."""

    class Untouchable:
        def metrics(self):
            raise AssertionError("metrics() called at registration")

    registry = prometheus_client.CollectorRegistry()
    registry.register(MultiputCollector(Untouchable()))
    # The same names twice are refused, as for any collector.
    with pytest.raises(ValueError):
        registry.register(MultiputCollector(Untouchable()))


def test_multiput_imports_without_prometheus_client():
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"  # any import of it fails
        "sys.modules['prometheus_client.core'] = None\n"
        "import multiput, multiput.prometheus\n"
        "try:\n"
        "    multiput.prometheus.MultiputCollector(None)\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    assert "ImportError: multiput.prometheus needs prometheus_client" in out.stdout, out.stdout
