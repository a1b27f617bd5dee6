"""Plain mode shares keys with pymemcache and pylibmc apps: multiput reads what they write by
default; with ``convention="pylibmc"`` it writes the same flags and payloads they do, so they
read what it writes; and (pylibmc) every key lands on the same server."""

import pickle
import uuid

import pytest

import multiput

pymemcache = pytest.importorskip("pymemcache")  # pure Python: always installed for the tests
from pymemcache.client.base import Client as PymemcacheClient  # noqa: E402
from pymemcache.serde import pickle_serde  # noqa: E402

try:  # pylibmc needs libmemcached; the tests skip only if it cannot be installed
    import pylibmc
except ImportError:  # pragma: no cover
    pylibmc = None

needs_pylibmc = pytest.mark.skipif(pylibmc is None, reason="pylibmc could not be installed")


class Thing:
    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, Thing) and other.n == self.n


SAMPLES = {
    "bytes": b"\x00raw\xff",
    "text": "Iñtërnâtiônàlizætiøn",
    "int": 42,
    "negative": -7,
    "huge": 2**80,
    "float": 2.5,
    "true": True,
    "false": False,
    "none": None,
    "list": [1, "a", 2.0],
    "object": Thing(3),
}


@pytest.fixture
def one(servers):
    """A single server, so that clients with different hashing agree trivially."""
    return servers[0]


def pm_client(server):
    return PymemcacheClient(("127.0.0.1", server.port), serde=pickle_serde, default_noreply=False)


def test_flags_are_pymemcaches(one):
    mp = multiput.Client([one.address], convention="pymemcache")
    pm = pm_client(one)
    for name, value in SAMPLES.items():
        k1, k2 = "mp:" + uuid.uuid4().hex, "pm:" + uuid.uuid4().hex
        mp.set(k1, value)
        pm.set(k2, value)
        f1, d1 = one.raw_get(k1)
        f2, d2 = one.raw_get(k2)
        assert f1 == f2, name
        if f1 != pymemcache.serde.FLAG_PICKLE:
            assert d1 == d2, name
        else:  # the pickle protocol may differ; the value may not
            assert pickle.loads(d1) == pickle.loads(d2) == value, name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_multiput_writes_pymemcache_reads(one, name):
    key = "c:" + uuid.uuid4().hex
    multiput.Client([one.address], convention="pymemcache").set(key, SAMPLES[name])
    got = pm_client(one).get(key)
    assert got == SAMPLES[name] and type(got) is type(SAMPLES[name])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_pymemcache_writes_multiput_reads(one, name):
    key = "c:" + uuid.uuid4().hex
    pm_client(one).set(key, SAMPLES[name])
    got = multiput.Client([one.address]).get(key)
    assert got == SAMPLES[name] and type(got) is type(SAMPLES[name])


def test_pymemcache_counters_and_compressed_values(one):
    from pymemcache.serde import CompressedSerde

    pm = pm_client(one)
    mp = multiput.Client([one.address], convention="pymemcache")
    key = "n:" + uuid.uuid4().hex
    pm.set(key, 10)
    pm.decr(key, 1)  # memcached pads the shorter value with a space
    assert mp.get(key) == 9
    mp.incr(key, 5)
    assert pm.get(key) == 14
    big = "x" * 5000
    zpm = PymemcacheClient(("127.0.0.1", one.port), serde=CompressedSerde(), default_noreply=False)
    zpm.set(key, big)
    assert one.raw_get(key)[0] & 8  # compressed flag
    assert mp.get(key) == big


def test_compressed_values_are_inflated_by_the_core(one):
    """zlib (flag 8) under the Python convention and PECL's zlib under the PHP one; a corrupt
    stream is an UndecodableValueError naming the problem, never garbage."""
    import struct
    import zlib

    text = "compressible " * 400

    def store(key, flags, data):
        reply = one.raw(b"set %s %d 0 %d\r\n%s\r\n" % (key.encode(), flags, len(data), data))
        assert reply == b"STORED\r\n"

    key = "z:" + uuid.uuid4().hex
    store(key, 16 | 8, zlib.compress(text.encode()))
    assert multiput.Client([one.address]).get(key) == text
    store(key, 16 | 32, struct.pack("<I", len(text)) + zlib.compress(text.encode()))
    assert multiput.Client([one.address], convention="php").get(key) == text.encode()
    store(key, 8, b"not a zlib stream")
    with pytest.raises(multiput.UndecodableValueError, match="inflate"):
        multiput.Client([one.address]).get(key)


@needs_pylibmc
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_multiput_writes_pylibmc_reads(addresses, name):
    key = "l:" + uuid.uuid4().hex
    multiput.Client(addresses, convention="pylibmc").set(key, SAMPLES[name])
    pl = pylibmc.Client(addresses, behaviors={"ketama_weighted": True})
    got = pl.get(key)
    assert got == SAMPLES[name] and type(got) is type(SAMPLES[name])


@needs_pylibmc
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_pylibmc_writes_multiput_reads(addresses, name):
    key = "l:" + uuid.uuid4().hex
    pl = pylibmc.Client(addresses, behaviors={"ketama_weighted": True})
    pl.set(key, SAMPLES[name])
    got = multiput.Client(addresses).get(key)
    expected = SAMPLES[name]
    if isinstance(expected, bool):
        # pylibmc stores a bool as "1"/"0" with its integer flag: every reader (pymemcache
        # and pylibmc itself included) gets the int back.
        assert got == int(expected) and type(pl.get(key)) is int
    else:
        assert got == expected and type(got) is type(expected)


@needs_pylibmc
@pytest.mark.parametrize(
    "ring, behaviors",
    [
        ("libketama_compatible", {"ketama_weighted": True}),
        ("ketama_md5", {"ketama": True, "hash": "md5"}),
        # pylibmc's default (no behaviors), e.g. Django's PyLibMCCache without OPTIONS.
        ("modula", {}),
    ],
)
def test_pylibmc_and_multiput_place_every_key_on_the_same_server(addresses, servers, ring, behaviors):
    pl = pylibmc.Client(addresses, behaviors=behaviors)
    mp = multiput.Client(addresses, ring=ring, convention="pylibmc")
    # Non-ASCII keys too: libmemcached's one-at-a-time hash sign-extends bytes >= 0x80.
    keys = ["place:%s:%d" % (ring, i) for i in range(300)] + ["clé:%s:%d:日本" % (ring, i) for i in range(100)]
    pl.set_multi({k: k for k in keys})
    by_port = {s.address: s for s in servers}
    for k in keys:
        owner = by_port[mp.server_for(k)]
        assert owner.raw_get(k) is not None, k
    assert mp.get_many(keys) == {k: k for k in keys}
    mp.set_many({k: k.upper() for k in keys})
    assert pl.get_multi(keys) == {k: k.upper() for k in keys}


@needs_pylibmc
def test_pylibmc_counters_and_compression(addresses):
    pl = pylibmc.Client(addresses, behaviors={"ketama_weighted": True})
    mp = multiput.Client(addresses)
    key = "n:" + uuid.uuid4().hex
    pl.set(key, 5)  # LONG flag (4)
    assert mp.incr(key, 2) == 7 and mp.get(key) == 7
    assert pl.get(key) == 7
    big = "y" * 5000
    pl.set(key, big, min_compress_len=100)
    assert mp.get(key) == big


def test_django_pymemcache_backend_reads_what_multiput_backend_writes():
    from django.core.cache import caches

    key = "dj:" + uuid.uuid4().hex
    for value in ({"a": 1}, "text", 12, b"bytes"):
        caches["default"].set(key, value)
        # Both backends build the same key (":1:<key>"); with one server they agree on it.
        single = multiput.Client([caches["pymemcache"]._servers[0]], convention="pymemcache")
        single.set(":1:" + key, value)
        assert caches["pymemcache"].get(key) == value
        caches["pymemcache"].set(key, value)
        assert single.get(":1:" + key) == value


# ---------------------------------------------------------------------------------------------
# pymemcache's call conventions, checked side by side with pymemcache on one server


def test_pymemcache_constructor_arguments_are_accepted(one):
    from pymemcache.serde import compressed_serde

    c = multiput.Client(
        ("127.0.0.1", one.port),
        serde=compressed_serde,
        connect_timeout=None,
        timeout=None,
        no_delay=True,
        default_noreply=False,
        allow_unicode_keys=True,
        key_prefix=b"pm:",
    )
    big = b"ab" * 1024 * 1024  # over 1 MiB before compression, far under it after
    key = uuid.uuid4().hex
    assert c.set(key, big) is True
    assert c.get(key) == big
    # The compressed payload is what pymemcache itself reads back.
    pm = PymemcacheClient(("127.0.0.1", one.port), serde=compressed_serde, key_prefix=b"pm:")
    assert pm.get(key) == big


def test_a_custom_serde_sees_every_value_both_ways(one):
    calls = []

    class Upper:
        def serialize(self, key, value):
            calls.append(("ser", key))
            return value.upper().encode(), 7

        def deserialize(self, key, data, flags):
            calls.append(("de", key, flags))
            return data.decode().lower() + "!"

    c = multiput.Client([one.address], serde=Upper())
    key = "s:" + uuid.uuid4().hex
    c.set(key, "hi")
    assert one.raw_get(key) == (7, b"HI")
    assert c.get(key) == "hi!"
    assert c.get_many([key]) == {key: "hi!"}
    assert c.gets(key)[0] == "hi!"
    assert ("ser", key) in calls and ("de", key, 7) in calls
    # Explicit flags win over the serde's, as in pymemcache.
    c.set(key, "x", flags=3)
    assert one.raw_get(key) == (3, b"X")


def test_legacy_serializer_functions(one):
    c = multiput.Client(
        [one.address],
        serializer=lambda k, v: (str(v * 2), 9),
        deserializer=lambda k, d, f: (int(d), f),
    )
    key = "l:" + uuid.uuid4().hex
    c.set(key, 21)
    assert c.get(key) == (42, 9)
    # With neither half given for reads, values come back as the bytes stored.
    raw = multiput.Client([one.address], serializer=lambda k, v: (v, 0))
    assert raw.get(key) == b"42"


def test_serde_is_refused_with_replication(addresses):
    with pytest.raises(multiput.ConfigError):
        multiput.Client(addresses, replicas=2, serde=pickle_serde)
    with pytest.raises(multiput.ConfigError):
        multiput.Client(addresses, serde=pickle_serde, serializer=lambda k, v: (v, 0))


def test_cas_takes_the_unique_as_int_str_or_bytes(one):
    c = multiput.Client([one.address])
    key = "cas:" + uuid.uuid4().hex
    assert c.cas(key, b"v", b"1") is None  # missing key
    c.set(key, b"v")
    _, unique = c.gets(key)
    assert c.cas(key, b"w", str(unique + 1)) is False
    assert c.cas(key, b"w", str(unique).encode()) is True
    for bad in ("", "12a", b"-1"):
        with pytest.raises(ValueError):
            c.cas(key, b"w", bad)
    with pytest.raises(TypeError):
        c.cas(key, b"w", 1.5)


def test_multi_aliases_and_dict_protocol(one):
    c = multiput.Client([one.address])
    k1, k2 = "m:" + uuid.uuid4().hex, "m:" + uuid.uuid4().hex
    assert c.set_multi({k1: b"1", k2: 2}) == []
    assert c.get_multi([k1, k2]) == {k1: b"1", k2: 2}
    assert c.delete_multi([k1]) is True
    assert c.get_multi([k1, k2]) == {k2: 2}
    c[k1] = "x"
    assert c[k1] == "x"
    del c[k1]
    with pytest.raises(KeyError):
        c[k1]
    del c[k1]  # deleting a missing key is no error, as in pymemcache


def test_stats_with_several_words(one):
    c = multiput.Client([one.address])
    c.set("sw:" + uuid.uuid4().hex, b"v")
    (items,) = c.stats("cachedump", "1", "5").values()
    assert isinstance(items, dict)  # item names -> "[size b; time s]"


def test_replies_match_pymemcache_with_noreply_false(one):
    """Every call whose reply pymemcache waits for returns what pymemcache returns."""
    pm = pm_client(one)
    mp = multiput.Client([one.address], serde=pickle_serde)
    prefix = uuid.uuid4().hex

    def script(c, tag):
        k = lambda name: f"{prefix}:{tag}:{name}"  # noqa: E731
        got = [c.get(k("a")), c.get(k("a"), 5), c.set(k("a"), b"1", noreply=False)]
        got += [c.add(k("a"), b"2", noreply=False), c.add(k("b"), b"2", noreply=False)]
        got += [c.replace(k("c"), b"3", noreply=False), c.replace(k("b"), b"3", noreply=False)]
        got += [c.append(k("c"), b"x", noreply=False), c.append(k("a"), b"x", noreply=False)]
        got += [c.prepend(k("c"), b"x", noreply=False), c.prepend(k("a"), b"y", noreply=False)]
        got += [c.get(k("a")), c.gets(k("c")), c.gets(k("c"), 1, 2)]
        got += [c.cas(k("c"), b"v", 1, noreply=False), c.cas(k("a"), b"v", 1, noreply=False)]
        got += [c.cas(k("a"), b"v", c.gets(k("a"))[1], noreply=False)]
        got += [c.delete(k("b"), noreply=False), c.delete(k("b"), noreply=False)]
        got += [c.incr(k("n"), 1, noreply=False), c.set(k("n"), b"7", noreply=False)]
        got += [c.incr(k("n"), 5, noreply=False), c.decr(k("n"), 100, noreply=False)]
        got += [c.decr(k("m"), 1, noreply=False), c.get(k("n"))]
        got += [c.touch(k("z"), 5, noreply=False), c.touch(k("a"), 5, noreply=False)]
        got += [c.set_many({k("x"): 1, k("y"): "t"}, noreply=False)]
        many = c.get_many([k("x"), k("y"), k("none")])
        got += [{name[len(k("")) :]: v for name, v in many.items()}, c.get_many([])]
        got += [c.delete_many([k("x"), k("none")], noreply=False), c.delete_many([])]
        got += [c.flush_all(noreply=False) if tag == "skip" else True]
        return got

    assert script(mp, "mp") == script(pm, "pm")

    for c in (pm, mp):
        with pytest.raises(ValueError if c is mp else pymemcache.exceptions.MemcacheClientError):
            c.set(b"has space", b"v", noreply=False)
    with pytest.raises(multiput.ClientError):
        key = prefix + ":text"
        mp.set(key, b"not a number")
        mp.incr(key, 1)


def test_ring_rendezvous_places_keys_where_pymemcache_hashclient_does(memcached_factory):
    from pymemcache.client.hash import HashClient

    servers = memcached_factory(3)
    addrs = [s.address for s in servers]
    hc = HashClient(addrs, allow_unicode_keys=True, default_noreply=False)  # acknowledged sets
    c = multiput.Client(addrs, ring="rendezvous")
    assert c.ring == "rendezvous"
    keys = [f"k:{i}" for i in range(200)] + [f"ü:{i}:🙂" for i in range(50)]
    for k in keys:
        assert hc.set(k, k.encode())
    got = c.get_many(keys)
    assert got == {k: k.encode() for k in keys}
    for k in keys[:50]:
        host, port = hc._get_client(k).server
        assert c.server_for(k) == f"{host}:{port}"
    hc.close()


def test_pymemcache_except_clauses_catch_what_they_caught(one):
    # Each pymemcache except clause catches multiput's error for the same failure.
    from multiput import exceptions as exc

    c = multiput.Client([f"127.0.0.1:{one.port}"], max_value_size=1000)
    with pytest.raises(exc.MemcacheIllegalInputError):
        c.set("bad key", b"x")
    with pytest.raises(exc.MemcacheClientError):
        c.get("bad key")
    with pytest.raises(exc.MemcacheServerError):
        c.set("big", b"x" * 2000)
    c.set("text", b"abc")
    with pytest.raises(exc.MemcacheClientError):
        c.incr("text", 1)  # CLIENT_ERROR: not a number
    for cls in (exc.InvalidKeyError, exc.ValueTooLargeError, exc.ServerError, exc.ClientError,
                exc.ConnectionError, exc.ProtocolError):
        assert issubclass(cls, exc.MemcacheError) and issubclass(cls, exc.MultiputError)
    assert issubclass(exc.ConnectionError, exc.MemcacheUnexpectedCloseError)
    assert issubclass(exc.ProtocolError, exc.MemcacheUnknownError)
    # And multiput's own names and builtin bases are kept.
    assert issubclass(exc.InvalidKeyError, ValueError)
    assert issubclass(exc.ConnectionError, ConnectionError)


def test_incr_takes_what_pymemcache_takes(one):
    # pymemcache 4.0 refuses a non-int delta with MemcacheIllegalInputError before I/O; so do we.
    from multiput import exceptions as exc

    c = multiput.Client([f"127.0.0.1:{one.port}"])
    c.set("n", b"5")
    assert c.incr("n", 2) == 7
    assert c.incr("n", True) == 8
    assert c.incr("n") == 9
    for bad in (b"1", "1", 1.0, None, None.__class__):  # None: pymemcache refuses it too
        with pytest.raises(exc.MemcacheIllegalInputError):
            c.incr("n", bad)
        with pytest.raises(TypeError):
            c.decr("n", bad)
    with pytest.raises(exc.MemcacheClientError):
        c.incr("n", -1)
    with pytest.raises(exc.MemcacheClientError):
        c.incr("n", 2**64)
    assert c.get("n") == b"9"


def test_values_of_the_other_ecosystem_are_typed_errors_naming_the_writer(one):
    """PECL memcached's numbers collide with pylibmc's: a PECL int (flags 1, "42") is not a
    pickle, a PECL double (2, "1.5") not an int. Each is an UndecodableValueError that names
    PECL memcached and the setting that reads it, never a wrong value or an UnpicklingError."""

    def store(key, flags, data):
        reply = one.raw(b"set %s %d 0 %d\r\n%s\r\n" % (key.encode(), flags, len(data), data))
        assert reply == b"STORED\r\n"

    c = multiput.Client([one.address])
    for flags, data in [(1, b"42"), (2, b"1.5"), (3, b"1"), (6, b'{"a":1}')]:
        key = "x:" + uuid.uuid4().hex
        store(key, flags, data)
        with pytest.raises(multiput.UndecodableValueError, match='PECL memcached.*convention="pecl"') as e:
            c.get(key)
        assert e.value.kind == "undecodable"
        assert isinstance(e.value, multiput.NotSupportedError)
    key = "x:" + uuid.uuid4().hex
    store(key, 1, b"\x80\x04not a pickle")
    with pytest.raises(multiput.UndecodableValueError, match="unpickle"):
        c.get(key)
    # The PECL convention reads them.
    store(key, 1, b"42")
    assert multiput.Client([one.address], convention="pecl").get(key) == 42


@needs_pylibmc
def test_pylibmc_only_methods_answer_as_pylibmc(addresses):
    """get_stats, add_multi and incr_multi: the shapes pylibmc returns, side by side."""
    pl = pylibmc.Client(addresses, behaviors={"ketama_weighted": True})
    mp = multiput.Client(addresses, convention="pylibmc")
    p = "pm:%s:" % uuid.uuid4().hex
    for c, tag in ((pl, "pl"), (mp, "mp")):
        c.set(p + tag + "a", 1)
        failed = c.add_multi({tag + "a": 2, tag + "b": 3}, key_prefix=p)
        assert failed == [tag + "a"], (tag, failed)
        assert c.incr_multi([tag + "a", tag + "b"], key_prefix=p, delta=5) is None
        with pytest.raises((pylibmc.NotFound, multiput.NotFoundError), match="1 keys not found"):
            c.incr_multi([tag + "none"], key_prefix=p, delta=5)
        assert (c.get(p + tag + "a"), c.get(p + tag + "b"), c.get(p + tag + "none")) == (6, 8, None)
    ours, theirs = mp.get_stats(), pl.get_stats()
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    assert all(isinstance(v, bytes) for _, d in ours for v in d.values())
    assert set(theirs[0][1]) <= set(ours[0][1]) | {"libevent"}
