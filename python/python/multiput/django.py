"""Django cache backend: ``multiput.django.MultiputCache``.

Settings::

    CACHES = {
        "default": {
            "BACKEND": "multiput.django.MultiputCache",
            "LOCATION": ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"],  # or "a;b" / "a,b"
            "TIMEOUT": 300,               # default expiry (None: forever, 0: expire at once)
            "KEY_PREFIX": "",             # Django's prefix, part of the key (hashed)
            "VERSION": 1,
            "OPTIONS": {
                "replicas": 2,            # copies per key; 1 = plain (pylibmc/pymemcache flags)
                "write_policy": "all",    # "all" | "one" | "quorum" | "quorum:N"
                "read_policy": "all",     # "all" | "first_hit" | "quorum" | "quorum:N"
                "timeout": 0.25,          # seconds per request (not the cache TIMEOUT)
                "connect_timeout": 0.5,
                "raise_on_set_failure": False,
                "ring": "libketama_compatible",  # "modula" places keys where a
                                  # PyLibMCCache without OPTIONS (pylibmc's default) does
                # and any other multiput.Client argument: failover, tombstone_ttl,
                # protocol, key_prefix, max_value_size, pool_size, convention, ...
            },
        }
    }

Switching ``BACKEND`` from ``PyMemcacheCache`` or ``PyLibMCCache`` keeps working with the
``OPTIONS`` written for them (see :func:`translate_options`): pymemcache's ``ignore_exc``
(failed reads are misses), ``max_pool_size``, ``use_pooling``, ``retry_attempts``,
``dead_timeout``; pylibmc's ``binary`` and ``behaviors`` (placement, timeouts, failure
handling). Such OPTIONS also place keys where that library placed them (pymemcache:
rendezvous hashing; pylibmc: modula unless the behaviors ask for ketama), so both apps find
each other's keys during a migration (``"ring": "rendezvous"`` for a ``PyMemcacheCache``
without OPTIONS, ``"ring": "modula"`` for a ``PyLibMCCache`` without OPTIONS); an option
that would change behaviour multiput does not have (SASL, TLS, another hash) is refused with
a ``ConfigError`` instead of being ignored.

It keeps the contract of Django's memcached backends (``PyMemcacheCache``,
``PyLibMCCache``): timeouts as Django defines them (converted to absolute Unix time above 30
days), ``InvalidCacheKey`` for keys memcached would refuse, ``incr``/``decr`` raising
``ValueError`` on a missing key (and, on a value that is not a number, an error that is
both the client's ``multiput.ClientError``, as the bundled backends raise their client's error,
and the ``TypeError`` Django's other backends raise), ``set_many`` returning the keys that
failed. Like those backends it exposes the client class as ``_class`` (a ``multiput.Client``
with pymemcache's ``get_multi``/``set_multi``/``delete_multi`` names, which the bulk methods
call) and the client module as ``_lib``. It differs on purpose where those backends lose
information:

- ``set()`` returns ``True`` when stored and ``False`` when not (after deleting the key, so
  an old value does not linger, as Django's backends do); ``OPTIONS["raise_on_set_failure"]``
  makes it raise the multiput error instead. The bundled backends swallow the failure.
- Connections persist across requests and are shared by every thread of the process (one
  client per configuration); ``close()`` does not drop them. A forked worker (``gunicorn
  --preload``, uwsgi without ``lazy-apps``, Celery prefork) opens its own on first use and
  never touches the master's.
- The async methods (``aget``, ``aset``, ...) run the native call in a worker thread with
  ``thread_sensitive=False``: the GIL is released while waiting for memcached, so concurrent
  requests do not queue behind one thread and the event loop is never blocked.
- ``cache.lock(name, timeout, wait)`` is a lock that only its owner can release.
- ``get_or_set`` loads a missing key once: the core's fill, one load per process and a short
  fill lock across processes, in both modes.
- With ``replicas > 1``, ``add`` creates missing keys through the core's
  CAS update on the key's primary replica (never a blind ``set``), ``incr``/``decr`` are
  exact replicated counters, and ``touch`` rewrites the value with the new expiry.
"""

import os
import re
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    MEMCACHE_MAX_KEY_LENGTH,
    BaseCache,
    InvalidCacheKey,
    memcache_key_warnings,
)

import multiput
from multiput import Client, LoaderError, MultiputError

__all__ = ["MultiputCache", "NonNumericValueError", "translate_options"]

_BACKEND_OPTIONS = {"raise_on_set_failure", "MAX_ENTRIES", "CULL_FREQUENCY"}

# pymemcache HashClient options with no counterpart to configure: multiput always pools
# connections, keeps them open, and uses its own sockets.
_PYMEMCACHE_ACCEPTED = {"use_pooling", "pool_idle_timeout", "lock_generator", "socket_module", "encoding"}

# Arguments only pymemcache's HashClient takes: OPTIONS holding one were written for
# PyMemcacheCache, whose keys are placed by pymemcache's rendezvous hashing.
_PYMEMCACHE_ONLY = {
    "max_pool_size", "use_pooling", "pool_idle_timeout", "lock_generator", "socket_module",
    "retry_attempts", "retry_timeout", "dead_timeout", "hasher", "encoding",
}

# pylibmc behaviors that only tune libmemcached's own I/O (multiput pipelines, never buffers
# writes, checks keys itself and always reads CAS uniques on demand).
# pylibmc 1.6's behaviors (``pylibmc.all_behaviors``) that tune libmemcached's I/O and have no
# effect on placement or on what a call means: accepted and ignored (multiput pipelines, keeps
# connections, reads every reply and sizes its buffers itself).
_PYLIBMC_IO_BEHAVIORS = {
    "no_block", "buffer_requests", "cas", "verify_keys", "tcp_keepalive", "_io_msg_watermark",
    "_io_bytes_watermark", "_io_key_prefetch", "_socket_send_size", "_socket_recv_size",
    # libmemcached's noreply: multiput always reads the reply, so a failed store is visible.
    "_noreply",
    # libmemcached's auto_eject_hosts moves a dead server's keys to the others; multiput never
    # re-hashes because a server is down (DESIGN lesson 4): the keys stay where they belong.
    "auto_eject",
}

# Behaviors that change where keys go: accepted only with their default (off).
_PYLIBMC_PLACEMENT_FLAGS = {
    "_sort_hosts": "libmemcached sorts the server list before placing keys",
    "_hash_with_prefix_key": "libmemcached hashes the key prefix with the key",
}


def _placement(behaviors: Dict[str, Any]) -> str:
    """The ring mode for pylibmc ``behaviors``: their libmemcached distribution and hash, which
    the core maps to the placement libmemcached uses (``multiput.ring_for_libmemcached``)."""
    ketama_hash = str(behaviors.get("ketama_hash", "md5")).lower()
    if ketama_hash != "md5":
        raise multiput.ConfigError(f"pylibmc behavior ketama_hash={ketama_hash!r}: multiput's rings hash points with MD5 only")
    distribution = str(behaviors.get("distribution", "")).lower()
    if behaviors.get("ketama_weighted") or distribution == "consistent_ketama_weighted":
        distribution = "consistent_weighted"
    elif behaviors.get("ketama") or distribution in ("consistent", "consistent_ketama"):
        distribution = "consistent"
    elif distribution in ("", "modula"):
        distribution = "modula"
    else:
        raise multiput.ConfigError(f"pylibmc behavior distribution={distribution!r}: a placement multiput does not reproduce")
    try:
        return multiput.ring_for_libmemcached(distribution, str(behaviors.get("hash", "default")))
    except multiput.NotSupportedError as e:
        raise multiput.ConfigError(f"pylibmc behaviors {behaviors!r}: {e}") from None


def translate_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Turn ``OPTIONS`` written for Django's ``PyMemcacheCache`` (pymemcache ``HashClient``
    arguments) or ``PyLibMCCache`` (pylibmc ``Client`` arguments) into ``multiput.Client``
    arguments; multiput's own options pass through, and win over translated ones.

    pymemcache: ``max_pool_size`` -> ``pool_size``; ``retry_attempts`` -> ``failure_limit``;
    ``dead_timeout`` (or ``retry_timeout``) -> ``retry_interval``; ``ignore_exc`` is
    ``multiput.Client``'s own (failed reads are misses); ``use_pooling``, ``pool_idle_timeout``,
    ``lock_generator``, ``socket_module``, ``encoding`` are accepted (nothing to set: connections
    are always pooled and kept); a ``hasher`` or ``tls_context`` is refused. OPTIONS with any
    of these pymemcache-only arguments place keys as pymemcache's ``HashClient`` does
    (``ring="rendezvous"``); Django's ``PyMemcacheCache`` with no OPTIONS does too, so set
    ``"ring": "rendezvous"`` when the other apps run it without OPTIONS.

    pylibmc: ``binary`` is accepted (multiput speaks text/meta; stored items are the same);
    ``username``/``password`` are memcached's ASCII authentication (``-Y``); with pylibmc's
    ``binary=True`` they mean SASL, which is refused; ``behaviors`` choose the placement
    (``ketama_weighted`` -> ``libketama_compatible``, ``ketama`` + ``hash: md5`` ->
    ``ketama_md5``, none -> ``modula``, pylibmc's default, which is also the default for any
    pylibmc-style OPTIONS), ``tcp_nodelay``, ``connect_timeout`` (ms), ``send_timeout`` /
    ``receive_timeout`` (us), ``retry_timeout`` / ``dead_timeout`` (s), ``failure_limit``;
    ``remove_failed`` N -> ``failure_limit`` N; ``_poll_timeout`` (ms) -> ``timeout``;
    ``pickle_protocol``; the I/O tuning behaviors (``no_block``, ``buffer_requests``, ``cas``,
    ``verify_keys``, ``tcp_keepalive``, ``_io_*``, ``_socket_*_size``, ``_noreply``,
    ``auto_eject``) are accepted and ignored (see ``_PYLIBMC_IO_BEHAVIORS`` for why);
    ``_sort_hosts`` and ``_hash_with_prefix_key`` only off (on, they change placement);
    ``num_replicas`` (libmemcached's unacknowledged replication) is refused: use multiput's
    ``replicas``, which changes the stored format; a name pylibmc does not have is refused, as
    pylibmc refuses it.
    """
    own = dict(options)
    out: Dict[str, Any] = {}
    pylibmc_style = False
    pymemcache_style = any(name in own for name in _PYMEMCACHE_ONLY)

    # pymemcache
    if "max_pool_size" in own:
        out["pool_size"] = int(own.pop("max_pool_size"))
    if "retry_attempts" in own:
        out["failure_limit"] = max(1, int(own.pop("retry_attempts")))
    for name in ("dead_timeout", "retry_timeout"):
        if name in own:
            out["retry_interval"] = float(own.pop(name))
    for name in _PYMEMCACHE_ACCEPTED:
        own.pop(name, None)
    if own.pop("hasher", None) is not None:
        raise multiput.ConfigError("pymemcache hasher: multiput places keys with its ring option (libketama_compatible, ketama_md5, modula)")
    if own.pop("tls_context", None) is not None:
        raise multiput.ConfigError(
            "tls_context: multiput's TLS (rustls) is configured by files, not an ssl.SSLContext: "
            "pass tls_ca (and tls_cert/tls_key, tls_server_name) in OPTIONS instead"
        )

    # pylibmc
    binary = own.get("binary")
    if "binary" in own:
        own.pop("binary")
        pylibmc_style = True
    if binary and (own.get("username") is not None or own.get("password") is not None):
        raise multiput.ConfigError(
            "pylibmc username/password with binary=True is SASL, which needs memcached's binary "
            "protocol: multiput speaks text/meta and authenticates with memcached's ASCII "
            "authentication (memcached -Y): drop binary and keep username/password"
        )
    behaviors = own.pop("behaviors", None)
    if behaviors is not None:
        pylibmc_style = True
        b = dict(behaviors)
        if b.get("num_replicas"):
            raise multiput.ConfigError(
                "pylibmc num_replicas (libmemcached replication): use multiput's replicas option, "
                "which writes acknowledged, timestamped copies"
            )
        out["ring"] = _placement(b)
        if "tcp_nodelay" in b:
            out["tcp_nodelay"] = bool(b["tcp_nodelay"])
        if "connect_timeout" in b:
            out["connect_timeout"] = float(b["connect_timeout"]) / 1000.0
        io_us = [float(b[n]) for n in ("send_timeout", "receive_timeout") if b.get(n)]
        if io_us:
            out["timeout"] = max(io_us) / 1e6
        for name in ("retry_timeout", "dead_timeout"):
            if b.get(name):
                out["retry_interval"] = float(b[name])
        if b.get("failure_limit"):
            out["failure_limit"] = int(b["failure_limit"])
        if b.get("remove_failed"):
            out["failure_limit"] = int(b["remove_failed"])
        if b.get("_poll_timeout"):
            # libmemcached's wait for a stalled server (ms; 5 s by default): multiput's I/O
            # timeout is that bound. The smaller of it and send/receive_timeout wins.
            poll = float(b["_poll_timeout"]) / 1000.0
            out["timeout"] = min(poll, out.get("timeout", poll))
        if b.get("pickle_protocol") is not None:
            out["pickle_protocol"] = int(b["pickle_protocol"])
        for name, why in _PYLIBMC_PLACEMENT_FLAGS.items():
            if b.get(name):
                raise multiput.ConfigError(
                    f"pylibmc behavior {name}: {why}, a placement multiput does not reproduce "
                    "(leave it off; the other apps' keys would not be found)"
                )
        known = _PYLIBMC_IO_BEHAVIORS | set(_PYLIBMC_PLACEMENT_FLAGS) | {
            "ketama", "ketama_weighted", "ketama_hash", "hash", "distribution", "tcp_nodelay",
            "connect_timeout", "send_timeout", "receive_timeout", "retry_timeout", "dead_timeout",
            "failure_limit", "remove_failed", "num_replicas", "_poll_timeout", "pickle_protocol",
        }
        unknown = sorted(set(b) - known)
        if unknown:
            # As pylibmc itself: a name that is not one of its behaviors is refused.
            raise multiput.ConfigError(f"unknown pylibmc behavior names: {', '.join(unknown)}")
    if pylibmc_style and pymemcache_style:
        raise multiput.ConfigError("OPTIONS mix pymemcache and pylibmc arguments: which placement do the other apps use?")
    if pylibmc_style:
        out.setdefault("ring", "modula")
    if pymemcache_style:
        out.setdefault("ring", "rendezvous")
    out.update(own)
    return out
_clients: Dict[Tuple[Any, ...], Client] = {}
_clients_lock = threading.Lock()


def plain_key(key: Any, key_prefix: str, version: Any) -> str:
    """A ``KEY_FUNCTION`` for a fleet shared with apps that are not Django (PHP, Node, Rust):
    the key as those apps name it. Django's default key function stores ``user:42`` as
    ``:1:user:42`` (``<KEY_PREFIX>:<VERSION>:<key>``), which the PHP app asking for ``user:42``
    never finds. With this one ``KEY_PREFIX``, if set, is prepended as is (give the other apps
    the same prefix: ``Multiput\\Memcached::OPT_PREFIX_KEY``, the Node and Python clients'
    ``key_prefix``) and ``VERSION`` is ignored, so versioned calls (``incr_version``,
    ``version=``) all reach the same key::

        CACHES = {"default": {
            "BACKEND": "multiput.django.MultiputCache",
            "LOCATION": "10.0.0.1:11211;10.0.0.2:11211",
            "KEY_FUNCTION": "multiput.django.plain_key",
        }}
    """
    del version
    return f"{key_prefix}{key}"


def _after_fork_in_child() -> None:
    """A fork child gets a new ``_clients_lock``: a thread of the parent may have held the old
    one at the moment of the fork, and that thread does not exist here to release it. The
    clients themselves are kept: each opens its own connections in the child."""
    global _clients_lock
    _clients_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class NonNumericValueError(multiput.ClientError, TypeError):
    """``incr``/``decr`` of a value that is not a number: memcached's ``CLIENT_ERROR`` as a
    ``multiput.ClientError`` (what the bundled memcached backends raise: their client's error)
    that is also the ``TypeError`` Django's other backends raise."""


class DjangoClient(Client):
    """The backend's ``_class``: ``multiput.Client`` with the ``*_multi`` names Django's
    memcached backends call on pymemcache and pylibmc clients (and that code patching
    ``cache._class`` expects). The aliases are the native methods themselves."""

    get_multi = Client.get_many
    set_multi = Client.set_many
    delete_multi = Client.delete_many


def _client_for(servers: List[str], options: Dict[str, Any]) -> Client:
    """One client per configuration per process, shared by every thread and request."""
    key = (tuple(servers), tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = DjangoClient(servers, **options)
            _clients[key] = client
        return client


class MultiputCache(BaseCache):
    """A Django cache backend on ``multiput.Client`` (see the module documentation)."""

    #: The client class and module, named as in Django's memcached backends.
    _class = DjangoClient
    _lib = multiput

    def __init__(self, server: Any, params: Dict[str, Any]) -> None:
        super().__init__(params)
        if isinstance(server, str):
            self._servers = [s.strip() for s in re.split("[;,]", server) if s.strip()]
        else:
            self._servers = list(server)
        options = dict(params.get("OPTIONS") or {})
        self._raise_on_set_failure = bool(options.get("raise_on_set_failure", False))
        self._options = translate_options({k: v for k, v in options.items() if k not in _BACKEND_OPTIONS})
        self._client: Optional[Client] = None

    @property
    def client_servers(self) -> List[str]:
        """The servers as configured."""
        return self._servers

    @property
    def _cache(self) -> Client:
        """The shared ``multiput.Client`` of this configuration."""
        client = self._client
        if client is None:
            client = self._client = _client_for(self._servers, self._options)
        return client

    @property
    def _replicated(self) -> bool:
        return self._cache.enveloped

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> int:
        """Django's timeout as memcached's exptime: None -> 0 (never), 0 -> expired at once,
        over 30 days -> an absolute Unix time."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return 0
        if int(timeout) == 0:
            return -1
        if timeout > 2592000:  # 30 days: memcached reads larger values as a Unix time
            timeout += int(time.time())
        return int(timeout)

    def validate_key(self, key: str) -> None:
        """Raise ``InvalidCacheKey`` for keys memcached would refuse (as Django's memcached
        backends do), including keys over 250 bytes once UTF-8 encoded."""
        # The common case in C-level string methods (Django's generator + regex costs ~1.7 us
        # a call): printable ASCII without spaces, at most 250 characters = 250 bytes.
        if len(key) <= MEMCACHE_MAX_KEY_LENGTH and key.isascii() and key.isprintable() and " " not in key:
            return
        for warning in memcache_key_warnings(key):
            raise InvalidCacheKey(warning)
        if len(key.encode("utf-8")) > MEMCACHE_MAX_KEY_LENGTH:
            raise InvalidCacheKey(
                "Cache key will cause errors if used with memcached: %r "
                "(longer than %s)" % (key, MEMCACHE_MAX_KEY_LENGTH)
            )

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: Optional[int] = None) -> Any:
        """The value of ``key``, or ``default`` on a miss."""
        key = self.make_and_validate_key(key, version=version)
        return self._cache.get(key, default)

    def get_many(self, keys: Iterable[Any], version: Optional[int] = None) -> Dict[Any, Any]:
        """A dict of the hits among ``keys`` (one request per server)."""
        key_map = {self.make_and_validate_key(k, version=version): k for k in keys}
        if not key_map:
            return {}
        found = self._cache.get_multi(list(key_map))
        return {key_map[k]: v for k, v in found.items()}

    def has_key(self, key: Any, version: Optional[int] = None) -> bool:
        """True if ``key`` is in the cache (a stored None counts)."""
        key = self.make_and_validate_key(key, version=version)
        return self._cache.get(key, self._missing_key) is not self._missing_key

    # -- writes ------------------------------------------------------------------------------

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None) -> bool:
        """Store; True when stored, False when not (the old value is deleted), or raise with
        ``raise_on_set_failure``. Replicated: True when at least one replica stored it, even if
        the write policy was not met (a slow replica is repaired by the next read); False
        (and the old value deleted) when none did."""
        key = self.make_and_validate_key(key, version=version)
        try:
            return self._cache.set(key, value, self.get_backend_timeout(timeout))
        except multiput.ReplicationError as e:
            # Replicated, and some replicas stored it: the new value carries a later stamp than
            # any copy the others hold, so every read returns it and repairs them. The set
            # stands: deleting the key (Django's failed-set rule) would empty the cache
            # whenever one replica is slow, and the tombstones would miss it too.
            if e.op == "write" and e.acked > 0 and not self._raise_on_set_failure:
                return True
            self._failed_set(key)
            if self._raise_on_set_failure:
                raise
            return False
        except MultiputError:
            self._failed_set(key)
            if self._raise_on_set_failure:
                raise
            return False

    def _failed_set(self, key: str) -> None:
        # Do not leave the old value behind a failed set (memcached's 1 MB limit, a timeout,
        # ...), as Django's memcached backends do.
        try:
            self._cache.delete(key)
        except MultiputError:
            pass

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None) -> bool:
        """Store only if ``key`` is missing: True if stored."""
        key = self.make_and_validate_key(key, version=version)
        # Replicated or not, the client's add is the right one (replicated: serialized by CAS
        # on the key's primary replica, in the core).
        return self._cache.add(key, value, self.get_backend_timeout(timeout))

    def set_many(
        self, data: Dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None
    ) -> List[Any]:
        """Store many values; the keys that were not stored."""
        safe: Dict[str, Any] = {}
        original: Dict[str, Any] = {}
        for key, value in data.items():
            safe_key = self.make_and_validate_key(key, version=version)
            safe[safe_key] = value
            original[safe_key] = key
        if not safe:
            return []
        failed = self._cache.set_multi(safe, self.get_backend_timeout(timeout))
        if failed and self._raise_on_set_failure:
            raise multiput.NotStoredError("set_many: %d keys were not stored: %r" % (len(failed), failed))
        return [original[k] for k in failed]

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None) -> bool:
        """A new expiry for ``key``: True if it existed."""
        key = self.make_and_validate_key(key, version=version)
        return bool(self._cache.touch(key, self.get_backend_timeout(timeout)))

    def delete(self, key: Any, version: Optional[int] = None) -> bool:
        """Delete ``key``: True if it existed."""
        key = self.make_and_validate_key(key, version=version)
        if not self._replicated:
            return bool(self._cache.delete(key))
        existed = self._cache.get(key, self._missing_key) is not self._missing_key
        self._cache.delete(key)
        return existed

    def delete_many(self, keys: Iterable[Any], version: Optional[int] = None) -> None:
        """Delete many keys."""
        safe = [self.make_and_validate_key(k, version=version) for k in keys]
        if safe:
            self._cache.delete_multi(safe)

    def incr(self, key: Any, delta: int = 1, version: Optional[int] = None) -> int:
        """Add ``delta`` (negative: subtract) to a counter; ``ValueError`` if the key is
        missing, ``NonNumericValueError`` (a ``ClientError`` and a ``TypeError``) if its value
        is not a number."""
        key = self.make_and_validate_key(key, version=version)
        try:
            if delta < 0:
                value = self._cache.decr(key, -delta)
            else:
                value = self._cache.incr(key, delta)
        except multiput.DeltaOutOfRangeError:
            raise
        except multiput.ClientError as e:
            # With a validated key and an int delta, the only request memcached (or the
            # replicated counter) refuses is arithmetic on a value that is not a number.
            error = NonNumericValueError(*e.args)
            error.server = e.server
            raise error from e
        if value is None:
            raise ValueError("Key '%s' not found" % key)
        return value

    def decr(self, key: Any, delta: int = 1, version: Optional[int] = None) -> int:
        """Subtract ``delta`` from a counter; ``ValueError`` if the key is missing."""
        return self.incr(key, -delta, version=version)

    def get_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None
    ) -> Any:
        """The value of ``key``; on a miss ``default`` (called if callable) is stored once: the
        core's fill (one load per process, a short fill lock across processes), the same
        ``get_or_set`` as every multiput binding. An exception ``default`` raises propagates
        as is, as with Django's other backends."""
        key = self.make_and_validate_key(key, version=version)
        try:
            return self._cache.get_or_set(key, default, self.get_backend_timeout(timeout))
        except LoaderError as e:
            if e.__cause__ is not None:
                raise e.__cause__ from None
            raise

    def clear(self) -> None:
        """Flush every server."""
        self._cache.flush_all()

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: connections are kept for the next request (and shared by threads)."""

    def lock(self, name: Any, timeout: float = 60, wait: float = 10, version: Optional[int] = None) -> multiput.Lock:
        """Acquire a lock that only its owner can release (a context manager). Raises
        ``multiput.LockNotAcquiredError`` if someone else holds it for ``wait`` seconds."""
        key = self.make_and_validate_key(name, version=version)
        return self._cache.lock(key, timeout=timeout, wait=wait)

    # -- async: the native call in a worker thread, GIL released while it waits ---------------

    async def aget(self, key: Any, default: Any = None, version: Optional[int] = None) -> Any:
        """``get()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.get, thread_sensitive=False)(key, default, version)

    async def aget_many(self, keys: Iterable[Any], version: Optional[int] = None) -> Dict[Any, Any]:
        """``get_many()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.get_many, thread_sensitive=False)(list(keys), version)

    async def ahas_key(self, key: Any, version: Optional[int] = None) -> bool:
        """``has_key()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.has_key, thread_sensitive=False)(key, version)

    async def aset(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None) -> bool:
        """``set()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.set, thread_sensitive=False)(key, value, timeout, version)

    async def aadd(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None) -> bool:
        """``add()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.add, thread_sensitive=False)(key, value, timeout, version)

    async def aset_many(
        self, data: Dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None
    ) -> List[Any]:
        """``set_many()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.set_many, thread_sensitive=False)(data, timeout, version)

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None) -> bool:
        """``touch()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.touch, thread_sensitive=False)(key, timeout, version)

    async def adelete(self, key: Any, version: Optional[int] = None) -> bool:
        """``delete()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.delete, thread_sensitive=False)(key, version)

    async def adelete_many(self, keys: Iterable[Any], version: Optional[int] = None) -> None:
        """``delete_many()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.delete_many, thread_sensitive=False)(list(keys), version)

    async def aincr(self, key: Any, delta: int = 1, version: Optional[int] = None) -> int:
        """``incr()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.incr, thread_sensitive=False)(key, delta, version)

    async def adecr(self, key: Any, delta: int = 1, version: Optional[int] = None) -> int:
        """``decr()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.decr, thread_sensitive=False)(key, delta, version)

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None
    ) -> Any:
        """``get_or_set()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.get_or_set, thread_sensitive=False)(key, default, timeout, version)

    async def aincr_version(self, key: Any, delta: int = 1, version: Optional[int] = None) -> int:
        """``incr_version()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.incr_version, thread_sensitive=False)(key, delta, version)

    async def adecr_version(self, key: Any, delta: int = 1, version: Optional[int] = None) -> int:
        """``decr_version()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.decr_version, thread_sensitive=False)(key, delta, version)

    async def aclear(self) -> None:
        """``clear()`` in a worker thread (GIL released while waiting)."""
        return await sync_to_async(self.clear, thread_sensitive=False)()

    async def aclose(self, **kwargs: Any) -> None:
        """Nothing to do (see :meth:`close`)."""
