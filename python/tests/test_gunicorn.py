"""A Django app on ``multiput.django.MultiputCache`` under ``gunicorn --preload -w 3``: the master
imports the app and uses the cache (it holds connections) before forking the workers, the
case where pylibmc hands workers each other's replies. Driven over HTTP by a few concurrent
clients, every response is checked against the key it asked for, and memcached's own counters
show each process on connections of its own, kept across requests.

The project is ``gunicorn_app/`` next to this file; gunicorn runs from this interpreter
(``python -m gunicorn``), is stopped by its PID, and is given its own memcached servers.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import free_port

try:
    import gunicorn
except ImportError:  # scripts/test.sh installs it; a skip fails under MULTIPUT_NO_SKIPS
    gunicorn = None

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = 3
SERVERS = 3
REQUESTS = 3000
CLIENTS = 6
#: Bounds on waits (a hang fails the test; nothing here measures speed).
START_DEADLINE = 60.0
RUN_DEADLINE = 600.0


class StatsConn:
    """One text-protocol connection to a memcached server, kept open for the whole test: the
    test's only connection to it, counted the same way in every reading."""

    def __init__(self, server):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)

    def stats(self):
        self.sock.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("memcached closed the stats connection")
            data += chunk
        out = {}
        for line in data.decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
        return {"curr": int(out["curr_connections"]), "total": int(out["total_connections"])}

    def close(self):
        self.sock.close()


def readings(conns):
    return [c.stats() for c in conns]


def quiet_readings(conns):
    """Readings once each server has closed every connection but ours. memcached closes a
    connection the client has closed (the readiness probe of the ``Memcached`` fixture) on its
    own thread, a moment later: a reading taken before that counts it, and the next reading
    would show one connection fewer than there are. (``curr_connections`` does not count the
    listener: ours is the only one.)"""
    deadline = time.monotonic() + START_DEADLINE
    while True:
        now = readings(conns)
        if all(r["curr"] == 1 for r in now) or time.monotonic() > deadline:
            return now
        time.sleep(0.01)


class Gunicorn:
    """``gunicorn --preload -w WORKERS`` serving gunicorn_app on a free 127.0.0.1 port."""

    def __init__(self, log_path, servers, options):
        self.port = free_port()
        self.log_path = log_path
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="gunicorn_app.settings",
            MULTIPUT_GUNICORN_SERVERS=",".join(s.address for s in servers),
            MULTIPUT_GUNICORN_OPTIONS=json.dumps(options),
        )
        cmd = [
            sys.executable, "-m", "gunicorn",
            "--preload",
            "-w", str(WORKERS),
            "-b", "127.0.0.1:%d" % self.port,
            "--chdir", HERE,
            "--no-control-socket",
            "--timeout", "300",
            "--graceful-timeout", "10",
            "gunicorn_app.wsgi:application",
        ]  # fmt: skip
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def get_json(self, path, timeout=30):
        with self.opener.open(self.url(path), timeout=timeout) as r:
            if r.status != 200:
                raise RuntimeError("HTTP %d" % r.status)
            return json.loads(r.read())

    def wait_ready(self):
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                return self.get_json("/ready/", timeout=5)
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer in time:\n" + self.log_tail())

    def log_tail(self, n=4000):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")

    def stop(self, worker_pids=()):
        """SIGTERM to the master (by PID), which stops its workers; SIGKILL if it does not exit,
        then any worker it left behind (by PID, only if it is still one of its gunicorn
        workers)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in worker_pids:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if b"gunicorn" not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
        self.log.close()


def value_of(key):
    return "value-of:" + key


def check_response(i, body, master_pid):
    """Wrong values in one response (0 when every value belongs to its key)."""
    key = "req:%d" % i
    wrong = 0
    if body["key"] != key or body["got"] != value_of(key):
        wrong += 1
    for k, v in body["many"].items():
        if k not in body["others"] or v != value_of(k):
            wrong += 1
    if body["preload"] != value_of(body["preload_key"]):
        wrong += 1
    if body["preload_pid"] != master_pid:
        wrong += 1
    return wrong


@pytest.mark.skipif(gunicorn is None, reason="gunicorn is not installed (pip install gunicorn)")
@pytest.mark.parametrize("options", [{}, {"replicas": 2}], ids=["plain", "replicas2"])
def test_gunicorn_preload_workers(memcached_factory, tmp_path, options):
    servers = memcached_factory(SERVERS)
    stats = [StatsConn(s) for s in servers]
    # Read before gunicorn starts: its master may open its connections (preload) at once.
    before = quiet_readings(stats)  # each server: our stats connection only
    app = Gunicorn(tmp_path / "gunicorn.log", servers, dict(options, timeout=5.0))
    pids = set()
    try:
        ready = app.wait_ready()
        master_pid = app.proc.pid
        assert ready["pid"] != master_pid  # a worker answered
        at_ready = readings(stats)
        # The master used the cache at preload time and kept its connections: exactly one
        # per server (nothing else has touched the cache yet: /ready/ does not).
        master_conns = [a["curr"] - b["curr"] for a, b in zip(at_ready, before)]
        assert master_conns == [1] * SERVERS, master_conns

        counts = {"ok": 0, "wrong": 0, "errors": 0}
        samples = []

        def one(i):
            try:
                body = app.get_json("/kv/%d/" % i)
            except Exception as e:  # noqa: BLE001 - counted
                return i, None, "%s: %s" % (type(e).__name__, e)
            return i, body, None

        deadline = time.monotonic() + RUN_DEADLINE
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(one, i) for i in range(REQUESTS)]
            for f in futures:
                i, body, err = f.result(timeout=max(1.0, deadline - time.monotonic()))
                if err is not None:
                    counts["errors"] += 1
                    if len(samples) < 5:
                        samples.append(err)
                    continue
                pids.add(body["pid"])
                w = check_response(i, body, master_pid)
                if w:
                    counts["wrong"] += w
                    if len(samples) < 5:
                        samples.append(body)
                else:
                    counts["ok"] += 1
        after = readings(stats)

        detail = "counts=%s samples=%s\nconnections before=%s at_ready=%s after=%s\n%s" % (
            counts, samples, before, at_ready, after, app.log_tail() if samples else "",
        )  # fmt: skip
        assert counts == {"ok": REQUESTS, "wrong": 0, "errors": 0}, detail
        assert master_pid not in pids and 1 <= len(pids) <= WORKERS, (pids, detail)
        for b, r, a in zip(before, at_ready, after):
            # Open now: the master's one, and at most one per worker (a sync worker serves one
            # request at a time, and its calls reuse its connection).
            assert a["curr"] - b["curr"] <= 1 + WORKERS, detail
            # Accepted during 3,000 requests: the workers' own connections, never one per
            # request (at most two per worker, allowing one reconnect).
            assert a["total"] - r["total"] <= 2 * WORKERS, detail
        # Over all servers: the workers' connections plus the master's, nothing more.
        assert sum(a["curr"] - b["curr"] for b, a in zip(before, after)) <= (WORKERS + 1) * SERVERS, detail
        assert sum(a["total"] - r["total"] for r, a in zip(at_ready, after)) <= 2 * WORKERS * SERVERS, detail
        print(
            "gunicorn %s: %d requests, wrong=%d errors=%d, worker pids=%d, curr_connections "
            "before=%s ready=%s after=%s, total_connections ready=%s after=%s"
            % (
                options or "plain", REQUESTS, counts["wrong"], counts["errors"], len(pids),
                [x["curr"] for x in before], [x["curr"] for x in at_ready], [x["curr"] for x in after],
                [x["total"] for x in at_ready], [x["total"] for x in after],
            )
        )  # fmt: skip
    finally:
        app.stop(pids)
        for c in stats:
            c.close()
