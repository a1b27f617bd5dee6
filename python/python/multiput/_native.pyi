"""Type stubs of the native module ``multiput._native`` (re-exported by ``multiput``)."""

from types import TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    final,
)

Key = Union[str, bytes]
Expire = Union[int, float, None]
Servers = Union[str, Sequence[Union[str, Tuple[str, int], Tuple[str, int, int]]]]
_T = TypeVar("_T")

__version__: str

#: The exptime memcached reads as "already expired" (an absolute time in 1970).
EXPIRE_NOW: int

@final
class Sentinel:
    """The type of :data:`KEEP` and :data:`DELETE`."""

#: Returned by a ``cas_update`` function: leave the key as it is.
KEEP: Sentinel
#: Returned by a ``cas_update`` function: delete the key.
DELETE: Sentinel

class Client:
    """A memcached client for a fleet of servers, safe to share between threads.

    :param servers: ``"host:port,host:port"`` (``;`` also separates), or a list of
        ``"host:port[:weight]"`` strings or ``(host, port[, weight])`` tuples. The port
        defaults to 11211. Host strings are hashed as written, as libmemcached does.
    :param replicas: copies per key. 1 (the default) is plain mode: values are stored as
        pylibmc/pymemcache store them. More than 1 writes every value to that many servers
        (the key's ring owner first, then the next servers on the ring) in the replication
        envelope.
    :param write_policy: when a replicated write succeeds: ``"all"`` (every live replica;
        the default), ``"one"``, ``"quorum"`` (a majority), ``"quorum:N"`` or an int N.
    :param read_policy: ``"all"`` (ask every replica, return the latest, repair the others;
        the default), ``"first_hit"`` (ask in preference order, no repair), ``"quorum"``,
        ``"quorum:N"`` or an int N.
    :param failover: while a server is marked down, place keys on a ring without it
        (twemproxy-style ejection). Off by default: moving keys breaks locks and serves stale
        data when the server returns.
    :param tombstone_ttl: seconds a replicated delete's tombstone lives (default one day).
    :param read_repair: write the latest copy back to stale replicas after reads.
    :param envelope: force the envelope on (``True``, e.g. with ``replicas=1`` to migrate to
        replication) or off; default: on exactly when ``replicas > 1``.
    :param connect_timeout: seconds to open a connection (and probe the server); ``None``
        (pymemcache's "no limit") keeps the default of 1 s: a call never waits unbounded.
    :param timeout: seconds for one request, from sending until the whole reply arrived;
        ``None`` keeps the default of 1 s.
    :param retry_interval: seconds a server marked down is skipped before one call retries it.
    :param failure_limit: consecutive timeouts/broken connections that mark a server down (a
        refused connection marks it down at once).
    :param key_prefix: prepended to every key on the wire, not hashed (libmemcached's
        ``OPT_PREFIX_KEY``).
    :param ring: ``"libketama_compatible"`` (= ``"ketama_weighted"``, pylibmc
        ``{"ketama_weighted": True}``, php-memcached ``OPT_LIBKETAMA_COMPATIBLE``; the
        default), ``"ketama_md5"`` (pylibmc ``{"ketama": True, "hash": "md5"}``),
        ``"modula"`` (libmemcached's default distribution: pylibmc without behaviors, as
        Django's ``PyLibMCCache`` uses it, and php-memcached without distribution options) or
        ``"rendezvous"`` (= ``"pymemcache"``: pymemcache's ``HashClient``, as Django's
        ``PyMemcacheCache`` uses it).
    :param protocol: ``"auto"`` (meta protocol where the server has it; the default),
        ``"text"`` or ``"meta"``.
    :param max_value_size: the largest value accepted (memcached's ``-I``; 1 MiB).
    :param pool_size: idle connections kept per server for reuse by threads.
    :param tcp_nodelay: set ``TCP_NODELAY``.
    :param binary_keys: also accept keys with spaces and control bytes (up to 186 bytes) and
        send them base64-encoded over the meta protocol, where memcached stores the raw bytes
        (the item a binary-protocol client such as PECL memcached with
        ``OPT_BINARY_PROTOCOL`` writes). Off by default: such keys raise
        :class:`~multiput.InvalidKeyError` before any I/O, as pylibmc and pymemcache refuse
        them.
    :param convention: whose flag numbers plain values use: ``"python"`` (pylibmc and
        pymemcache: bytes 0, pickle 1, int 2, text 16) or ``"php"`` (PECL memcached).
    :param pickle_protocol: the pickle protocol for objects (default
        ``pickle.HIGHEST_PROTOCOL``, as pymemcache and Django use).
    :param serde: a pymemcache serde object (``serialize(key, value) -> (bytes, flags)``,
        ``deserialize(key, data, flags) -> value``, e.g. ``pymemcache.serde.pickle_serde`` or
        ``compressed_serde``) used instead of the built-in typed values. Plain mode only. The
        key passed is the key as given (without ``key_prefix``).
    :param serializer: pymemcache's older form of ``serde``: ``serializer(key, value)``;
        without it values must be bytes or str (stored with flags 0).
    :param deserializer: ``deserializer(key, data, flags)``; without it reads return bytes.
    :param no_delay: pymemcache's name for ``tcp_nodelay`` (overrides it when given).
    :param default_noreply: accepted for pymemcache compatibility and ignored, like every
        ``noreply``.
    :param allow_unicode_keys: accepted for pymemcache compatibility and ignored: ``str`` keys
        are always UTF-8 encoded.
    :param ignore_exc: pymemcache's option: ``get``, ``gets``, ``get_many`` and ``gets_many``
        answer a failed read (timeout, dead server, protocol or server error) as a miss, and
        ``get_many`` keeps the hits of the servers that answered. A bad key still raises.

    In replicated mode ``gets``, ``gat``, ``cas`` and ``gets_many`` raise
    :class:`~multiput.NotSupportedError`; ``incr``/``decr`` become exact counters and
    ``add``/``replace``/``append``/``prepend``/``touch`` conditional writes, serialized by CAS
    on the primary replica.
    ``noreply`` arguments are accepted for compatibility and ignored: multiput always reads
    the reply, so a failure is never silent.
    """

    def __init__(
        self,
        servers: Servers,
        replicas: int = 1,
        *,
        write_policy: Union[str, int, None] = None,
        read_policy: Union[str, int, None] = None,
        failover: bool = False,
        tombstone_ttl: int = 86400,
        read_repair: bool = True,
        envelope: Optional[bool] = None,
        connect_timeout: Optional[float] = 1.0,
        timeout: Optional[float] = 1.0,
        retry_interval: float = 1.0,
        failure_limit: int = 1,
        key_prefix: Optional[Key] = None,
        ring: str = "libketama_compatible",
        protocol: str = "auto",
        max_value_size: int = 1048576,
        pool_size: int = 16,
        tcp_nodelay: bool = True,
        binary_keys: bool = False,
        convention: str = "python",
        pickle_protocol: Optional[int] = None,
        serde: Any = None,
        serializer: Optional[Callable[[Any, Any], Tuple[Any, int]]] = None,
        deserializer: Optional[Callable[[Any, bytes, int], Any]] = None,
        no_delay: Optional[bool] = None,
        default_noreply: Optional[bool] = None,
        allow_unicode_keys: Optional[bool] = None,
        ignore_exc: bool = False,
    ) -> None: ...
    @property
    def servers(self) -> List[str]:
        """The servers as ``host:port[:weight]`` strings, in configuration order."""
    @property
    def replicas(self) -> int:
        """Copies per key (1 without replication)."""
    @property
    def enveloped(self) -> bool:
        """True when values are written in the replication envelope."""
    @property
    def policy(self) -> Optional[Dict[str, Any]]:
        """The replication policy (``None`` in plain mode)."""
    @property
    def convention(self) -> str:
        """``"python"`` or ``"php"``."""
    @property
    def ring(self) -> str:
        """``"libketama_compatible"``, ``"ketama_md5"``, ``"modula"`` or ``"rendezvous"``."""
    def get(self, key: Key, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` on a miss."""
    def gets(self, key: Key, default: Any = None, cas_default: Any = None) -> Tuple[Any, Any]:
        """``(value, cas)``, or ``(default, cas_default)`` on a miss. Replicated: ``cas`` is the
        value's version token (it changes with every write), for :meth:`cas`."""
    def gat(self, key: Key, expire: Expire = None, default: Any = None) -> Any:
        """Get and set a new expiry. Plain mode only."""
    def set(
        self, key: Key, value: Any, expire: Expire = None, noreply: Optional[bool] = None, flags: Optional[int] = None
    ) -> bool:
        """Store ``value``; returns True. A value that was not stored raises (e.g.
        :class:`~multiput.ValueTooLargeError`, :class:`~multiput.TimeoutError`,
        :class:`~multiput.ReplicationError`). ``expire``: seconds (0/None: never; over 30
        days: a Unix time; negative: already expired)."""
    def add(
        self, key: Key, value: Any, expire: Expire = None, noreply: Optional[bool] = None, flags: Optional[int] = None
    ) -> bool:
        """Store only if the key is missing: True stored, False it exists (replicated: serialized
        by CAS on the primary replica)."""
    def replace(
        self, key: Key, value: Any, expire: Expire = None, noreply: Optional[bool] = None, flags: Optional[int] = None
    ) -> bool:
        """Store only if the key exists: True stored, False it is missing (replicated: serialized
        by CAS on the primary replica)."""
    def append(
        self, key: Key, value: Any, expire: Expire = None, noreply: Optional[bool] = None, flags: Optional[int] = None
    ) -> bool:
        """Append the value's bytes: True stored, False the key is missing (replicated: bytes or
        text values only, serialized by CAS on the primary replica)."""
    def prepend(
        self, key: Key, value: Any, expire: Expire = None, noreply: Optional[bool] = None, flags: Optional[int] = None
    ) -> bool:
        """Prepend the value's bytes: True stored, False the key is missing (replicated: bytes or
        text values only, serialized by CAS on the primary replica)."""
    def cas(
        self,
        key: Key,
        value: Any,
        cas: Union[int, str, bytes],
        expire: Expire = None,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
    ) -> Optional[bool]:
        """Compare-and-swap: True stored, False the value changed (conflict), None the key is
        gone. ``cas`` is the int from :meth:`gets`, or (as pymemcache takes it) a str or bytes
        of digits. Replicated: against the version token, serialized by CAS on the key's
        primary replica."""
    def delete(self, key: Key, noreply: Optional[bool] = None) -> bool:
        """Delete: True if the key existed (replicated: True once the tombstone is written)."""
    def incr(
        self, key: Key, value: int = 1, noreply: Optional[bool] = None, *, initial: Optional[int] = None, expire: Expire = None
    ) -> Optional[int]:
        """Add to a counter: the new value, or None if the key is missing. With ``initial``, a
        missing counter is created at ``initial`` (stored with ``expire``), which is returned."""
    def decr(
        self, key: Key, value: int = 1, noreply: Optional[bool] = None, *, initial: Optional[int] = None, expire: Expire = None
    ) -> Optional[int]:
        """Subtract from a counter (stops at 0): the new value, or None if missing (``initial``
        as in :meth:`incr`)."""
    def touch(self, key: Key, expire: Expire = None, noreply: Optional[bool] = None) -> bool:
        """New expiry: True if the key existed (replicated: the value is rewritten with it)."""
    def get_many(self, keys: Iterable[Key]) -> Dict[Any, Any]:
        """A dict of the hits among ``keys`` (keys as given). One request per server."""
    def gets_many(self, keys: Iterable[Key]) -> Dict[Any, Tuple[Any, int]]:
        """A dict of key -> (value, cas) for the hits (replicated: version tokens)."""
    def set_many(
        self,
        values: Union[Mapping[Key, Any], Iterable[Tuple[Key, Any]]],
        expire: Expire = None,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
    ) -> List[Any]:
        """Store many values; the list of keys that were not stored (empty on success)."""
    def delete_many(self, keys: Iterable[Key], noreply: Optional[bool] = None) -> bool:
        """Delete many keys; True. Server errors raise."""
    def get_multi(self, keys: Iterable[Key]) -> Dict[Any, Any]:
        """Alias of :meth:`get_many`."""
    def set_multi(
        self,
        values: Union[Mapping[Key, Any], Iterable[Tuple[Key, Any]]],
        expire: Expire = None,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
    ) -> List[Any]:
        """Alias of :meth:`set_many`."""
    def delete_multi(self, keys: Iterable[Key], noreply: Optional[bool] = None) -> bool:
        """Alias of :meth:`delete_many`."""
    def flush_all(self, delay: int = 0, noreply: Optional[bool] = None) -> bool:
        """Invalidate every item on every server; True."""
    def cache_memlimit(self, memlimit: int) -> bool:
        """``cache_memlimit`` (megabytes) on every server: memcached's memory limit, changed at
        run time; True."""
    def check_key(self, key: Key) -> bytes:
        """The key as sent (prefix included), or :class:`~multiput.InvalidKeyError`."""
    def stats(self, *args: str) -> Dict[str, Dict[str, Union[int, float, str]]]:
        """``{"host:port": {stat: value}}`` for every server; ``args`` name a group
        (``stats("slabs")``, ``stats("cachedump", "1", "10")``)."""
    def version(self) -> Dict[str, str]:
        """``{"host:port": version}`` for every server."""
    def server_for(self, key: Key) -> str:
        """``host:port`` of the server owning ``key``."""
    def replicas_of(self, key: Key) -> List[str]:
        """The servers holding ``key``'s copies, primary first."""
    def with_policy(
        self,
        read_policy: Union[str, int, None] = None,
        write_policy: Union[str, int, None] = None,
    ) -> "Client":
        """This client (same connections, clock and writer id) with other read and/or write
        policies, for the calls that need them: ``mc.with_policy(read_policy="first_hit").get(k)``.
        Replicated clients only; the replica count and placement do not change."""
    def metrics(self) -> Dict[str, Dict[str, Any]]:
        """Counters per server and in total (hits, misses, sets, errors, timeouts, ...)."""
    def close(self) -> None:
        """Drop idle connections; they reopen on demand."""
    def quit(self) -> None:
        """Alias of :meth:`close`."""
    def disconnect_all(self) -> None:
        """Alias of :meth:`close`."""
    def cas_update(
        self,
        key: Key,
        func: Callable[[Any], Any],
        expire: Expire = None,
        *,
        default: Any = None,
        max_attempts: int = 32,
        deadline: float = 2.0,
    ) -> Any:
        """Read-modify-write without lost updates: ``func(current)`` (``default`` when missing)
        returns the new value, :data:`KEEP` or :data:`DELETE`; a missing key is created with
        ``add``; conflicts retry with jittered backoff. Returns the value now stored."""
    def get_or_set(self, key: Key, default: Union[Callable[[], Any], Any], expire: Expire = None) -> Any:
        """The value of ``key``; on a miss ``default`` (called if callable) is loaded once and
        stored: concurrent callers in this process share one load, other processes wait for
        it behind a short fill lock (the same ``get_or_set`` as every multiput binding). An
        exception of ``default`` is raised as :class:`~multiput.LoaderError` with it as the
        ``__cause__``."""
    def lock(
        self, name: Key, timeout: float = 60.0, wait: float = 10.0, fencing: bool = False, quorum: Optional[int] = None
    ) -> "Lock":
        """Acquire the lock ``name`` (raises :class:`~multiput.LockNotAcquiredError` after
        ``wait`` seconds). It expires after ``timeout`` seconds unless released. With
        ``quorum=N`` it is held on a majority of the name's first N replicas."""

@final
class Lock:
    """A held lock; a context manager that releases it on exit. It belongs to the process
    that acquired it: in a fork child it is not ``held`` and is never released."""

    @property
    def name(self) -> Key: ...
    @property
    def token(self) -> Optional[str]:
        """This holder's unique owner token (None in a fork child)."""
    @property
    def fence(self) -> Optional[int]:
        """The fencing token, if the lock was taken with ``fencing=True``."""
    @property
    def held(self) -> bool:
        """True until released (False in a fork child: the lock is its parent's)."""
    def release(self) -> bool:
        """Release if still ours: True released, False it had expired (left alone) or this
        is a fork child of the holder (nothing is sent)."""
    def extend(self, timeout: float) -> bool:
        """A new timeout, if still ours."""
    def __enter__(self) -> "Lock": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

def ring_for_libmemcached(distribution: str, hash: str) -> str:
    """The ``ring`` that places keys where libmemcached (pylibmc, PECL memcached) does under
    this distribution (``"modula"``, ``"consistent"``, ``"consistent_weighted"``) and key hash
    (``"default"``, ``"md5"``, ...); :class:`~multiput.NotSupportedError` otherwise."""
def plain_encoding(value: Any, convention: str = "python", pickle_protocol: int = 5) -> Tuple[bytes, int]:
    """``(payload, flags)`` a plain client of ``convention`` stores for ``value``."""

def plain_decoding(data: bytes, flags: int, convention: str = "python") -> Any:
    """The value a plain ``(payload, flags)`` pair means under ``convention``."""

def note_fork() -> None:
    """Tell the core this process is a fork child: every client opens its own connections on
    its next call. ``multiput`` registers it with ``os.register_at_fork``; never needed by hand
    after ``os.fork()``."""
