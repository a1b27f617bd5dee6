"""multiput.Client against real memcached: every method, pymemcache's conventions, typed
values, errors and their classes, bad keys and values refused before any I/O."""

import builtins
import datetime
import decimal
import pickle
import threading
import time

import pytest

import multiput
from multiput import exceptions as exc


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class Unpicklable:
    def __getstate__(self):
        raise pickle.PickleError("no")


def dead_address():
    from conftest import free_port

    return "127.0.0.1:%d" % free_port()


# -- construction -----------------------------------------------------------------------------


def test_server_forms(addresses):
    joined = multiput.Client(",".join(addresses))
    semi = multiput.Client(";".join(addresses))
    tuples = multiput.Client([(a.split(":")[0], int(a.split(":")[1])) for a in addresses])
    assert joined.servers == semi.servers == tuples.servers == addresses
    assert joined.replicas == 1 and not joined.enveloped and joined.policy is None
    assert joined.ring == "libketama_compatible" and joined.convention == "multiput"
    assert multiput.Client(addresses, ring="ketama_weighted").ring == "libketama_compatible"
    assert multiput.Client(addresses, ring="ketama_md5").ring == "ketama_md5"
    assert multiput.Client(addresses, ring="modula").ring == "modula"
    assert "replicas=1" in repr(joined)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ring": "ketama_spy"},
        {"protocol": "binary"},
        {"timeout": 0},
        {"timeout": -1},
        {"replicas": 4},
        {"replicas": 0},
        {"replicas": 2, "envelope": False},
        {"replicas": 2, "write_policy": "sometimes"},
        {"replicas": 2, "read_policy": 3},
        {"convention": "ruby"},
        {"key_prefix": "has space"},
    ],
)
def test_bad_configuration_raises_config_error(addresses, kwargs):
    with pytest.raises((exc.ConfigError, exc.InvalidKeyError, ValueError)):
        multiput.Client(addresses, **kwargs)


def test_no_servers_is_a_config_error():
    with pytest.raises(exc.ConfigError) as e:
        multiput.Client([])
    assert isinstance(e.value, ValueError) and e.value.kind == "config"


# -- get / set and typed values ---------------------------------------------------------------


VALUES = [
    b"",
    b"\x00\xff\r\nEND\r\n",
    "",
    "Iñtërnâtiônàlizætiøn",
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**100,
    1.5,
    -0.0,
    float("inf"),
    True,
    False,
    None,
    [1, "two", 3.0],
    {"a": (1, 2)},
    Point(1, 2),
    datetime.date(2024, 2, 29),
    decimal.Decimal("1.10"),
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_values_round_trip_with_their_type(client, key, value):
    assert client.set(key, value) is True
    got = client.get(key)
    assert got == value and type(got) is type(value)


def test_get_default_and_miss(client, key):
    assert client.get(key) is None
    assert client.get(key, "dflt") == "dflt"
    assert client.get(key, default=7) == 7
    client.set(key, None)
    assert client.get(key, "dflt") is None  # a stored None is not a miss


def test_str_and_bytes_keys_are_the_same_key(client, key):
    client.set(key, "v")
    assert client.get(key.encode()) == "v"
    client.set("ключ:" + key, 1)
    assert client.get(("ключ:" + key).encode("utf-8")) == 1


def test_set_with_expire(client, key):
    client.set(key, "x", expire=1)
    assert client.get(key) == "x"
    time.sleep(2.1)
    assert client.get(key) is None


def test_negative_expire_expires_at_once(client, key):
    assert client.set(key, "x", -1) is True
    assert client.get(key) is None
    assert client.set(key, "x", 0) is True  # 0: never expires
    assert client.get(key) == "x"


def test_float_expire_rounds_up(client, key):
    client.set(key, "x", 0.2)
    assert client.get(key) == "x"


def test_flags_override(client, servers, key):
    client.set(key, b"raw", flags=1234)
    owner = next(s for s in servers if s.address == client.server_for(key))
    assert owner.raw_get(key) == (1234, b"raw")


def test_pickle_errors_propagate_before_io(key):
    c = multiput.Client([dead_address()])
    with pytest.raises(pickle.PickleError):
        c.set(key, Unpicklable())


class MyStr(str):
    pass


def test_subclasses_are_pickled_and_come_back_as_themselves(client, key):
    client.set(key, MyStr("x"))
    assert type(client.get(key)) is MyStr


# -- conditional stores -----------------------------------------------------------------------


def test_add(client, key):
    assert client.add(key, "first") is True
    assert client.add(key, "second") is False
    assert client.get(key) == "first"


def test_replace(client, key):
    assert client.replace(key, "x") is False
    assert client.get(key) is None
    client.set(key, "a")
    assert client.replace(key, "b") is True
    assert client.get(key) == "b"


def test_append_prepend(client, key):
    assert client.append(key, "x") is False
    assert client.prepend(key, "x") is False
    client.set(key, "mid")
    assert client.append(key, "-end") is True
    assert client.prepend(key, "start-") is True
    assert client.get(key) == "start-mid-end"
    client.set(key + "b", b"\x00")
    client.append(key + "b", b"\xff")
    assert client.get(key + "b") == b"\x00\xff"


def test_gets_and_cas(client, key):
    assert client.gets(key) == (None, None)
    assert client.gets(key, "d", "c") == ("d", "c")
    client.set(key, {"v": 1})
    value, cas = client.gets(key)
    assert value == {"v": 1} and isinstance(cas, int)
    assert client.cas(key, {"v": 2}, cas) is True
    assert client.cas(key, {"v": 3}, cas) is False  # stale unique: conflict
    assert client.get(key) == {"v": 2}
    assert client.cas(key + "missing", 1, 12345) is None  # not found


def test_gat(client, key):
    assert client.gat(key, 10) is None
    client.set(key, "x", 1)
    assert client.gat(key, 100) == "x"
    time.sleep(2.1)
    assert client.get(key) == "x"


# -- delete, counters, touch ------------------------------------------------------------------


def test_delete(client, key):
    assert client.delete(key) is False
    client.set(key, 1)
    assert client.delete(key) is True
    assert client.get(key) is None


def test_incr_decr(client, key):
    assert client.incr(key, 1) is None
    assert client.decr(key, 1) is None
    client.set(key, 10)
    assert client.incr(key, 5) == 15
    assert client.incr(key) == 16
    assert client.decr(key, 7) == 9
    assert client.get(key) == 9  # memcached pads "9 " after a decr: still an int
    assert client.decr(key, 100) == 0
    client.set(key, 2**63 - 1)
    assert client.incr(key, 1) == 2**63  # memcached counters are unsigned 64-bit
    assert client.get(key) == 2**63


def test_incr_of_a_non_number_is_a_client_error(client, key):
    client.set(key, "abc")
    with pytest.raises(exc.ClientError) as e:
        client.incr(key, 1)
    assert e.value.kind == "client" and e.value.server == client.server_for(key)


def test_negative_delta_is_refused(client, key):
    client.set(key, 1)
    with pytest.raises(OverflowError):
        client.incr(key, -1)


def test_touch(client, key):
    assert client.touch(key, 10) is False
    client.set(key, "x", 1)
    assert client.touch(key, 100) is True
    time.sleep(2.1)
    assert client.get(key) == "x"
    assert client.touch(key, -1) is True
    assert client.get(key) is None


# -- multi-key --------------------------------------------------------------------------------


def test_get_many_returns_hits_keyed_as_given(client, key):
    keys = ["%s:%d" % (key, i) for i in range(100)]
    assert client.set_many({k: i for i, k in enumerate(keys[:50])}) == []
    got = client.get_many(keys + [keys[0].encode()])
    assert got == {**{k: i for i, k in enumerate(keys[:50])}, keys[0].encode(): 0}
    assert client.get_many([]) == {}
    assert client.get_many(iter(keys[:2])) == {keys[0]: 0, keys[1]: 1}


def test_set_many_accepts_pairs_and_mixed_types(client, key):
    items = [(key + ":s", "s"), (key + ":i", 1), (key + ":b", b"b"), (key + ":o", [1])]
    assert client.set_many(items, expire=100) == []
    assert client.get_many([k for k, _ in items]) == dict(items)
    assert client.set_many({}) == []


def test_set_many_returns_the_keys_that_failed(client, key):
    big = b"x" * (1024 * 1024 + 1)
    failed = client.set_many({key + ":ok": 1, key + ":big": big})
    assert failed == [key + ":big"]
    assert client.get(key + ":ok") == 1


def test_gets_many(client, key):
    client.set_many({key + "1": "a", key + "2": "b"})
    got = client.gets_many([key + "1", key + "2", key + "3"])
    assert set(got) == {key + "1", key + "2"}
    value, cas = got[key + "1"]
    assert value == "a" and client.cas(key + "1", "z", cas) is True
    assert client.gets_multi([key + "1"])[key + "1"][0] == "z"  # pymemcache HashClient's name


def test_delete_many(client, key):
    client.set_many({key + "1": 1, key + "2": 2, key + "3": 3})
    assert client.delete_many([key + "1", key + "2", key + "missing"]) is True
    assert client.get_many([key + "1", key + "2", key + "3"]) == {key + "3": 3}
    assert client.delete_many([]) is True


# -- servers ----------------------------------------------------------------------------------


def test_flush_all(client, key):
    client.set(key, 1)
    assert client.flush_all() is True
    assert client.get(key) is None


def test_stats_and_version(client, addresses):
    stats = client.stats()
    assert set(stats) == set(addresses)
    for s in stats.values():
        assert isinstance(s["pid"], int) and isinstance(s["version"], str)
        assert isinstance(s["rusage_user"], float)
    assert set(client.stats("settings")) == set(addresses)
    versions = client.version()
    assert set(versions) == set(addresses) and all(v.startswith("1.") for v in versions.values())


def test_server_for_spreads_keys(client, addresses):
    owners = {client.server_for("k%d" % i) for i in range(200)}
    assert owners == set(addresses)
    assert client.replicas_of("k1") == [client.server_for("k1")]


def test_metrics_count(client, key):
    client.get(key)
    client.set(key, 1)
    client.get(key)
    m = client.metrics()
    assert m["total"]["hits"] >= 1 and m["total"]["misses"] >= 1 and m["total"]["sets"] >= 1
    assert set(m["servers"]) == set(client.servers)


def test_close_keeps_the_client_usable(client, key):
    client.set(key, 1)
    client.close()
    client.quit()
    client.disconnect_all()
    assert client.get(key) == 1


def test_key_prefix_is_sent_not_hashed(addresses, servers, key):
    plain = multiput.Client(addresses)
    prefixed = multiput.Client(addresses, key_prefix="app1:")
    prefixed.set(key, "v")
    # Placed by the key without the prefix, stored under the prefixed key.
    assert prefixed.server_for(key) == plain.server_for(key)
    owner_only = multiput.Client([plain.server_for(key)])
    assert owner_only.get("app1:" + key) == "v"
    assert owner_only.get(key) is None


def test_text_protocol(addresses, key):
    c = multiput.Client(addresses, protocol="text")
    c.set(key, [1])
    assert c.get(key) == [1]
    assert c.get_many([key]) == {key: [1]}


# -- bad keys and values: refused before any I/O ----------------------------------------------


BAD_KEYS = ["", "has space", "tab\there", "new\nline", "x" * 251, "del\x7f", b"\x00"]


@pytest.mark.parametrize("bad", BAD_KEYS, ids=[repr(k)[:20] for k in BAD_KEYS])
def test_bad_keys_raise_before_io(bad):
    # The server does not exist: an attempt to send would be a ConnectionError.
    c = multiput.Client([dead_address()])
    for call in (
        lambda: c.get(bad),
        lambda: c.set(bad, 1),
        lambda: c.add(bad, 1),
        lambda: c.delete(bad),
        lambda: c.incr(bad, 1),
        lambda: c.touch(bad, 1),
        lambda: c.get_many(["ok", bad]),
        lambda: c.set_many({"ok": 1, bad: 2}),
        lambda: c.delete_many(["ok", bad]),
    ):
        with pytest.raises(exc.InvalidKeyError) as e:
            call()
        assert isinstance(e.value, ValueError) and e.value.kind == "invalid_key"


def test_binary_keys_opt_in_sends_them_base64_over_meta(addresses, key):
    c = multiput.Client(addresses, binary_keys=True)
    odd = [key + " with space", (key + "\x00\r\n").encode(), key + "\ttab"]
    for i, k in enumerate(odd):
        assert c.set(k, i)
        assert c.get(k) == i
    got = c.get_many(odd + [key + " missing"])
    assert got == {odd[0]: 0, odd[1]: 1, odd[2]: 2}
    assert c.incr(odd[0], 5) == 5
    assert c.delete(odd[1])
    assert c.get(odd[1]) is None
    # The raw bytes are the stored key: the same item, however it is asked for.
    c.set(b"x y", "v")
    assert c.get("x y") == "v"
    with pytest.raises(exc.InvalidKeyError):
        c.get(b" " * 187)  # 186 raw bytes is the base64 limit (250 on the wire)
    text = multiput.Client(addresses, binary_keys=True, protocol="text")
    with pytest.raises(exc.NotSupportedError):
        text.get("has space")
    with pytest.raises(exc.InvalidKeyError):
        multiput.Client(addresses).get("has space")


def test_ignore_exc_answers_failed_reads_as_misses(memcached_factory, key):
    # pymemcache's option: a dead server's keys are misses, the live servers' keys are hits.
    servers = memcached_factory(3)
    addrs = [s.address for s in servers]
    c = multiput.Client(addrs, ignore_exc=True, timeout=0.5, connect_timeout=0.5)
    keys = [f"{key}:{i}" for i in range(30)]
    c.set_many({k: k for k in keys})
    dead = servers[1]
    on_dead = [k for k in keys if c.server_for(k) == dead.address]
    assert on_dead and len(on_dead) < len(keys)
    dead.kill()
    got = c.get_many(keys)
    assert got == {k: k for k in keys if k not in on_dead}
    assert c.get(on_dead[0], "dflt") == "dflt"
    assert c.gets(on_dead[0]) == (None, None)
    assert c.gets_many(keys).keys() == got.keys()
    with pytest.raises(exc.InvalidKeyError):  # a bad key is the caller's mistake: still raised
        c.get("bad key")
    strict = multiput.Client(addrs, timeout=0.5, connect_timeout=0.5)
    with pytest.raises(exc.ConnectionError):
        strict.get_many(keys)


def test_cache_memlimit_and_check_key(memcached_factory):
    (server,) = memcached_factory(1)
    c = multiput.Client([server.address], key_prefix="p:")
    assert c.cache_memlimit(32) is True
    assert c.stats()[server.address]["limit_maxbytes"] == 32 * 1024 * 1024
    assert c.check_key("k") == b"p:k"
    assert c.check_key("é") == "p:é".encode()
    with pytest.raises(exc.InvalidKeyError):
        c.check_key("bad key")


def test_key_length_counts_utf8_bytes_and_prefix(key):
    c = multiput.Client([dead_address()], key_prefix="p:")
    with pytest.raises(exc.InvalidKeyError):
        c.get("é" * 125)  # 250 bytes + prefix
    with pytest.raises(TypeError):
        c.get(42)


def test_oversize_values_raise_before_io(key):
    c = multiput.Client([dead_address()])
    with pytest.raises(exc.ValueTooLargeError) as e:
        c.set(key, b"x" * (1024 * 1024 + 1))
    assert isinstance(e.value, ValueError)
    small = multiput.Client([dead_address()], max_value_size=10)
    with pytest.raises(exc.ValueTooLargeError):
        small.set(key, "x" * 11)


# -- failures ---------------------------------------------------------------------------------


def test_refused_connection_raises_connection_error(key):
    c = multiput.Client([dead_address()])
    with pytest.raises(exc.ConnectionError) as e:
        c.get(key)
    assert isinstance(e.value, builtins.ConnectionError)
    assert isinstance(e.value, exc.MultiputError)
    # Marked down: the next call fails fast with ServerDownError (a ConnectionError).
    with pytest.raises(exc.ServerDownError):
        c.get(key)


def test_stopped_server_times_out_then_is_marked_down(memcached_factory, key):
    (server,) = memcached_factory(1)
    c = multiput.Client([server.address], timeout=0.3, retry_interval=30)
    c.set(key, 1)
    server.pause()
    with pytest.raises(exc.TimeoutError) as e:
        c.get(key)
    assert isinstance(e.value, builtins.TimeoutError) and e.value.server == server.address
    # Marked down: refused without waiting again (the counters prove it, not a clock).
    with pytest.raises(exc.ServerDownError):
        c.set(key, 2)
    m = c.metrics()["servers"][server.address]
    assert m["timeouts"] == 1 and m["down_events"] == 1, m
    server.resume()


def test_gil_is_released_while_waiting(memcached_factory, key):
    (server,) = memcached_factory(1)
    c = multiput.Client([server.address], timeout=0.5, connect_timeout=0.5, failure_limit=100)
    c.set(key, 1)
    server.pause()
    errors = []

    def call():
        try:
            c.get(key)
        except exc.TimeoutError as e:
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    # The main thread keeps running Python while the four wait on the socket.
    spins = 0
    while any(t.is_alive() for t in threads):
        spins += 1
        time.sleep(0.001)
    server.resume()
    assert len(errors) == 4
    # The main thread ran Python all along: with the GIL held during a wait it would have
    # stalled for each of the four (no timing assertion: a count of its own progress).
    assert spins > 50


# -- recipes ----------------------------------------------------------------------------------


def test_cas_update(client, key):
    assert client.cas_update(key, lambda v: (v or 0) + 1) == 1
    assert client.cas_update(key, lambda v: v + 1) == 2
    assert client.get(key) == 2
    assert client.cas_update(key, lambda v: multiput.KEEP) == 2
    assert client.cas_update(key, lambda v: str(v)) == "2"  # type changes: flags follow
    assert client.get(key) == "2"
    assert client.cas_update(key, lambda v: multiput.DELETE) is None
    assert client.get(key) is None
    marker = object()
    seen = []
    client.cas_update(key, lambda v: seen.append(v) or multiput.KEEP, default=marker)
    assert seen == [marker]


def test_cas_update_propagates_the_functions_error(client, key):
    client.set(key, 1)

    def boom(v):
        raise KeyError("inside")

    with pytest.raises(KeyError):
        client.cas_update(key, boom)
    assert client.get(key) == 1


def test_cas_update_loses_no_update_under_contention(client, key):
    client.set(key, 0)

    def work():
        for _ in range(50):
            client.cas_update(key, lambda v: v + 1, max_attempts=1000, deadline=30)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.get(key) == 400


def test_get_or_set(client, key):
    calls = []

    def load():
        calls.append(1)
        return {"loaded": True}

    assert client.get_or_set(key, load) == {"loaded": True}
    assert client.get_or_set(key, load) == {"loaded": True}
    assert calls == [1]
    assert client.get_or_set(key + "n", None) is None
    assert client.get(key + "n", "dflt") is None
    assert client.get_or_set(key + "7", 7, expire=100) == 7


def test_lock(client, key):
    with client.lock(key, timeout=5, wait=0) as lock:
        assert lock.held and lock.token and lock.name == key
        with pytest.raises(exc.LockNotAcquiredError):
            client.lock(key, wait=0.05)
        assert lock.extend(10) is True
    assert not lock.held
    assert lock.release() is False  # already released
    again = client.lock(key, wait=0, fencing=True)
    again2_fence = again.fence
    again.release()
    third = client.lock(key, wait=0, fencing=True)
    assert third.fence > again2_fence
    third.release()


def test_lock_is_exclusive_between_threads(client, key):
    inside = []
    overlaps = []

    def work():
        for _ in range(10):
            with client.lock(key, timeout=5, wait=10):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                time.sleep(0.001)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_plain_encoding_helpers():
    # multiput's own flags (the default): every binding reads these with their type.
    assert multiput.plain_encoding(b"x") == (b"x", 0)
    assert multiput.plain_encoding("é") == ("é".encode(), 0x9000)
    assert multiput.plain_encoding(42) == (b"42", 0xA000)
    assert multiput.plain_encoding(1.5) == (b"1.5", 0xB000)
    assert multiput.plain_encoding(True) == (b"1", 0xC000)
    assert multiput.plain_encoding([1])[1] == 0xD100  # a pickle, tagged as one
    for v in [b"x", "é", 42, -7, 1.5, True, False, [1, {"a": 2}]]:
        assert multiput.plain_decoding(*multiput.plain_encoding(v)) == v
    # pylibmc's and pymemcache's flags, on request.
    assert multiput.plain_encoding("é", "pylibmc") == ("é".encode(), 16)
    assert multiput.plain_encoding(42, "pymemcache") == (b"42", 2)
    assert multiput.plain_encoding(True, "python")[1] == 1
    assert multiput.plain_encoding(0.5, "php") == (b".5", 2)
    assert multiput.plain_encoding(True, "php") == (b"1", 3)
    assert multiput.plain_decoding(b"9 ", 2) == 9
    assert multiput.plain_decoding(b"1", 3, "php") is True
    with pytest.raises(exc.NotSupportedError):
        multiput.plain_encoding([1], "php")
    with pytest.raises(exc.NotSupportedError):
        multiput.plain_decoding(b"a:0:{}", 4, "php")


def test_single_server_tuple_like_pymemcache(servers, key):
    host, port = servers[0].address.split(":")
    c = multiput.Client((host, int(port)))
    assert c.servers == [servers[0].address]
    c.set(key, 1)
    assert c.get(key) == 1


def test_php_convention_flags(servers, key):
    c = multiput.Client([servers[0].address], convention="php")
    assert c.convention == "php"
    for value, flags, payload in [
        ("text", 0, b"text"),
        (b"raw", 0, b"raw"),
        (42, 1, b"42"),
        (0.5, 2, b".5"),
        (True, 3, b"1"),
        (False, 3, b""),
    ]:
        c.set(key, value)
        assert servers[0].raw_get(key) == (flags, payload)
    c.set(key, 1e25)
    assert c.get(key) == 1e25
    c.set(key, "é")
    assert c.get(key) == "é".encode()  # PHP strings have no text type: bytes back
    with pytest.raises(exc.NotSupportedError):
        c.set(key, [1, 2])  # PHP serialize() is not a Python format


def test_error_kinds_are_set():
    assert exc.NotSupportedError("x").kind == "unsupported"
    assert exc.TimeoutError("x").kind == "timeout"
    assert issubclass(exc.ServerDownError, builtins.ConnectionError)
    assert issubclass(exc.CasRetriesExhaustedError, exc.CasConflictError)
