"""Fork safety (DESIGN lesson 8): a client used before ``fork()`` must never let a child read
or write its parent's sockets. Before the fix, 4 children of a client that had made one call
read ~1,400 values of other keys each (up to 1,904 with replicas=2), and the parent then read
136 wrong values of 200.

Every test here: the parent makes calls (so it has pooled connections), forks, and each child
does 3,000 reads of keys whose values name their key, counting wrong values, misses and
errors; the counts come back through a pipe (``os.fork``) or a result queue
(``multiprocessing``). Children always leave with ``os._exit`` and every loop and wait is
bounded; a child that does not finish in time is killed by PID and the test fails. Then the
parent's next 200 calls must all be right, on the connections it already had.
"""

import gc
import json
import multiprocessing
import os
import select
import signal
import threading
import time
import uuid

import pytest

import multiput

CHILDREN = 4
READS = 3000
PARENT_CALLS = 200
KEYS = 300
#: Generous bound on one child's whole run (not a timing assertion: only a hang fails it).
CHILD_DEADLINE = 120.0

# multiprocessing with the fork start method, in a process that has threads (the core's, or an
# earlier test's executor), warns on Python 3.12+; forking is the point of these tests.
pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


def value_of(key):
    """A value that names its key, so a reply for another key is always recognised."""
    return "value-of:" + key


def make_keys(tag, n=KEYS):
    run = uuid.uuid4().hex[:10]
    return ["fork:%s:%s:%d" % (tag, run, i) for i in range(n)]


def reads(get, keys, child, n=READS, deadline=CHILD_DEADLINE):
    """``n`` reads through ``get`` (every 10th a multi-get of 5 keys), each checked against the
    value its key must have: ``{"done", "wrong", "missing", "errors", "samples"}``."""
    out = {"done": 0, "wrong": 0, "missing": 0, "errors": 0, "samples": []}
    stop = time.monotonic() + deadline
    for i in range(n):
        if time.monotonic() > stop:
            break
        k = keys[(i * 7 + child * 31) % len(keys)]
        try:
            if i % 10 == 9:
                batch = [keys[(i + j * 13 + child) % len(keys)] for j in range(5)]
                got = get(batch)
                for b in batch:
                    if b not in got:
                        out["missing"] += 1
                    elif got[b] != value_of(b):
                        out["wrong"] += 1
                        if len(out["samples"]) < 5:
                            out["samples"].append("%s -> %r" % (b, got[b]))
                for extra in set(got) - set(batch):
                    out["wrong"] += 1
                    if len(out["samples"]) < 5:
                        out["samples"].append("unasked %s" % extra)
            else:
                v = get(k)
                if v is None:
                    out["missing"] += 1
                elif v != value_of(k):
                    out["wrong"] += 1
                    if len(out["samples"]) < 5:
                        out["samples"].append("%s -> %r" % (k, v))
        except Exception as e:  # noqa: BLE001 - counted and reported
            out["errors"] += 1
            if len(out["samples"]) < 5:
                out["samples"].append("%s: %s" % (type(e).__name__, e))
        out["done"] += 1
    return out


def getter(client):
    """``get(key)`` or ``get(list_of_keys)`` on a ``multiput.Client``."""

    def get(k):
        return client.get_many(k) if isinstance(k, list) else client.get(k)

    return get


def _child_main(w, work, i):
    """In a child: run ``work(i)``, write its JSON result to ``w``, and always ``os._exit``."""
    code = 0
    try:
        try:
            result = work(i)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            result = {"crashed": "%s: %s" % (type(e).__name__, e)}
            code = 1
        data = json.dumps(result).encode()
        while data:
            data = data[os.write(w, data) :]
    except BaseException:  # noqa: BLE001 - nothing else may run in the child
        code = 2
    finally:
        os._exit(code)


def fork_children(work, n=CHILDREN, deadline=CHILD_DEADLINE + 30):
    """Fork ``n`` children running ``work(i)`` concurrently; their results, in order. A child
    still running at ``deadline`` is killed (by its PID) and reported as hung."""
    children = []
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _child_main(w, work, i)
        os.close(w)
        children.append((pid, r))
    results = []
    stop = time.monotonic() + deadline
    try:
        for pid, r in children:
            chunks = []
            while True:
                left = stop - time.monotonic()
                if left <= 0:
                    break
                ready, _, _ = select.select([r], [], [], min(left, 1.0))
                if ready:
                    chunk = os.read(r, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            status = wait_pid(pid, stop)
            raw = b"".join(chunks)
            if status is None:
                results.append({"crashed": "child %d hung: killed" % pid})
            elif not raw:
                results.append({"crashed": "child %d exited with status %d and no result" % (pid, status)})
            else:
                results.append(json.loads(raw))
    finally:
        for pid, r in children:
            os.close(r)
            reap(pid)
    return results


def wait_pid(pid, stop):
    """The exit status of child ``pid``, or None if it is still running at ``stop``."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > stop:
            return None
        time.sleep(0.01)


def reap(pid):
    """Kill a child of this test that is still there (by PID) and collect it."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def assert_children_clean(results, n=CHILDREN, reads_per_child=READS):
    assert len(results) == n
    for i, r in enumerate(results):
        assert "crashed" not in r, "child %d: %s" % (i, r)
        assert (r["wrong"], r["errors"], r["missing"]) == (0, 0, 0), "child %d: %s" % (i, r)
        assert r["done"] == reads_per_child, "child %d: %s" % (i, r)


def total_connections(servers):
    """memcached's own count of connections ever accepted, summed over ``servers`` (read on a
    fresh socket, which counts itself: one per server per call)."""
    total = 0
    for s in servers:
        for line in s.raw(b"stats\r\n").decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "total_connections":
                total += int(parts[2])
    return total


def check_parent(get, keys, servers):
    """The parent's next PARENT_CALLS calls are all right, on the connections it already had
    (memcached accepted no new connection for them)."""
    before = total_connections(servers)
    r = reads(get, keys, child=99, n=PARENT_CALLS)
    after = total_connections(servers)
    assert (r["wrong"], r["errors"], r["missing"], r["done"]) == (0, 0, 0, PARENT_CALLS), r
    # The second reading's own socket is the only new connection on each server.
    assert after - before == len(servers)


def prepare(client, keys):
    """Store every key with its value and read some back: the parent now has connections."""
    assert client.set_many({k: value_of(k) for k in keys}) == []
    r = reads(getter(client), keys, child=0, n=50)
    assert (r["wrong"], r["errors"], r["missing"]) == (0, 0, 0), r


@pytest.mark.parametrize("replicas", [1, 2], ids=["plain", "replicas2"])
def test_os_fork_children_read_their_own_values(memcached_factory, replicas):
    servers = memcached_factory(3)
    c = multiput.Client([s.address for s in servers], replicas=replicas, timeout=2.0)
    keys = make_keys("os%d" % replicas)
    prepare(c, keys)

    results = fork_children(lambda i: reads(getter(c), keys, child=i))

    assert_children_clean(results)
    check_parent(getter(c), keys, servers)
    if replicas > 1:
        assert c.metrics()["total"]["disagreements"] == 0


def test_children_write_and_the_parent_reads_their_writes(memcached_factory):
    """Writes in children land (each child on its own connections) and the parent, on its
    old connections, reads every one of them."""
    servers = memcached_factory(3)
    c = multiput.Client([s.address for s in servers], timeout=2.0)
    keys = make_keys("w")
    prepare(c, keys)
    own = {i: make_keys("w%d" % i, 100) for i in range(CHILDREN)}

    def work(i):
        failed = sum(1 for k in own[i] if not c.set(k, value_of(k)))
        out = reads(getter(c), own[i], child=i, n=500)
        out["failed_sets"] = failed
        return out

    results = fork_children(work)
    for i, r in enumerate(results):
        assert "crashed" not in r, r
        assert (r["failed_sets"], r["wrong"], r["errors"], r["missing"], r["done"]) == (0, 0, 0, 0, 500), (i, r)
    every = [k for i in range(CHILDREN) for k in own[i]]
    got = c.get_many(every)
    assert got == {k: value_of(k) for k in every}
    check_parent(getter(c), keys, servers)


# -- multiprocessing with the fork start method ---------------------------------------------
# The worker functions must be module-level (multiprocessing pickles them by name); the client
# and keys reach the children through the fork, in these globals.
_MP = {}


def _mp_reads(child):
    return reads(getter(_MP["client"]), _MP["keys"], child=child)


def _mp_process(conn, child):
    try:
        conn.send(_mp_reads(child))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        conn.send({"crashed": "%s: %s" % (type(e).__name__, e)})
    finally:
        conn.close()


@pytest.mark.parametrize("replicas", [1, 2], ids=["plain", "replicas2"])
def test_multiprocessing_fork_pool(memcached_factory, replicas):
    servers = memcached_factory(3)
    c = multiput.Client([s.address for s in servers], replicas=replicas, timeout=2.0)
    keys = make_keys("pool%d" % replicas)
    prepare(c, keys)
    _MP.update(client=c, keys=keys)
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(CHILDREN)
    try:
        results = pool.map_async(_mp_reads, range(CHILDREN), chunksize=1).get(timeout=CHILD_DEADLINE + 30)
    finally:
        pool.terminate()  # its own worker processes, by PID
        pool.join()
        _MP.clear()
    assert_children_clean(results)
    check_parent(getter(c), keys, servers)


def test_multiprocessing_fork_process(memcached_factory):
    servers = memcached_factory(3)
    c = multiput.Client([s.address for s in servers], timeout=2.0)
    keys = make_keys("proc")
    prepare(c, keys)
    _MP.update(client=c, keys=keys)
    ctx = multiprocessing.get_context("fork")
    procs, conns = [], []
    try:
        for i in range(CHILDREN):
            parent_end, child_end = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_mp_process, args=(child_end, i))
            p.start()
            child_end.close()
            procs.append(p)
            conns.append(parent_end)
        results = []
        stop = time.monotonic() + CHILD_DEADLINE + 30
        for p, conn in zip(procs, conns):
            if conn.poll(max(0.0, stop - time.monotonic())):
                results.append(conn.recv())
            else:
                results.append({"crashed": "process %d gave no result" % p.pid})
        for p in procs:
            p.join(max(0.0, stop - time.monotonic()))
            assert p.exitcode == 0, p
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()  # by its PID
                p.join()
        _MP.clear()
    assert_children_clean(results)
    check_parent(getter(c), keys, servers)


# -- a thread of the parent in the middle of calls at the moment of the fork -----------------


def test_fork_while_another_thread_is_calling(memcached_factory):
    """Another thread keeps the client busy while the main thread forks: the children get
    clean connections of their own (none of the parent's, whatever state they were in) and
    the busy thread never sees a wrong value."""
    servers = memcached_factory(3)
    c = multiput.Client([s.address for s in servers], timeout=2.0)
    keys = make_keys("busy")
    prepare(c, keys)
    stop = threading.Event()
    busy = {"wrong": 0, "errors": 0, "missing": 0, "done": 0}

    def keep_busy():
        n = 0
        limit = time.monotonic() + CHILD_DEADLINE
        while not stop.is_set() and n < 1_000_000 and time.monotonic() < limit:
            r = reads(getter(c), keys, child=n % 50, n=20)
            for f in busy:
                busy[f] += r[f]
            n += 1

    t = threading.Thread(target=keep_busy)
    t.start()
    try:
        results = []
        for _ in range(3):
            results += fork_children(lambda i: reads(getter(c), keys, child=i, n=1000), n=2)
    finally:
        stop.set()
        t.join(CHILD_DEADLINE)
    assert not t.is_alive()
    assert_children_clean(results, n=6, reads_per_child=1000)
    assert (busy["wrong"], busy["errors"], busy["missing"]) == (0, 0, 0), busy
    assert busy["done"] > 0


# -- locks ------------------------------------------------------------------------------------


def test_a_child_never_releases_its_parents_lock(memcached_factory, key):
    """A lock held across a fork stays the parent's: in the child it is not held, release()
    sends nothing, and neither leaving the ``with`` block nor garbage collection frees it."""
    servers = memcached_factory(1)
    c = multiput.Client([s.address for s in servers], timeout=2.0)
    lock = c.lock(key, timeout=60, wait=0)
    stored = servers[0].raw_get(key)
    assert lock.held and stored is not None

    def work(i):
        out = {"held": lock.held, "token": lock.token, "release": lock.release(), "extend": lock.extend(30)}
        with lock:
            pass
        try:
            c.lock(key, timeout=5, wait=0)
            out["other_lock"] = "acquired"
        except multiput.LockNotAcquiredError:
            out["other_lock"] = "refused"
        return out

    (r,) = fork_children(work, n=1)
    assert r == {"held": False, "token": None, "release": False, "extend": False, "other_lock": "refused"}
    # Still the parent's, under the parent's token, and the parent can release it.
    assert servers[0].raw_get(key) == stored
    assert lock.held
    assert lock.release() is True
    assert servers[0].raw_get(key) is None


def test_a_lock_dropped_in_a_child_stays_held(memcached_factory, key):
    """The child's only reference to an inherited lock goes away (the child's copy of the
    parent's object is freed): the lock is not released."""
    servers = memcached_factory(1)
    c = multiput.Client([s.address for s in servers], timeout=2.0)
    holder = {"lock": c.lock(key, timeout=60, wait=0)}
    stored = servers[0].raw_get(key)

    def work(i):
        holder.clear()  # the last reference: the object is freed here, in the child
        gc.collect()
        return {"after_drop": servers[0].raw_get(key) is not None}

    (r,) = fork_children(work, n=1)
    assert r == {"after_drop": True}
    assert servers[0].raw_get(key) == stored
    assert holder["lock"].release() is True


# -- the Django backend -----------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["default", "replicated"])
def test_django_backend_after_fork(alias, servers):
    """``MultiputCache`` used in the parent (its shared client has connections), then 4 fork
    children reading through ``django.core.cache.caches``: what a preloaded app server does."""
    import django

    django.setup()
    from django.core.cache import caches

    cache = caches[alias]
    keys = make_keys("dj-" + alias)
    assert cache.set_many({k: value_of(k) for k in keys}) == []
    r = reads(cache_getter(cache), keys, child=0, n=50)
    assert (r["wrong"], r["errors"], r["missing"]) == (0, 0, 0), r

    results = fork_children(lambda i: reads(cache_getter(caches[alias]), keys, child=i))

    assert_children_clean(results)
    check_parent(cache_getter(cache), keys, servers)


ASYNC_READS = 600


@pytest.mark.parametrize("alias", ["default", "replicated"])
def test_django_async_calls_after_fork(alias, servers):
    """The async API (``aget``, ``aget_many``: worker threads of asgiref) of a ``MultiputCache``
    the parent used, sync and async, before forking: each child runs its own event loop and
    reads only its own keys' values."""
    import asyncio

    import django

    django.setup()
    from django.core.cache import caches

    cache = caches[alias]
    keys = make_keys("dja-" + alias)
    assert cache.set_many({k: value_of(k) for k in keys}) == []

    async def parent_calls():
        return await cache.aget(keys[0]), await cache.aget_many(keys[:10])

    one, many = asyncio.run(parent_calls())
    assert one == value_of(keys[0]) and many == {k: value_of(k) for k in keys[:10]}

    def child(i):
        async def run():
            c = caches[alias]
            out = {"done": 0, "wrong": 0, "missing": 0, "errors": 0, "samples": []}
            stop = time.monotonic() + CHILD_DEADLINE
            for n in range(ASYNC_READS):
                if time.monotonic() > stop:
                    break
                k = keys[(n * 7 + i * 31) % len(keys)]
                try:
                    if n % 10 == 9:
                        batch = [keys[(n + j * 13 + i) % len(keys)] for j in range(5)]
                        got = await c.aget_many(batch)
                        pairs = [(b, got.get(b)) for b in batch]
                    else:
                        pairs = [(k, await c.aget(k))]
                except Exception as e:  # noqa: BLE001 - counted
                    out["errors"] += 1
                    out["samples"].append(repr(e)[:200])
                    continue
                for key, v in pairs:
                    if v is None:
                        out["missing"] += 1
                    elif v != value_of(key):
                        out["wrong"] += 1
                        out["samples"].append("%s -> %r" % (key, v)[:200])
                out["done"] += 1
            return out

        return asyncio.run(run())

    results = fork_children(child)
    assert_children_clean(results, reads_per_child=ASYNC_READS)
    check_parent(cache_getter(cache), keys, servers)


def cache_getter(cache):
    def get(k):
        return cache.get_many(k) if isinstance(k, list) else cache.get(k)

    return get


def test_django_backend_child_of_a_parent_holding_the_clients_lock(addresses):
    """The backend's registry lock was held (by the forking thread here; by any parent thread
    in real life) at the moment of the fork: the child gets a fresh one instead of waiting
    forever for a thread that does not exist in it."""
    import django

    django.setup()
    import multiput.django as backend

    with backend._clients_lock:
        results = fork_children(
            lambda i: {"got": backend.MultiputCache(addresses, {"OPTIONS": {"timeout": 1.5}}).get("fork:nothing", "miss")},
            n=1,
            deadline=30,
        )
    assert results == [{"got": "miss"}]


# -- the hook itself ----------------------------------------------------------------------------

NOTE_FORK_SCRIPT = r"""
import json, socket, sys
import multiput
from multiput import _native

host, port = sys.argv[1].rsplit(":", 1)
stats = socket.create_connection((host, int(port)), timeout=5)

def total():
    stats.sendall(b"stats\r\n")
    data = b""
    while not data.endswith(b"END\r\n"):
        data += stats.recv(65536)
    return int(data.split(b"STAT total_connections ")[1].split(b"\r\n")[0])

c = multiput.Client([sys.argv[1]], timeout=2.0)
c.set("nf:a", "value-of:nf:a")
lock = c.lock("nf:lock", timeout=30, wait=0)
out = {"before": [c.get("nf:a"), lock.held]}
t0 = total()
c.get("nf:a")
t1 = total()
_native.note_fork()  # what os.register_at_fork(after_in_child=...) calls in a child
out["after"] = [c.get("nf:a"), lock.held, lock.release()]
t2 = total()
c.get("nf:a")
t3 = total()
out["new_connections"] = [t1 - t0, t2 - t1, t3 - t2]
print(json.dumps(out))
"""


def test_note_fork_gives_every_client_fresh_connections(memcached_factory):
    """``multiput._native.note_fork`` (registered with ``os.register_at_fork``; also right
    after a fork that bypassed the C library) makes this process a new fork generation: the
    next call opens a new connection instead of reusing the pooled one, and a lock taken
    before is no longer this process's to release. Run in a subprocess, since it changes
    process-wide state."""
    import subprocess
    import sys

    (server,) = memcached_factory(1)
    run = subprocess.run(
        [sys.executable, "-c", NOTE_FORK_SCRIPT, server.address], capture_output=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr.decode()
    out = json.loads(run.stdout)
    assert out == {
        "before": ["value-of:nf:a", True],
        "after": ["value-of:nf:a", False, False],
        # pooled before; one new connection after note_fork; pooled again
        "new_connections": [0, 1, 0],
    }
    assert server.raw_get("nf:lock") is not None  # never released by the "child"
