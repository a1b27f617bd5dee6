"""The exceptions multiput raises: one hierarchy under :class:`MultiputError`.

Every error carries ``kind`` (a stable string naming the core's error kind, e.g.
``"timeout"``) and, when one server is to blame, ``server`` (``"host:port"``). Classes also
derive from the builtin a caller would expect: :class:`InvalidKeyError` and
:class:`ConfigError` are ``ValueError``\\ s, :class:`TimeoutError` is the builtin
``TimeoutError``, :class:`ConnectionError` the builtin ``ConnectionError``.

Code ported from pymemcache keeps its ``except`` clauses: pymemcache's exception names
(:class:`MemcacheError`, :class:`MemcacheClientError`, :class:`MemcacheIllegalInputError`,
:class:`MemcacheServerError`, :class:`MemcacheUnexpectedCloseError`,
:class:`MemcacheUnknownCommandError`, :class:`MemcacheUnknownError`) are classes of this
hierarchy, and each multiput error derives from the one pymemcache would have raised for the
same failure: a bad key is a ``MemcacheIllegalInputError``, a value too large a
``MemcacheServerError`` (memcached's ``SERVER_ERROR object too large``), a server error a
``MemcacheServerError``, a ``CLIENT_ERROR`` a ``MemcacheClientError``, a broken connection a
``MemcacheUnexpectedCloseError``, an unknown command a ``MemcacheUnknownCommandError``, bytes
that are not memcached protocol a ``MemcacheUnknownError``.
"""

import builtins
from typing import List, Optional, Tuple

__all__ = [
    "MultiputError",
    "MemcacheError",
    "MemcacheClientError",
    "MemcacheUnknownCommandError",
    "MemcacheIllegalInputError",
    "MemcacheServerError",
    "MemcacheUnknownError",
    "MemcacheUnexpectedCloseError",
    "InvalidArgumentError",
    "DeltaOutOfRangeError",
    "InvalidKeyError",
    "ValueTooLargeError",
    "NotStoredError",
    "NotFoundError",
    "CasConflictError",
    "CasRetriesExhaustedError",
    "ServerError",
    "ClientError",
    "TimeoutError",
    "ConnectionError",
    "ServerDownError",
    "ProtocolError",
    "ReplicationError",
    "ConfigError",
    "NotSupportedError",
    "UndecodableValueError",
    "LockNotAcquiredError",
    "LoaderError",
    "AuthenticationError",
    "TlsError",
    "CertificateUntrustedError",
    "CertificateHostnameError",
    "CertificateExpiredError",
    "ClientCertificateRejectedError",
    "ServerNotTlsError",
    "ServerRequiresTlsError",
]


class MultiputError(Exception):
    """Base class of every multiput error."""

    #: The core's error kind, e.g. ``"timeout"``, ``"server_down"``, ``"invalid_key"``.
    kind: str = "error"
    #: ``"host:port"`` of the server the error came from, when there is one.
    server: Optional[str] = None


class MemcacheError(MultiputError):
    """pymemcache's base class (``pymemcache.exceptions.MemcacheError``); every multiput error
    that pymemcache has a class for derives from one of its subclasses."""


class MemcacheClientError(MemcacheError):
    """pymemcache's name for a request memcached could not parse (bad arguments)."""


class MemcacheUnknownCommandError(MemcacheClientError):
    """pymemcache's name for memcached's ``ERROR`` (a command it does not know)."""


class MemcacheIllegalInputError(MemcacheClientError):
    """pymemcache's name for a key or value that is not legal (refused before I/O)."""


class MemcacheServerError(MemcacheError):
    """pymemcache's name for memcached reporting a failure (``SERVER_ERROR``)."""


class MemcacheUnknownError(MemcacheError):
    """pymemcache's name for a reply that is not memcached protocol."""


class MemcacheUnexpectedCloseError(MemcacheServerError):
    """pymemcache's name for a connection that closed unexpectedly."""


class InvalidArgumentError(MemcacheIllegalInputError, TypeError):
    """An argument of the wrong type (e.g. a non-integer ``incr`` delta), refused before
    anything is sent, as pymemcache refuses it."""

    kind = "invalid_argument"


class InvalidKeyError(MemcacheIllegalInputError, ValueError):
    """The key breaks memcached's rules (empty, over 250 bytes with the prefix, or a space or
    control character). Raised before anything is sent."""

    kind = "invalid_key"


class ValueTooLargeError(MemcacheServerError, ValueError):
    """The value is larger than ``max_value_size`` (memcached's ``-I``, 1 MiB by default).
    Raised before anything is sent."""

    kind = "value_too_large"


class NotStoredError(MultiputError):
    """The server refused a conditional store (``NOT_STORED``)."""

    kind = "not_stored"


class NotFoundError(MultiputError):
    """The key does not exist for an operation that needs it (``NOT_FOUND``)."""

    kind = "not_found"


class CasConflictError(MultiputError):
    """A compare-and-swap lost: the value changed since it was read (``EXISTS``)."""

    kind = "exists"


class CasRetriesExhaustedError(CasConflictError):
    """``cas_update`` kept losing to other writers and gave up (see ``max_attempts`` and
    ``deadline``)."""

    kind = "cas_retries_exhausted"


class ServerError(MemcacheServerError):
    """The server reported an error of its own (``SERVER_ERROR ...``)."""

    kind = "server"


class ClientError(MemcacheClientError):
    """The server says the request was bad (``CLIENT_ERROR ...``), e.g. ``incr`` of a value
    that is not a number."""

    kind = "client"


class DeltaOutOfRangeError(ClientError, OverflowError):
    """An ``incr``/``decr`` amount outside 0 .. 2**64-1: memcached's ``CLIENT_ERROR invalid
    numeric delta argument`` (pymemcache's ``MemcacheClientError``), refused before anything
    is sent; also an ``OverflowError``, as pylibmc raises."""

    kind = "client"


class TimeoutError(MultiputError, builtins.TimeoutError):
    """No reply within the client's ``timeout`` (or ``connect_timeout``); the connection was
    dropped and the server counts one failure."""

    kind = "timeout"


class ConnectionError(MemcacheUnexpectedCloseError, builtins.ConnectionError):
    """The connection could not be opened, or broke mid-request."""

    kind = "connection_refused"


class AuthenticationError(ConnectionError):
    """memcached's ASCII authentication (``-Y``) refused this client: wrong ``username`` /
    ``password``, or none given to a server that requires them. The message never contains
    the credentials."""

    kind = "auth"


class TlsError(ConnectionError):
    """TLS with the server could not be set up. ``problem`` names what went wrong
    (``untrusted_certificate``, ``hostname_mismatch``, ``expired``,
    ``client_certificate_rejected``, ``server_not_tls``, ``server_speaks_tls``,
    ``handshake``); each has its own subclass below, and the message says what to do."""

    kind = "tls"
    problem = "handshake"


class CertificateUntrustedError(TlsError):
    """The server's certificate is not signed by a trusted CA: pass ``tls_ca``."""


class CertificateHostnameError(TlsError):
    """The server's certificate does not carry its name: connect by a name it carries, or
    pass ``tls_server_name``."""


class CertificateExpiredError(TlsError):
    """The server's certificate has expired (or is not valid yet)."""


class ClientCertificateRejectedError(TlsError):
    """The server verifies clients and refused this one: pass ``tls_cert`` and ``tls_key``."""


class ServerNotTlsError(TlsError):
    """TLS is configured but the server is a plain memcached (no ``-Z``)."""


class ServerRequiresTlsError(TlsError):
    """The server is a TLS listener (memcached ``-Z``) and TLS is not configured."""


class ServerDownError(ConnectionError):
    """The server is marked down after failures and is skipped until its retry interval has
    passed. Keys are never moved to another server because of it (unless ``failover=True``)."""

    kind = "server_down"


class ProtocolError(MemcacheUnknownError):
    """The server sent bytes that are not memcached protocol; the connection was dropped."""

    kind = "protocol"


class ReplicationError(MultiputError):
    """A replicated call reached fewer replicas than its policy requires.

    ``failures`` lists ``(server, exception)`` for each replica that failed; ``acked`` and
    ``required`` count replicas; ``op`` is ``"write"``, ``"delete"`` or ``"read"``. Replicas
    that did store a write keep the value."""

    kind = "replication"

    failures: List[Tuple[str, MultiputError]] = []
    acked: int = 0
    required: int = 0
    op: str = ""


class ConfigError(MultiputError, ValueError):
    """The client's configuration is invalid (no servers, bad policy, bad timeouts ...)."""

    kind = "config"


class NotSupportedError(MultiputError):
    """The operation is not available in this mode (e.g. ``cas`` or ``add`` on a replicated
    client), or the value cannot be represented (a PHP-serialized value read from Python)."""

    kind = "unsupported"


class UndecodableValueError(NotSupportedError, ValueError):
    """A stored value that cannot be read here: its flags and bytes disagree (written by a
    client of another flags convention, e.g. a PECL memcached int read with pylibmc's numbers),
    or it is serialized in a form Python does not read (PHP ``serialize()``). The message names
    the likely writer and the setting that reads it (``convention="pecl"``); nothing is wrong
    with the connection, and no wrong value is ever returned instead."""

    kind = "undecodable"


class LockNotAcquiredError(MultiputError):
    """Another owner held the lock for the whole ``wait``."""

    kind = "lock_not_acquired"


class LoaderError(MultiputError):
    """The loader of a ``get_or_set`` failed; nothing was stored."""

    kind = "loader"
