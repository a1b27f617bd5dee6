#!/usr/bin/env python3
"""TLS against plain, and multiput against pymemcache over TLS, in one run on one memcached.

One memcached process listens twice: TLS (``-Z``) and plain (a ``notls:`` listener), so every
client reads the same items. Cases: get of a 100-byte value and get_many of 100 keys. Each
case runs ``--rounds`` times (1 s each, clients interleaved) and the best round counts: load
from elsewhere only ever slows a round down. Certificates are made by the openssl CLI.

    .venv/bin/python python/bench/tls.py                  # unpinned
    taskset -c 0 .venv/bin/python python/bench/tls.py     # client and server on CPU 0

Needs memcached, openssl, and the packages multiput and pymemcache.
"""

import argparse
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_pki(d):
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=bench-ca",
        "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.crt", "-days", "2", "-extfile", "server.ext")
    return os.path.join(d, "ca.crt"), os.path.join(d, "server.crt"), os.path.join(d, "server.key")


def start(cert, key):
    tls_port, plain_port = free_port(), free_port()
    cmd = [shutil.which("memcached"), "-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}",
           "-l", f"127.0.0.1:{tls_port}", "-l", f"notls:127.0.0.1:{plain_port}", "-U", "0", "-m", "256", "-t", "1"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", plain_port), timeout=0.2).close()
            socket.create_connection(("127.0.0.1", tls_port), timeout=0.2).close()
            return p, tls_port, plain_port
        except OSError:
            time.sleep(0.02)
    p.kill()
    sys.exit("memcached did not start")


def rate(fn, seconds):
    for _ in range(200):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(100):
            fn()
        n += 100
        el = time.perf_counter() - t0
        if el >= seconds:
            return n / el


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    import multiput
    import pymemcache

    with tempfile.TemporaryDirectory() as d:
        ca, cert, key = make_pki(d)
        proc, tls_port, plain_port = start(cert, key)
        try:
            ctx = ssl.create_default_context(cafile=ca)
            clients = {
                "multiput plain": multiput.Client([f"127.0.0.1:{plain_port}"]),
                "multiput TLS": multiput.Client([f"127.0.0.1:{tls_port}"], tls_ca=ca),
                "pymemcache plain": pymemcache.Client(("127.0.0.1", plain_port)),
                "pymemcache TLS": pymemcache.Client(("127.0.0.1", tls_port), tls_context=ctx),
            }
            keys = ["b:%d" % i for i in range(100)]
            value = b"x" * 100
            seed = clients["pymemcache plain"]
            for k in keys:
                seed.set(k, value)
            cases = {
                "get": lambda c: (lambda: c.get("b:1")),
                "get_many(100)": lambda c: (lambda: c.get_many(keys)),
            }
            best = {(case, name): 0.0 for case in cases for name in clients}
            for _ in range(a.rounds):
                for case, make in cases.items():
                    for name, c in clients.items():
                        r = rate(make(c), a.seconds)
                        best[(case, name)] = max(best[(case, name)], r)
            pinned = "pinned" if len(os.sched_getaffinity(0)) == 1 else "unpinned"
            print(f"TLS benchmark ({pinned}, best of {a.rounds} rounds of {a.seconds:g} s; ops/s)")
            for case in cases:
                row = {name: best[(case, name)] for name in clients}
                print(f"{case:14}" + "".join(f"  {name} {v:9.0f}" for name, v in row.items()))
                print(f"{'':14}  multiput TLS / multiput plain {row['multiput TLS'] / row['multiput plain']:.2f}x"
                      f"   multiput TLS / pymemcache TLS {row['multiput TLS'] / row['pymemcache TLS']:.2f}x")
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
