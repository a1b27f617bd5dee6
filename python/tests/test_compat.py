"""Plain mode shares keys with pymemcache and pylibmc apps: the same flags and payloads in
both directions, and (pylibmc) the same server for every key."""

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
    mp = multiput.Client([one.address])
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
    multiput.Client([one.address]).set(key, SAMPLES[name])
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
    mp = multiput.Client([one.address])
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


@needs_pylibmc
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_multiput_writes_pylibmc_reads(addresses, name):
    key = "l:" + uuid.uuid4().hex
    multiput.Client(addresses).set(key, SAMPLES[name])
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
    ],
)
def test_pylibmc_and_multiput_place_every_key_on_the_same_server(addresses, servers, ring, behaviors):
    pl = pylibmc.Client(addresses, behaviors=behaviors)
    mp = multiput.Client(addresses, ring=ring)
    keys = ["place:%s:%d" % (ring, i) for i in range(300)]
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
        single = multiput.Client([caches["pymemcache"]._servers[0]])
        single.set(":1:" + key, value)
        assert caches["pymemcache"].get(key) == value
        caches["pymemcache"].set(key, value)
        assert single.get(":1:" + key) == value
