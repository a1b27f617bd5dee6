"""The Django backend driven through django.core.cache.caches (settings: django_settings.py),
with the expectations of Django's own cache test-suite for memcached backends
(BaseCacheTests + BaseMemcachedTests), and what the backend does better on purpose."""

import asyncio
import pickle
import threading
import time
import warnings
from unittest import mock
from zlib import compress, decompress

import django
import pytest

django.setup()

from django.core import signals  # noqa: E402
from django.core.cache import InvalidCacheKey, cache, caches  # noqa: E402
from django.core.cache.backends.base import BaseCache, CacheKeyWarning  # noqa: E402

import multiput  # noqa: E402
from multiput import exceptions as exc  # noqa: E402
from multiput.django import MultiputCache, NonNumericValueError  # noqa: E402

KEY_ERRORS_WITH_MEMCACHED_MSG = "Cache key contains characters that will cause errors if used with memcached: %r"


def f():
    return 42


class C:
    def m(n):
        return 24


class Unpicklable:
    def __getstate__(self):
        raise pickle.PickleError()


@pytest.fixture(autouse=True)
def clean():
    cache.clear()
    yield
    cache.clear()


def test_backend_and_servers(addresses):
    assert isinstance(caches["default"], MultiputCache)
    assert cache._servers == addresses
    assert caches["list_location"]._servers == addresses
    for location in (["server1.tld", "server2:11211"], "server1.tld;server2:11211", "server1.tld,server2:11211"):
        assert MultiputCache(location, {})._servers == ["server1.tld", "server2:11211"]


def test_simple():
    cache.set("key", "value")
    assert cache.get("key") == "value"


def test_default_used_when_none_is_set():
    cache.set("key_default_none", None)
    assert cache.get("key_default_none", default="default") is None


def test_add():
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"


def test_prefix():
    cache.set("somekey", "value")
    assert caches["prefix"].has_key("somekey") is False
    caches["prefix"].set("somekey", "value2")
    assert cache.get("somekey") == "value"
    assert caches["prefix"].get("somekey") == "value2"


def test_non_existent():
    assert cache.get("does_not_exist") is None
    assert cache.get("does_not_exist", "bang!") == "bang!"


def test_get_many():
    cache.set_many({"a": "a", "b": "b", "c": "c", "d": "d"})
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a", "b": "b"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a", "b": "b"}
    cache.set_many({"x": None, "y": 1})
    assert cache.get_many(["x", "y"]) == {"x": None, "y": 1}


def test_delete():
    cache.set_many({"key1": "spam", "key2": "eggs"})
    assert cache.get("key1") == "spam"
    assert cache.delete("key1") is True
    assert cache.get("key1") is None
    assert cache.get("key2") == "eggs"
    assert cache.delete("nonexistent_key") is False


def test_has_key_and_in():
    cache.set("hello1", "goodbye1")
    assert cache.has_key("hello1") is True
    assert cache.has_key("goodbye1") is False
    cache.set("no_expiry", "here", None)
    assert cache.has_key("no_expiry") is True
    cache.set("null", None)
    assert cache.has_key("null") is True
    assert "hello1" in cache and "goodbye1" not in cache and "null" in cache


def test_incr_decr():
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    cache.set("answer", 43)
    assert cache.decr("answer") == 42
    assert cache.decr("answer", 10) == 32
    assert cache.decr("answer", -10) == 42
    for call in (lambda: cache.incr("does_not_exist"), lambda: cache.incr("does_not_exist", -1),
                 lambda: cache.decr("does_not_exist"), lambda: cache.decr("does_not_exist", -1)):
        with pytest.raises(ValueError):
            call()
    cache.set("null", None)
    with pytest.raises(exc.ClientError):  # Django's incr_decr_type_error for this backend
        cache.incr("null")
    with pytest.raises(exc.ClientError):
        cache.decr("null")


@pytest.mark.parametrize("alias", ["default", "replicated"])
def test_arithmetic_on_a_non_number_is_a_type_error_too(alias):
    # Django's generic backends raise TypeError here, its memcached ones their client's
    # error: the backend raises one exception that is both, plain or replicated.
    backend = caches[alias]
    backend.clear()
    for stored in (None, "forty-two", [1, 2]):
        backend.set("not_a_counter", stored)
        for method in (backend.incr, backend.decr):
            with pytest.raises(TypeError) as info:
                method("not_a_counter", 3)
            assert isinstance(info.value, exc.ClientError)
            assert isinstance(info.value, NonNumericValueError)
            assert isinstance(info.value.__cause__, exc.ClientError)
        assert backend.get("not_a_counter") == stored
    backend.clear()


def test_client_class_is_exposed_like_djangos_memcached_backends():
    # Django's memcached backends keep the client class in ``_class`` and the client
    # library in ``_lib``; the bulk methods go through the pymemcache-style *_multi names.
    assert cache._lib is multiput
    assert issubclass(cache._class, multiput.Client)
    assert isinstance(cache._cache, cache._class)
    for name in ("get_multi", "set_multi", "delete_multi"):
        assert callable(getattr(cache._cache, name))
    assert cache.set_many({"m1": 1, "m2": "two"}) == []
    assert cache.get_many(["m1", "m2", "m3"]) == {"m1": 1, "m2": "two"}
    cache.delete_many(["m1", "m2"])
    assert cache.get_many(["m1", "m2"]) == {}


def test_set_many_maps_failures_from_the_client_class_back_to_callers_keys():
    def refuse_everything(mapping, *args, **kwargs):
        return list(mapping)

    with mock.patch.object(cache._class, "set_multi", side_effect=refuse_everything) as patched:
        assert sorted(caches["v2"].set_many({"first": 1, "second": 2})) == ["first", "second"]
        assert patched.call_count == 1
    with mock.patch.object(cache._class, "set_multi", side_effect=lambda mapping, *a, **k: mapping.keys()):
        assert cache.set_many({"only": 1}) == ["only"]


def test_request_finished_never_disconnects_the_shared_client():
    with mock.patch.object(cache._class, "disconnect_all", autospec=True) as disconnect:
        signals.request_finished.send(sender=None)
        assert disconnect.called is False


def test_close_does_not_drop_connections():
    cache.set("k", 1)
    before = sum(s["total_connections"] for s in cache._cache.stats().values())
    for _ in range(20):
        signals.request_finished.send(sender=None)  # Django calls close() here
        assert cache.get("k") == 1
    after = sum(s["total_connections"] for s in cache._cache.stats().values())
    assert after == before


def test_data_types():
    tests = {
        "string": "this is a string",
        "int": 42,
        "bool": True,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "dict": {"A": 1, "B": 2},
        "function": f,
        "class": C,
    }
    for key, value in tests.items():
        cache.set(key, value)
        assert cache.get(key) == value


def test_expiration():
    cache.set("expire1", "very quickly", 1)
    cache.set("expire2", "very quickly", 1)
    cache.set("expire3", "very quickly", 1)
    time.sleep(2.1)
    assert cache.get("expire1") is None
    assert cache.add("expire2", "newvalue") is True
    assert cache.get("expire2") == "newvalue"
    assert cache.has_key("expire3") is False


def test_touch():
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1", timeout=4) is True
    time.sleep(2.1)
    assert cache.has_key("expire1") is True
    time.sleep(3)
    assert cache.has_key("expire1") is False
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1") is True
    time.sleep(2.1)
    assert cache.has_key("expire1") is True
    assert cache.touch("nonexistent") is False


def test_unicode():
    stuff = {
        "ascii": "ascii_value",
        "unicode_ascii": "Iñtërnâtiônàlizætiøn1",
        "Iñtërnâtiônàlizætiøn": "Iñtërnâtiônàlizætiøn2",
        "ascii2": {"x": 1},
    }
    for key, value in stuff.items():
        cache.set(key, value)
        assert cache.get(key) == value
    for key, value in stuff.items():
        assert cache.delete(key) is True
        assert cache.add(key, value) is True
        assert cache.get(key) == value
    for key in stuff:
        assert cache.delete(key) is True
    cache.set_many(stuff)
    for key, value in stuff.items():
        assert cache.get(key) == value


def test_binary_string():
    value = "value_to_be_compressed"
    compressed_value = compress(value.encode())
    cache.set("binary1", compressed_value)
    assert decompress(cache.get("binary1")).decode() == value
    assert cache.add("binary1-add", compressed_value) is True
    assert cache.get("binary1-add") == compressed_value
    cache.set_many({"binary1-set_many": compressed_value})
    assert cache.get("binary1-set_many") == compressed_value


def test_set_many():
    assert cache.set_many({"key1": "spam", "key2": "eggs"}) == []
    assert cache.get("key1") == "spam" and cache.get("key2") == "eggs"
    assert cache.set_many({}) == []
    cache.set_many({"key1": "spam", "key2": "eggs"}, 1)
    time.sleep(2.1)
    assert cache.get("key1") is None and cache.get("key2") is None


def test_set_many_returns_failing_keys():
    big = "a" * (2**20 + 1)
    assert cache.set_many({"ok": 1, "big": big}) == ["big"]
    with pytest.raises(multiput.NotStoredError):
        caches["strict"].set_many({"ok": 1, "big": big})


def test_delete_many():
    cache.set_many({"key1": "spam", "key2": "eggs", "key3": "ham"})
    cache.delete_many(["key1", "key2"])
    assert cache.get("key1") is None and cache.get("key2") is None
    assert cache.get("key3") == "ham"
    assert cache.delete_many([]) is None


def test_clear():
    cache.set_many({"key1": "spam", "key2": "eggs"})
    cache.clear()
    assert cache.get("key1") is None and cache.get("key2") is None


def test_long_timeout():
    month = 60 * 60 * 24 * 30 + 1
    cache.set("key1", "eggs", month)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", month) is True
    assert cache.get("key2") == "ham"
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, month)
    assert cache.get("key3") == "sausage" and cache.get("key4") == "lobster bisque"


def test_forever_timeout():
    cache.set("key1", "eggs", None)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", None) is True
    assert cache.get("key2") == "ham"
    assert cache.add("key1", "new eggs", None) is False
    assert cache.get("key1") == "eggs"
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, None)
    assert cache.get("key3") == "sausage"
    cache.set("key5", "belgian fries", timeout=1)
    assert cache.touch("key5", timeout=None) is True
    time.sleep(2.1)
    assert cache.get("key5") == "belgian fries"


def test_zero_timeout():
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get("key3") is None and cache.get("key4") is None
    cache.set("key5", "belgian fries", timeout=5)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None


def test_float_timeout():
    cache.set("key1", "spam", 100.2)
    assert cache.get("key1") == "spam"


def test_default_timeouts_none_and_far_future():
    caches["forever"].set("infinite_foo", "bar")
    assert caches["forever"].get("infinite_foo") == "bar"
    caches["far_future"].set("future_foo", "bar")
    assert caches["far_future"].get("future_foo") == "bar"
    assert caches["far_future"].get_backend_timeout() > time.time()


def _invalid_key_calls(key):
    return [
        ("add", [key, 1]),
        ("get", [key]),
        ("set", [key, 1]),
        ("incr", [key]),
        ("decr", [key]),
        ("touch", [key]),
        ("delete", [key]),
        ("get_many", [[key, "b"]]),
        ("set_many", [{key: 1, "b": 2}]),
        ("delete_many", [[key, "b"]]),
    ]


@pytest.mark.parametrize(
    "key, message",
    [
        ("key with spaces and 清", KEY_ERRORS_WITH_MEMCACHED_MSG),
        (("a" * 250) + "清", "Cache key will cause errors if used with memcached: %r (longer than 250)"),
        ("a" * 248, "Cache key will cause errors if used with memcached: %r (longer than 250)"),  # with ":1:"
        ("é" * 124, "Cache key will cause errors if used with memcached: %r (longer than 250)"),  # bytes
    ],
)
def test_invalid_keys_raise_invalid_cache_key(key, message):
    expected = message % cache.make_key(key)
    for operation, args in _invalid_key_calls(key):
        with pytest.raises(InvalidCacheKey) as e:
            getattr(cache, operation)(*args)
        assert str(e.value) == expected, operation


def test_cache_versioning_get_set():
    cache.set("answer1", 42)
    assert cache.get("answer1") == 42
    assert cache.get("answer1", version=1) == 42
    assert cache.get("answer1", version=2) is None
    assert caches["v2"].get("answer1") is None
    assert caches["v2"].get("answer1", version=1) == 42
    cache.set("answer2", 42, version=2)
    assert cache.get("answer2") is None
    assert cache.get("answer2", version=2) == 42
    assert caches["v2"].get("answer2") == 42
    caches["v2"].set("answer4", 42, version=1)
    assert cache.get("answer4") == 42
    assert caches["v2"].get("answer4") is None


def test_cache_versioning_add_delete_incr_has_key():
    assert cache.add("answer1", 42, version=2) is True
    assert cache.add("answer1", 37, version=2) is False
    assert cache.add("answer1", 37, version=1) is True
    assert cache.get("answer1", version=1) == 37 and cache.get("answer1", version=2) == 42
    assert cache.has_key("answer1", version=2) is True
    assert caches["v2"].has_key("answer1") is True
    cache.set("answer2", 37, version=1)
    cache.set("answer2", 42, version=2)
    assert cache.delete("answer2") is True
    assert cache.get("answer2", version=1) is None and cache.get("answer2", version=2) == 42
    cache.set("answer3", 37, version=1)
    cache.set("answer3", 42, version=2)
    assert caches["v2"].incr("answer3") == 43
    assert cache.get("answer3", version=1) == 37
    assert caches["v2"].decr("answer3", version=1) == 36


def test_cache_versioning_get_set_many():
    cache.set_many({"ford1": 37, "arthur1": 42})
    assert cache.get_many(["ford1", "arthur1"]) == {"ford1": 37, "arthur1": 42}
    assert cache.get_many(["ford1", "arthur1"], version=2) == {}
    assert caches["v2"].get_many(["ford1", "arthur1"]) == {}
    assert caches["v2"].get_many(["ford1", "arthur1"], version=1) == {"ford1": 37, "arthur1": 42}
    caches["v2"].set_many({"ford3": 37, "arthur3": 42})
    assert cache.get_many(["ford3", "arthur3"], version=2) == {"ford3": 37, "arthur3": 42}


def test_incr_decr_version():
    cache.set("answer", 42, version=2)
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=3) == 42
    assert cache.decr_version("answer", version=3) == 2
    assert cache.get("answer", version=2) == 42
    with pytest.raises(ValueError):
        cache.incr_version("does_not_exist")
    cache.set("null", None)
    assert cache.incr_version("null") == 2


def test_custom_key_func():
    cache.set("answer1", 42)
    assert caches["custom_key"].get("answer1") is None
    assert caches["custom_key2"].get("answer1") is None
    caches["custom_key"].set("answer2", 42)
    assert cache.get("answer2") is None
    assert caches["custom_key"].get("answer2") == 42
    assert caches["custom_key2"].get("answer2") == 42


def test_fail_on_pickleerror():
    with pytest.raises(pickle.PickleError):
        cache.add("unpicklable", Unpicklable())
    with pytest.raises(pickle.PickleError):
        cache.set("unpicklable", Unpicklable())


def test_get_or_set():
    assert cache.get("projector") is None
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get("projector") == 42
    assert cache.get_or_set("null", None) is None
    assert cache.get("null", "default") is None
    assert cache.get_or_set("mykey", lambda: "value") == "value"
    assert cache.get_or_set("mykey", "other") == "value"
    assert cache.get_or_set("brian", 1979, version=2) == 1979
    with pytest.raises(TypeError):
        cache.get_or_set("brian")
    assert cache.get("brian", version=1) is None
    assert cache.get_or_set("brian", 42, version=1) == 42
    assert cache.get_or_set("zero", "z", 0) == "z"


def test_memcached_deletes_key_on_failed_set():
    cache.set("small_value", "a")
    assert cache.get("small_value") == "a"
    large_value = "a" * (2**20 + 1)
    assert cache.set("small_value", large_value) is False  # not swallowed: False
    assert cache.get("small_value") is None
    with pytest.raises(exc.ValueTooLargeError):
        caches["strict"].set("small_value", large_value)
    assert cache.set("small_value", "b") is True


def test_set_failure_on_a_dead_server_is_visible(memcached_factory):
    (server,) = memcached_factory(1)
    backend = MultiputCache(server.address, {"OPTIONS": {"timeout": 0.3}})
    assert backend.set("k", 1) is True
    server.kill()
    assert backend.set("k", 2) is False
    strict = MultiputCache(server.address, {"OPTIONS": {"timeout": 0.3, "raise_on_set_failure": True}})
    with pytest.raises(exc.ConnectionError):
        strict.set("k", 2)


def test_a_slow_replica_does_not_turn_a_replicated_set_into_a_miss(memcached_factory):
    # Write policy "all": one stopped replica makes the write short of its policy, but the
    # new value is on the others with a later stamp; the set stands and the next read (after
    # the replica is back) returns it and repairs the replica.
    servers = memcached_factory(3)
    location = ";".join(s.address for s in servers)
    backend = MultiputCache(location, {"OPTIONS": {"replicas": 3, "timeout": 0.3, "retry_interval": 0.05}})
    assert backend.set("k", "old") is True
    servers[1].pause()
    try:
        # The client itself reports the write short of its policy...
        with pytest.raises(exc.ReplicationError) as e:
            backend._cache.set("probe", "x")
        assert e.value.acked == 2
        time.sleep(0.1)  # past the retry interval: the stopped replica is tried again
        # ...and the backend's set stands.
        assert backend.set("k", "new") is True
        assert backend.get("k") == "new"
    finally:
        servers[1].resume()
    time.sleep(0.1)  # the stopped server's retry interval
    assert backend.get("k") == "new"
    # No replica stored it: False, and the old value is gone.
    for s in servers:
        s.kill()
    assert backend.set("k", "newer") is False
    strict = MultiputCache(location, {"OPTIONS": {"replicas": 3, "timeout": 0.3, "raise_on_set_failure": True}})
    with pytest.raises(exc.MultiputError):
        strict.set("k", "x")


def test_connections_are_shared_by_threads():
    clients = []

    def grab():
        clients.append(caches["default"]._cache)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in clients + [cache._cache]}) == 1


def test_lock():
    with cache.lock("job", timeout=5, wait=0) as lock:
        assert lock.held
        with pytest.raises(multiput.LockNotAcquiredError):
            cache.lock("job", wait=0.05)
    assert cache.lock("job", wait=0).release() is True


def test_async_methods():
    async def main():
        assert await cache.aset("a", 1) is True
        assert await cache.aget("a") == 1
        assert await cache.aadd("a", 2) is False
        assert await cache.aincr("a") == 2
        assert await cache.adecr("a") == 1
        assert await cache.ahas_key("a") is True
        assert await cache.aset_many({"b": 2, "c": 3}) == []
        assert await cache.aget_many(["a", "b", "c", "d"]) == {"a": 1, "b": 2, "c": 3}
        assert await cache.atouch("a", 10) is True
        assert await cache.aget_or_set("e", 5) == 5
        assert await cache.adelete("a") is True
        await cache.adelete_many(["b", "c"])
        assert await cache.aget_many(["b", "c"]) == {}
        assert await cache.aincr_version("e") == 2
        await cache.aclear()
        assert await cache.aget("e", version=2) is None
        await cache.aclose()

    asyncio.run(main())


def test_async_calls_run_concurrently_without_blocking_the_loop(memcached_factory):
    (server,) = memcached_factory(1)
    backend = MultiputCache(server.address, {"OPTIONS": {"timeout": 0.5, "connect_timeout": 0.5, "failure_limit": 100}})
    backend.set("k", 1)
    server.pause()

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.ensure_future(ticker())
        results = await asyncio.gather(*(backend.aget("k") for _ in range(4)), return_exceptions=True)
        t.cancel()
        return results, ticks

    results, ticks = asyncio.run(main())
    server.resume()
    assert all(isinstance(r, exc.TimeoutError) for r in results)
    # The event loop kept running while the calls waited (about 50 ticks of 10 ms in the 0.5 s
    # timeout; a loop blocked by the calls would tick once or twice). No clock is read: the
    # margin only has to survive a loaded machine.
    assert ticks > 5


def test_async_methods_are_specialized():
    for name in ("aget", "aset", "aadd", "aget_many", "aset_many", "adelete_many", "aincr", "aget_or_set", "ahas_key"):
        assert getattr(MultiputCache, name) is not getattr(BaseCache, name), name


def test_replicated_backend():
    r = caches["replicated"]
    r.clear()
    assert r._cache.replicas == 3
    assert r.set("k", {"v": 1}) is True
    assert r.get("k") == {"v": 1}
    assert r.add("k", 2) is False
    assert r.add("new", 2) is True and r.get("new") == 2
    assert r.incr("new", 5) == 7 and r.decr("new", 10) == 0
    with pytest.raises(ValueError):
        r.incr("missing")
    assert r.touch("k", 100) is True and r.touch("missing") is False
    assert r.get("k") == {"v": 1}
    assert r.set_many({"a": 1, "b": "two"}) == []
    assert r.get_many(["a", "b", "zz"]) == {"a": 1, "b": "two"}
    assert r.delete("a") is True and r.delete("a") is False
    r.delete_many(["b"])
    assert r.has_key("b") is False
    assert r.get_or_set("g", lambda: "made") == "made"
    assert r.get_or_set("g", "other") == "made"
    r.set("zero", 1, 0)
    assert r.get("zero") is None


def test_key_warnings_are_errors_not_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        with pytest.raises(InvalidCacheKey):
            cache.get("bad key")


# -- OPTIONS written for PyMemcacheCache / PyLibMCCache -------------------------------------

try:  # pylibmc needs libmemcached; the interop test skips only if it cannot be installed
    import pylibmc
except ImportError:  # pragma: no cover
    pylibmc = None

from multiput.django import translate_options  # noqa: E402


def test_pymemcache_options_from_djangos_docs_work(memcached_factory):
    # Django's documented PyMemcacheCache OPTIONS, kept when only BACKEND changes.
    servers = memcached_factory(2)
    opts = {"no_delay": True, "ignore_exc": True, "max_pool_size": 4, "use_pooling": True}
    backend = MultiputCache([s.address for s in servers], {"OPTIONS": opts})
    backend.set("k", "v")
    assert backend.get("k") == "v"
    assert translate_options(opts) == {"pool_size": 4, "no_delay": True, "ignore_exc": True, "ring": "rendezvous"}
    # ignore_exc: with a server gone, reads answer misses instead of raising.
    for s in servers:
        s.kill()
    assert backend.get("k", "gone") == "gone"
    assert backend.get_many(["k", "j"]) == {}
    assert backend.has_key("k") is False


def test_pylibmc_behaviors_choose_the_placement_and_settings():
    t = translate_options
    assert t({"binary": True}) == {"ring": "modula"}
    assert t({"behaviors": {}})["ring"] == "modula"
    assert t({"behaviors": {"ketama_weighted": True}})["ring"] == "libketama_compatible"
    assert t({"behaviors": {"ketama": True, "hash": "md5"}})["ring"] == "ketama_md5"
    assert t({"behaviors": {"distribution": "consistent", "hash": "md5"}})["ring"] == "ketama_md5"
    got = t({"behaviors": {"tcp_nodelay": True, "connect_timeout": 250, "send_timeout": 300000,
                           "receive_timeout": 400000, "retry_timeout": 2, "remove_failed": 3}})
    assert got == {"ring": "modula", "tcp_nodelay": True, "connect_timeout": 0.25, "timeout": 0.4,
                   "retry_interval": 2.0, "failure_limit": 3}
    # multiput's own options win over translated ones.
    assert t({"binary": True, "ring": "libketama_compatible"})["ring"] == "libketama_compatible"
    # Every behavior pylibmc 1.6 has is accepted (off, for the two that change placement),
    # mapped where multiput has the equivalent.
    everything = {"_hash_with_prefix_key": False, "_io_bytes_watermark": 65536, "_io_key_prefetch": 1,
                  "_io_msg_watermark": 500, "_noreply": False, "_poll_timeout": 150, "_socket_recv_size": 1 << 16,
                  "_socket_send_size": 1 << 16, "_sort_hosts": False, "auto_eject": True, "buffer_requests": True,
                  "cas": True, "connect_timeout": 250, "dead_timeout": 5, "failure_limit": 2, "no_block": True,
                  "pickle_protocol": 2, "receive_timeout": 400000, "remove_failed": 0, "retry_timeout": 3,
                  "send_timeout": 300000, "tcp_keepalive": True, "tcp_nodelay": True, "verify_keys": True}
    if pylibmc is not None:
        assert set(everything) | {"distribution", "hash", "ketama", "ketama_hash", "ketama_weighted",
                                  "num_replicas"} == set(pylibmc.all_behaviors)
    got = t({"behaviors": everything})
    assert got["timeout"] == 0.15  # _poll_timeout bounds the wait for a stalled server
    assert got["pickle_protocol"] == 2 and got["connect_timeout"] == 0.25 and got["failure_limit"] == 2
    for bad in ({"behaviors": {"ketama": True}},  # ketama without md5: not a placement we reproduce
                {"behaviors": {"hash": "crc"}},
                {"behaviors": {"num_replicas": 1}},
                {"behaviors": {"no_such_behavior": 1}},
                {"behaviors": {"poll_timeout": 100}},  # not a pylibmc name (pylibmc refuses it too)
                {"behaviors": {"sort_hosts": True}},
                {"behaviors": {"_sort_hosts": True}},  # changes placement
                {"behaviors": {"_hash_with_prefix_key": True}},
                {"binary": True, "username": "u", "password": "p"},  # pylibmc SASL
                {"tls_context": object()}):
        with pytest.raises(exc.ConfigError):
            t(bad)
    # Without binary, username/password are memcached's ASCII authentication: passed through.
    assert t({"username": "u", "password": "p"}) == {"username": "u", "password": "p"}


@pytest.mark.skipif(pylibmc is None, reason="pylibmc could not be installed")
@pytest.mark.parametrize("behaviors", [None, {"ketama_weighted": True}, {"ketama": True, "hash": "md5"}],
                         ids=["default", "ketama_weighted", "ketama_md5"])
def test_pylibmc_options_find_what_pylibmccache_stored(memcached_factory, behaviors):
    # A PyLibMCCache app and a MultiputCache app with the same OPTIONS share one fleet: every
    # key is on the server where the other looks for it.
    servers = memcached_factory(3)
    addrs = [s.address for s in servers]
    opts = {"binary": True} if behaviors is None else {"binary": True, "behaviors": behaviors}
    pl = pylibmc.Client(addrs, binary=True, behaviors=behaviors or {})
    backend = MultiputCache(addrs, {"OPTIONS": opts})
    keys = [f"user:{i}:profile" for i in range(60)]
    for k in keys:
        assert pl.set(backend.make_key(k), b"from pylibmc")
    assert backend.get_many(keys) == {k: b"from pylibmc" for k in keys}
    homes = {backend._cache.server_for(backend.make_key(k)) for k in keys}
    assert len(homes) == 3


def test_pymemcache_options_find_what_pymemcachecache_stored(memcached_factory):
    # A PyMemcacheCache app (pymemcache's HashClient) and a MultiputCache app with its OPTIONS
    # share one fleet: every key, unicode ones included, is where the other looks for it.
    from pymemcache.client.hash import HashClient

    servers = memcached_factory(4)
    addrs = [s.address for s in servers]
    hc = HashClient(addrs, use_pooling=True, max_pool_size=2, allow_unicode_keys=True, default_noreply=False)
    backend = MultiputCache(addrs, {"OPTIONS": {"use_pooling": True, "max_pool_size": 2}})
    keys = [f"user:{i}:profile" for i in range(60)] + [f"café:{i}:日本" for i in range(20)]
    for k in keys:
        assert hc.set(backend.make_key(k), b"from pymemcache")
    assert backend.get_many(keys) == {k: b"from pymemcache" for k in keys}
    assert len({backend._cache.server_for(backend.make_key(k)) for k in keys}) == 4
    hc.close()


def test_plain_key_shares_keys_with_other_apps():
    # A PHP/Node/Rust app names the key "user:42"; Django with plain_key stores it so.
    from django.core.cache import caches

    import multiput

    cache = caches["plain_keys"]
    cache.set("user:42", "Ada")
    other = multiput.Client(cache._servers)
    assert other.get("user:42") == "Ada"
    other.set("user:43", "Bob")
    assert cache.get("user:43") == "Bob"
    assert cache.get("user:42", version=7) == "Ada"  # VERSION is ignored
