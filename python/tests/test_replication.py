"""Replicated mode (replicas=3) against real servers: typed values in the envelope, reads that
survive a kill -9, tombstones, exact counters, what is refused, and plain vs enveloped."""

import time
import uuid

import pytest

import multiput
from multiput import exceptions as exc


@pytest.fixture
def three(memcached_factory):
    return memcached_factory(3)


def repl(servers, **kw):
    kw.setdefault("timeout", 0.5)
    kw.setdefault("retry_interval", 30)
    return multiput.Client([s.address for s in servers], replicas=3, **kw)


def test_values_are_written_to_every_replica_with_flags_0(three):
    c = repl(three)
    assert c.replicas == 3 and c.enveloped
    assert c.policy["write_policy"] == "all" and c.policy["read_policy"] == "all"
    c.set("k", "Ada")
    for s in three:
        flags, data = s.raw_get("k")
        assert flags == 0 and data[:3] == b"\xe1MP" and data.endswith(b"Ada")
    assert sorted(c.replicas_of("k")) == sorted(s.address for s in three)
    assert c.replicas_of("k")[0] == c.server_for("k")


@pytest.mark.parametrize("value", [b"b", "t", 7, -(2**63), 2.5, True, False, None, [1, {"x": 2}], 2**70])
def test_typed_values_round_trip(three, value):
    c = repl(three)
    c.set("v", value)
    got = c.get("v")
    assert got == value and type(got) is type(value)


def test_many(three):
    c = repl(three)
    items = {"m%d" % i: i for i in range(50)}
    items["bytes"] = b"raw"
    assert c.set_many(items) == []
    assert c.set_many({"b1": b"1", "b2": b"2"}) == []  # the all-bytes fast path
    assert c.get_many(list(items) + ["missing"]) == items
    assert c.delete_many(["m1", "m2"]) is True
    assert c.get_many(["m1", "m2", "m3"]) == {"m3": 3}


def test_reads_survive_kill_9_of_a_replica(three):
    c = repl(three, write_policy="quorum")
    keys = ["k%d" % i for i in range(100)]
    c.set_many({k: k for k in keys})
    three[1].kill()
    assert c.get_many(keys) == {k: k for k in keys}
    for k in keys[:10]:
        assert c.get(k) == k
    # Writes meet the quorum with two replicas; keys are not moved to other servers.
    assert c.set("after", 1) is True
    assert c.get("after") == 1
    assert three[1].address in c.replicas_of("after")


def test_write_policy_all_reports_the_dead_replica(three):
    c = repl(three)
    c.set("x", 1)
    three[2].kill()
    with pytest.raises(exc.ReplicationError) as e:
        c.set("x", 2)
    err = e.value
    assert err.op == "write" and err.acked == 2 and err.required == 3
    assert [s for s, _ in err.failures] == [three[2].address]
    assert isinstance(err.failures[0][1], exc.ConnectionError)
    # Marked down now: the replica is skipped (and reported), the write succeeds.
    assert c.set("x", 3) is True
    assert c.get("x") == 3


def test_stopped_replica_costs_one_timeout(three):
    c = repl(three, write_policy="quorum", timeout=0.3)
    c.set("s", 1)
    three[0].pause()
    assert c.get("s") == 1
    assert c.metrics()["servers"][three[0].address]["timeouts"] == 1
    for _ in range(5):
        assert c.get("s") == 1
    # The stopped server is marked down: skipped, never waited for again.
    m = c.metrics()["servers"][three[0].address]
    assert m["timeouts"] == 1 and m["down_events"] == 1, m
    three[0].resume()


def test_delete_leaves_a_tombstone_that_beats_a_stale_replica(three):
    c = repl(three)
    c.set("d", "old")
    stale = three[2].raw_get("d")
    c.delete("d")
    assert c.get("d") is None
    # Put the old copy back on one replica, as if it had missed the delete.
    flags, data = stale
    three[2].raw(b"set d %d 0 %d\r\n%s\r\n" % (flags, len(data), data))
    assert c.get("d") is None
    assert c.get_many(["d"]) == {}


def test_later_write_wins_and_repairs(three):
    c = repl(three)
    c.set("w", "v1")
    old = three[0].raw_get("w")
    c.set("w", "v2")
    flags, data = old
    three[0].raw(b"set w %d 0 %d\r\n%s\r\n" % (flags, len(data), data))
    assert c.get("w") == "v2"
    assert three[0].raw_get("w")[1].endswith(b"v2")  # read repair
    assert c.metrics()["total"]["repairs"] >= 1


def test_exact_counters(three):
    c = repl(three)
    assert c.incr("n", 1) is None
    c.set("n", 10)
    assert c.incr("n", 5) == 15
    assert c.decr("n", 20) == 0
    assert c.get("n") == 0


def test_cas_update_get_or_set_and_lock_work_replicated(three):
    c = repl(three)
    assert c.cas_update("u", lambda v: (v or 0) + 1) == 1
    assert c.cas_update("u", lambda v: v + 1) == 2
    assert c.get("u") == 2
    assert c.get_or_set("g", lambda: "made") == "made"
    assert c.get_or_set("g", "other") == "made"
    with c.lock("L", wait=0) as lock:
        assert lock.held


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.gat("k", 1),
        lambda c: c.set("k", 1, flags=3),
    ],
)
def test_unreplicated_operations_raise_not_supported(three, call):
    with pytest.raises(exc.NotSupportedError) as e:
        call(repl(three))
    assert isinstance(e.value, exc.MultiputError)
    assert "replicat" in str(e.value)


def test_gets_and_cas_on_replicated_keys_use_version_tokens(three):
    # The core's replicated gets/cas (as PHP's): a version token instead of a CAS unique,
    # the cas serialized through the key's primary replica.
    c = repl(three)
    c.set("v", "one")
    value, token = c.gets("v")
    assert value == "one" and isinstance(token, int) and token > 0
    assert c.gets_many(["v"]) == {"v": ("one", token)}
    assert c.cas("v", "two", token) is True
    assert c.cas("v", "three", token) is False  # changed since
    assert c.get("v") == "two"
    c.delete("v")
    assert c.cas("v", "four", token) is None  # gone
    assert c.gets("missing") == (None, None)


def test_conditional_writes_on_replicated_keys(three):
    c = repl(three)
    assert c.add("k", "first") is True
    assert c.add("k", "second") is False
    assert c.replace("missing", "x") is False
    assert c.replace("k", "one") is True
    assert c.append("k", ",two") is True
    assert c.prepend("k", "zero,") is True
    assert c.get("k") == "zero,one,two"
    assert c.append("missing", "x") is False
    assert c.touch("k", 100) is True
    assert c.touch("missing", 100) is False
    # Every replica holds the result (the core wrote it through the primary, then to all).
    for s in three:
        flags, raw = s.raw_get("k")
        assert raw.endswith(b"zero,one,two")


def test_plain_and_enveloped_clients_on_one_fleet(three):
    addresses = [s.address for s in three]
    r = repl(three)
    plain = multiput.Client(addresses)
    # A plain (pylibmc-style) value is read by the replicated client by its flags...
    plain.set("p", 41)
    assert r.get("p") == 41
    # ...and loses to any enveloped write.
    r.set("p", 42)
    assert r.get("p") == 42
    # A plain reader of an enveloped value gets the raw envelope bytes (flags 0).
    raw = plain.get("p")
    assert isinstance(raw, bytes) and raw[:3] == b"\xe1MP"


def test_envelope_with_one_replica(three):
    c = multiput.Client([three[0].address], envelope=True)
    assert c.enveloped and c.replicas == 1
    c.set("e", 1.25)
    assert c.get("e") == 1.25
    assert three[0].raw_get("e")[1][:3] == b"\xe1MP"


def test_read_policy_first_hit(three):
    c = repl(three, read_policy="first_hit")
    assert c.policy["read_policy"] == "first_hit"
    key = "f" + uuid.uuid4().hex
    c.set(key, "x")
    assert c.get(key) == "x"


def test_policies_can_be_overridden_per_call(three):
    c = repl(three)
    c.set("p", "v1")
    dead = c.replicas_of("p")[2]
    next(s for s in three if s.address == dead).kill()
    with pytest.raises(exc.ReplicationError):
        c.set("p", "v2")  # All: the dead replica fails the write
    quorum = c.with_policy(write_policy="quorum:2")
    assert quorum.policy["write_policy"] == "quorum:2" and c.policy["write_policy"] == "all"
    assert quorum.set("p", "v3") is True
    assert c.get("p") == "v3"
    assert c.with_policy(read_policy="first_hit").get("p") == "v3"
    with pytest.raises(exc.ConfigError):
        c.with_policy(read_policy="quorum:4")
    with pytest.raises(exc.NotSupportedError):
        multiput.Client([three[0].address]).with_policy(read_policy="all")
