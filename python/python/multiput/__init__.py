"""multiput: a replicated memcached client with one core in Rust.

``multiput.Client`` speaks pymemcache's call conventions (``get(key, default=None)``,
``gets`` returning ``(value, cas)``, ``set_many`` returning the keys that failed, ...), so
code written for pymemcache ports by changing the import, and adds what pymemcache lacks:

- keys placed on servers exactly as libmemcached (pylibmc, PECL memcached) places them;
- replication: with ``replicas > 1`` every value is written to that many servers inside a
  timestamped envelope; reads take the latest copy and repair the others; deletes leave
  tombstones; a dead server costs its copies, never a re-hash;
- failures are visible: a ``set`` that was not stored raises instead of returning False;
- typed values that other languages read back as the same type (bytes, str, int, float,
  bool; other objects are pickled), and in plain mode exactly the flags pylibmc and
  pymemcache use, so an existing app and a multiput app share keys during a migration;
- one client shared by any number of threads, its connections kept across calls, and the
  GIL released while it waits for the network;
- ``cas_update`` (read-modify-write that retries), ``lock`` (owner-only release) and
  ``get_or_set`` built into the core.

Django: ``multiput.django.MultiputCache`` (see that module).

Forked workers (``gunicorn --preload``, uwsgi without ``lazy-apps``, Celery prefork,
``multiprocessing``) need nothing special: a client used before a fork opens its own
connections in the child on its first call there and never touches the parent's sockets; the
parent keeps its connections.
"""

import os as _os

from . import exceptions
from ._native import note_fork as _note_fork
from ._native import (
    DELETE,
    EXPIRE_NOW,
    KEEP,
    Client,
    Lock,
    __version__,
    plain_decoding,
    plain_encoding,
    ring_for_libmemcached,
)
from .exceptions import (
    AuthenticationError,
    CasConflictError,
    CertificateExpiredError,
    CertificateHostnameError,
    CertificateUntrustedError,
    ClientCertificateRejectedError,
    CasRetriesExhaustedError,
    ClientError,
    ConfigError,
    ConnectionError,
    DeltaOutOfRangeError,
    InvalidArgumentError,
    InvalidKeyError,
    LoaderError,
    LockNotAcquiredError,
    MemcacheClientError,
    MemcacheError,
    MemcacheIllegalInputError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownCommandError,
    MemcacheUnknownError,
    MultiputError,
    NotFoundError,
    NotStoredError,
    NotSupportedError,
    ProtocolError,
    ReplicationError,
    ServerDownError,
    ServerError,
    ServerNotTlsError,
    ServerRequiresTlsError,
    TimeoutError,
    TlsError,
    UndecodableValueError,
    ValueTooLargeError,
)

__all__ = [
    "Client",
    "Lock",
    "KEEP",
    "DELETE",
    "EXPIRE_NOW",
    "plain_encoding",
    "ring_for_libmemcached",
    "plain_decoding",
    "exceptions",
    *exceptions.__all__,
    "__version__",
]

# A fork child must never use its parent's connections (another key's value would come back).
# The core notices the C library's fork() itself (pthread_atfork); this hook also covers a fork
# that bypassed it. Registered once, when the package is first imported.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_note_fork)
