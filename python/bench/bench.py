#!/usr/bin/env python3
"""One benchmark run: multiput against pylibmc and pymemcache, and the Django backend against
Django's PyLibMCCache and PyMemcacheCache, on memcached servers this script starts itself.

Cases: get, set (100-byte value), get_many of 100 keys, get from ``--threads`` threads sharing
one client (default 10), and a 3-way replicated set (multiput
replicas=3, acknowledged; pylibmc/libmemcached ``num_replicas=2``, whose replica writes are
quiet and unacknowledged). Prints ops/s per client and multiput's ratio to each.

    .venv/bin/python python/bench/bench.py                      # unpinned
    .venv/bin/python python/bench/bench.py --pin 0              # client and servers on CPU 0
    taskset -c 0 .venv/bin/python python/bench/bench.py         # the same, pinned from outside

Pinning matters on these VMs: an idle vCPU halts and waking it costs ~50 us, so unpinned runs
measure wake-ups; pinned runs (``--pin``, or ``taskset -c 0`` for the whole run; the servers
inherit the affinity) measure each client's own CPU cost. Compare ratios within one run, not
absolute numbers across runs (they move by +-25%). Needs ``memcached`` on PATH and the
packages ``multiput``, ``pylibmc``, ``pymemcache``, ``meta-memcache`` and ``Django`` (missing
ones are skipped).
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_memcached(n):
    exe = shutil.which("memcached")
    if not exe:
        sys.exit("memcached is not on PATH (apt-get install -y memcached)")
    procs = []
    for _ in range(n):
        port = free_port()
        cmd = [exe, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256", "-t", "1"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"version\r\n")
                    if s.recv(32).startswith(b"VERSION"):
                        break
            except OSError:
                time.sleep(0.01)
        procs.append((p, "127.0.0.1:%d" % port))
    return procs


def measure(fn, seconds, batch=1):
    """ops/s of ``fn`` (each call does ``batch`` operations), after a short warm-up."""
    for _ in range(50):
        fn()
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(100):
            fn()
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            return n * batch / (now - t0)


def measure_threads(make, threads, seconds):
    """Total ops/s of ``threads`` threads, each calling its own ``make()`` function until the
    time is up (bounded: at most ``seconds`` plus one batch of 100 calls per thread)."""
    import threading

    fns = [make() for _ in range(threads)]
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]
    errors = []

    def worker(i):
        fn = fns[i]
        for _ in range(50):
            fn()
        start.wait()
        n = 0
        try:
            while time.perf_counter() < stop_at[0]:
                for _ in range(100):
                    fn()
                n += 100
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)
        counts[i] = n

    ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in ts:
        t.join(seconds + 30)
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per case (default 1 s)")
    ap.add_argument("--pin", type=int, default=None, metavar="CPU", help="pin this process and the servers to one CPU")
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=10, help="threads of the threaded get case (default 10)")
    args = ap.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    procs = start_memcached(3)
    addrs = [a for _, a in procs]
    one = addrs[:1]
    try:
        run(args, one, addrs)
    finally:
        for p, _ in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


def run(args, one, addrs):
    value = b"v" * args.value_size
    keys = ["bench:%d" % i for i in range(100)]
    affinity = sorted(os.sched_getaffinity(0))
    print("multiput bench: python %s, CPUs %s, %.1f s per case, %d-byte values"
          % (sys.version.split()[0], affinity, args.seconds, args.value_size))
    results = {}  # case -> {client: ops/s}

    def case(name, client, fn, batch=1):
        try:
            ops = measure(fn, args.seconds, batch)
        except Exception as e:  # noqa: BLE001 - a bench reports and goes on
            print("  %-28s %-22s failed: %s" % (name, client, e))
            return
        results.setdefault(name, {})[client] = ops
        print("  %-28s %-22s %10.0f ops/s" % (name, client, ops), flush=True)

    clients = {}
    import multiput

    clients["multiput"] = multiput.Client(one)
    try:
        import pylibmc

        clients["pylibmc"] = pylibmc.Client(one, behaviors={"ketama_weighted": True, "tcp_nodelay": True})
    except ImportError:
        print("  (pylibmc not installed: skipped)")
    try:
        from pymemcache.client.base import Client as PymemcacheClient
        from pymemcache.serde import pickle_serde

        host, port = one[0].split(":")
        clients["pymemcache"] = PymemcacheClient((host, int(port)), serde=pickle_serde, default_noreply=False, no_delay=True)
    except ImportError:
        print("  (pymemcache not installed: skipped)")
    meta = None
    try:
        # meta-memcache-py (RevenueCat): meta protocol, its socket and parser in Rust (pyo3).
        from meta_memcache import CacheClient, ServerAddress, connection_pool_factory_builder

        host, port = one[0].split(":")

        def meta_client():
            return CacheClient.cache_client_from_servers(
                servers=[ServerAddress(host=host, port=int(port))],
                connection_pool_factory_fn=connection_pool_factory_builder(max_pool_size=args.threads + 2),
            )

        meta = meta_client()
    except ImportError:
        print("  (meta-memcache not installed: skipped)")

    for name, c in clients.items():
        c.set("bench:get", value)
        many = {k: value for k in keys}
        (c.set_multi if hasattr(c, "set_multi") and name != "multiput" else c.set_many)(many)
    for name, c in clients.items():
        case("get", name, lambda c=c: c.get("bench:get"))
    for name, c in clients.items():
        case("set", name, lambda c=c: c.set("bench:set", value))
    for name, c in clients.items():
        gm = c.get_multi if name == "pylibmc" else c.get_many
        case("get_many(100)", name, lambda gm=gm: gm(keys), batch=100)
    if meta is not None:
        meta.set("bench:get", value, ttl=0)
        for k in keys:
            meta.set(k, value, ttl=0)
        case("get", "meta-memcache", lambda: meta.get("bench:get"))
        case("set", "meta-memcache", lambda: meta.set("bench:set", value, ttl=0))
        case("get_many(100)", "meta-memcache", lambda: meta.multi_get(keys), batch=100)

    # Threads sharing one client (each binding's thread-safe client), as a web server's worker
    # threads do.
    threaded = "get, %d threads" % args.threads
    shared = multiput.Client(one)
    shared.set("bench:tget", value)
    threaded_clients = {"multiput": lambda: (lambda: shared.get("bench:tget"))}
    if meta is not None:
        meta.set("bench:tget", value, ttl=0)
        threaded_clients["meta-memcache"] = lambda: (lambda: meta.get("bench:tget"))
    try:
        from pymemcache.client.base import PooledClient

        host, port = one[0].split(":")
        pooled = PooledClient((host, int(port)), max_pool_size=args.threads, no_delay=True)
        pooled.set("bench:tget", value)
        threaded_clients["pymemcache"] = lambda: (lambda: pooled.get("bench:tget"))
    except ImportError:
        pass
    for name, make in threaded_clients.items():
        try:
            ops = measure_threads(make, args.threads, args.seconds)
        except Exception as e:  # noqa: BLE001 - a bench reports and goes on
            print("  %-28s %-22s failed: %s" % (threaded, name, e))
            continue
        results.setdefault(threaded, {})[name] = ops
        print("  %-28s %-22s %10.0f ops/s" % (threaded, name, ops), flush=True)

    # Replicated set, 3 copies on 3 servers.
    r = multiput.Client(addrs, replicas=3)
    case("replicated set (3 copies)", "multiput", lambda: r.set("bench:rset", value))
    if "pylibmc" in clients:
        pr = pylibmc.Client(addrs, behaviors={"ketama_weighted": True, "num_replicas": 2, "tcp_nodelay": True})
        case("replicated set (3 copies)", "pylibmc", lambda: pr.set("bench:rset", value))

    # Django backends on the same server.
    try:
        import django
        from django.conf import settings

        caches_conf = {"multiput": {"BACKEND": "multiput.django.MultiputCache", "LOCATION": one[0]}}
        if "pylibmc" in clients:
            caches_conf["PyLibMCCache"] = {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": one[0]}
        if "pymemcache" in clients:
            caches_conf["PyMemcacheCache"] = {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": one[0]}
        caches_conf["default"] = caches_conf["multiput"]
        settings.configure(CACHES=caches_conf, USE_TZ=True)
        django.setup()
        from django.core.cache import caches

        names = [n for n in caches_conf if n != "default"]
        for n in names:
            caches[n].set("dj:get", value)
            caches[n].set_many({k: value for k in keys})
        for n in names:
            case("django get", n, lambda n=n: caches[n].get("dj:get"))
        for n in names:
            case("django set", n, lambda n=n: caches[n].set("dj:set", value))
        for n in names:
            case("django get_many(100)", n, lambda n=n: caches[n].get_many(keys), batch=100)
    except ImportError:
        print("  (Django not installed: skipped)")

    print("\nmultiput's ratio to each (>1: multiput is faster)")
    for name, by_client in results.items():
        ours = by_client.get("multiput")
        if ours is None:
            continue
        others = ["%s %.2fx" % (c, ours / v) for c, v in by_client.items() if c != "multiput"]
        print("  %-28s %s" % (name, ", ".join(others) or "-"))


if __name__ == "__main__":
    main()
