"""One client shared by many threads: every thread reads its own writes, connections are
reused (not one per call), and replicated clients are shared the same way."""

import threading

import multiput


def run_threads(n, target):
    errors = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_many_threads_share_one_client(addresses, servers):
    c = multiput.Client(addresses)  # pool_size=16: one idle connection per thread and server

    def work(i):
        for j in range(300):
            k = "th:%d:%d" % (i, j)
            c.set(k, (i, j))
            assert c.get(k) == (i, j)
            if j % 50 == 0:
                many = {"th:%d:m%d" % (i, x): x for x in range(20)}
                assert c.set_many(many) == []
                assert c.get_many(list(many)) == many

    before = sum(s["total_connections"] for s in c.stats().values())
    run_threads(16, work)
    after = sum(s["total_connections"] for s in c.stats().values())
    # 16 threads x 600+ calls each: connections are pooled and reused, not opened per call.
    assert after - before <= 16 * len(addresses)
    assert c.metrics()["total"]["errors"] == 0


def test_counters_from_many_threads(client, key):
    client.set(key, 0)
    run_threads(8, lambda i: [client.incr(key, 1) for _ in range(250)])
    assert client.get(key) == 2000


def test_replicated_client_shared_by_threads(memcached_factory):
    servers = memcached_factory(3)
    c = multiput.Client([s.address for s in servers], replicas=3)

    def work(i):
        for j in range(100):
            k = "r:%d:%d" % (i, j)
            c.set(k, [i, j])
            assert c.get(k) == [i, j]

    run_threads(8, work)
    assert c.metrics()["total"]["disagreements"] == 0
