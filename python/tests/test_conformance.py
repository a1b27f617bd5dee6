"""The cross-language conformance scenarios (tests/conformance/*.json, specified in
tests/conformance/README.md), run with ``multiput.Client``: one test per scenario.

Each scenario gets fresh memcached processes (started here, stopped by PID) and a fresh
client. Calls are made the way a Python user makes them, and their results are normalised as
the README says (``add`` returning False is the error ``NotStored``, ``cas`` returning False
is ``Exists`` and None ``NotFound``, exceptions are read through their ``kind``). A call the
binding does not have (an argument it does not take) fails with the ``TypeError`` Python
raises, so such a scenario fails until the binding has it.

Scenarios listed under ``"python"`` in tests/conformance/known-gaps.json must fail (they are
reported as xfail with the reason); any other must pass; a listed scenario that passes fails
this suite with "remove it from known-gaps.json".
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import multiput
from multiput import exceptions as exc

LANG = "python"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFORMANCE = os.path.join(REPO, "tests", "conformance")
GAPS_FILE = "known-gaps.json"

MEMCACHED = shutil.which("memcached")

# The core's error kinds, by the ``kind`` string the binding puts on every exception.
KINDS = {
    "invalid_key": "InvalidKey",
    "value_too_large": "ValueTooLarge",
    "not_stored": "NotStored",
    "exists": "Exists",
    "not_found": "NotFound",
    "server": "Server",
    "client": "Client",
    "timeout": "Timeout",
    "connection_refused": "ConnectionRefused",
    "connection_closed": "ConnectionClosed",
    "server_down": "ServerDown",
    "protocol": "Protocol",
    "unsupported": "Unsupported",
    "replication": "Replication",
    "cas_retries_exhausted": "CasRetriesExhausted",
    "lock_not_acquired": "LockNotAcquired",
    "loader": "Loader",
    "config": "Config",
}
UNAVAILABLE = {"Timeout", "ConnectionRefused", "ConnectionClosed", "ServerDown"}

# Bounds on every wait this file makes.
START_TIMEOUT = 10.0
RAW_TIMEOUT = 2.0
PARALLEL_TIMEOUT = 60.0


# ---------------------------------------------------------------------------------------------
# Scenarios and known gaps (files inside the repository only)


def load_scenarios():
    out = []
    for fname in sorted(os.listdir(CONFORMANCE)):
        if not fname.endswith(".json") or fname == GAPS_FILE:
            continue
        with open(os.path.join(CONFORMANCE, fname), encoding="utf-8") as f:
            doc = json.load(f)
        for s in doc["scenarios"]:
            out.append((fname, s))
    return out


def load_gaps():
    path = os.path.join(CONFORMANCE, GAPS_FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return list(json.load(f).get(LANG, []))


SCENARIOS = load_scenarios()
GAPS = load_gaps()


# ---------------------------------------------------------------------------------------------
# memcached processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One memcached process on 127.0.0.1 (``-U 0``, default memory), signalled by PID only."""

    def __init__(self):
        self.proc = None
        last = None
        for _ in range(5):
            self.port = free_port()
            try:
                self.start()
                return
            except RuntimeError as e:  # the port was taken meanwhile: another one
                last = e
        raise last

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        cmd = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("memcached exited with %s on port %d" % (self.proc.returncode, self.port))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"version\r\n")
                    if s.recv(64).startswith(b"VERSION"):
                        return
            except OSError:
                time.sleep(0.01)
        self.kill()
        raise RuntimeError("memcached on port %d did not answer version" % self.port)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def stop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not self._all_threads_stopped():
            time.sleep(0.002)

    def _all_threads_stopped(self):
        task_dir = "/proc/%d/task" % self.proc.pid
        try:
            for tid in os.listdir(task_dir):
                with open("%s/%s/stat" % (task_dir, tid), "rb") as f:
                    stat = f.read()
                state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
                if state not in (b"T", b"t"):
                    return False
        except (OSError, ValueError):
            return True
        return True

    def cont(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self):
        self.kill()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.start()
                return
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    # Raw text-protocol access, independent of the client under test.

    def _request(self, data, complete):
        deadline = time.monotonic() + RAW_TIMEOUT
        with socket.create_connection(("127.0.0.1", self.port), timeout=RAW_TIMEOUT) as s:
            s.sendall(data)
            buf = b""
            while not complete(buf):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("raw request to %s timed out; got %r" % (self.address, buf[:200]))
                s.settimeout(left)
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("raw request to %s: connection closed; got %r" % (self.address, buf[:200]))
                buf += chunk
            return buf

    def raw_get(self, key):
        """The stored bytes of ``key``, or None."""

        def parse(buf):
            if buf == b"END\r\n":
                return "miss"
            if b"\r\n" not in buf:
                return None
            header, rest = buf.split(b"\r\n", 1)
            parts = header.split(b" ")
            if parts[0] != b"VALUE" or len(parts) < 4:
                raise RuntimeError("raw get %r: unexpected reply %r" % (key, buf[:200]))
            n = int(parts[3])
            if len(rest) < n + 7:
                return None
            return rest[:n]

        reply = self._request(b"get " + key.encode() + b"\r\n", lambda b: parse(b) is not None)
        got = parse(reply)
        return None if got == "miss" else got

    def raw_set(self, key, data, flags=0):
        req = b"set %s %d 0 %d\r\n" % (key.encode(), flags, len(data)) + data + b"\r\n"
        reply = self._request(req, lambda b: b.endswith(b"\r\n"))
        if reply != b"STORED\r\n":
            raise RuntimeError("raw set %r: %r" % (key, reply))

    def raw_delete(self, key):
        reply = self._request(b"delete " + key.encode() + b"\r\n", lambda b: b.endswith(b"\r\n"))
        if reply not in (b"DELETED\r\n", b"NOT_FOUND\r\n"):
            raise RuntimeError("raw delete %r: %r" % (key, reply))


# ---------------------------------------------------------------------------------------------
# Running a scenario


class StepFailed(Exception):
    pass


def make_client(opts, servers):
    replicas = opts.get("replicas", 1)
    kw = {
        "protocol": opts.get("protocol", "auto"),
        "timeout": opts.get("timeout_ms", 1000) / 1000.0,
        "retry_interval": opts.get("retry_ms", 1000) / 1000.0,
        "failure_limit": opts.get("failure_limit", 1),
    }
    if replicas > 1 or opts.get("mode") == "replicated":
        kw["replicas"] = replicas
        kw["envelope"] = True
        if "read_policy" in opts:
            kw["read_policy"] = opts["read_policy"]
        if "write_policy" in opts:
            kw["write_policy"] = opts["write_policy"]
    return multiput.Client([s.address for s in servers], **kw)


def normalise(v):
    """A result as the README compares it: bytes decoded as UTF-8, containers element-wise."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, dict):
        return {normalise(k): normalise(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [normalise(x) for x in v]
    return v


def error_kind(e):
    """The core error kind of an exception, or a description of a foreign exception."""
    if isinstance(e, exc.MultiputError):
        kind = getattr(e, "kind", "error")
        return KINDS.get(kind, "%s(kind=%r)" % (type(e).__name__, kind))
    return "%s (not a multiput error)" % type(e).__name__


def show(outcome):
    if outcome[0] == "ok":
        return "result %s" % json.dumps(outcome[1], default=repr)
    return "error %s: %s" % (outcome[1], outcome[2])


class Runner:
    def __init__(self, scenario):
        self.scenario = scenario
        self.vars = {}
        self.servers = []
        self.client = None

    # -- values

    def var(self, ref):
        name = ref[1:]
        if name not in self.vars:
            raise StepFailed("variable %s is not set (an earlier step did not save it)" % ref)
        return self.vars[name]

    def value(self, v):
        """A call argument: "$var", {"repeat", "times"}, a string or an integer."""
        if isinstance(v, dict) and "repeat" in v:
            return v["repeat"] * v["times"]
        if isinstance(v, str) and v.startswith("$"):
            return self.var(v)
        return v

    def raw_bytes(self, v):
        v = self.value(v)
        if isinstance(v, str):
            return v.encode()
        if isinstance(v, int):
            return str(v).encode()
        return v

    def matches(self, want, got):
        if isinstance(want, str) and want.startswith("$"):
            want = self.var(want)
            if want is None or got is None:
                return want is None and got is None
            return normalise(want) == normalise(got)
        if want is None:
            return got is None
        if isinstance(want, bool):
            return isinstance(got, bool) and got == want
        if isinstance(want, int):
            if isinstance(got, bool):
                return False
            if isinstance(got, int):
                return got == want
            return isinstance(got, str) and got == str(want)
        if isinstance(want, str):
            return isinstance(got, str) and got == want
        if isinstance(want, dict):
            return (
                isinstance(got, dict)
                and set(got) == set(want)
                and all(self.matches(want[k], got[k]) for k in want)
            )
        if isinstance(want, list):
            return (
                isinstance(got, list)
                and len(got) == len(want)
                and all(self.matches(w, g) for w, g in zip(want, got))
            )
        return want == got

    def check(self, expect, outcome):
        """None when `outcome` meets `expect` (a step without one must not fail), else why not."""
        if expect is None or expect.get("ok"):
            if outcome[0] == "ok":
                return None
            return "expected no error, got %s" % show(outcome)
        if "error" in expect:
            want = expect["error"]
            if outcome[0] == "err" and (
                outcome[1] == want or (want == "unavailable" and outcome[1] in UNAVAILABLE)
            ):
                return None
            return "expected error %s, got %s" % (want, show(outcome))
        if "result" in expect:
            if outcome[0] == "ok" and self.matches(expect["result"], outcome[1]):
                return None
            return "expected result %s, got %s" % (json.dumps(expect["result"]), show(outcome))
        raise StepFailed("unknown expectation %r" % (expect,))

    # -- calls

    def call(self, c, loads):
        """Make one call: ("ok", normalised result) or ("err", kind, message)."""
        try:
            return ("ok", normalise(self._call(c, loads)))
        except StepFailed:
            raise
        except Exception as e:  # noqa: BLE001 - every failure of the call is its outcome
            return ("err", error_kind(e), "%s: %s" % (type(e).__name__, e))

    def _call(self, c, loads):
        cl = self.client
        name = c["call"]
        key = c.get("key")
        ttl = c.get("ttl")
        if name == "get":
            return cl.get(key)
        if name == "set":
            return cl.set(key, self.value(c["value"]), expire=ttl)
        if name in ("add", "replace", "append", "prepend"):
            if name in ("add", "replace"):
                stored = getattr(cl, name)(key, self.value(c["value"]), expire=ttl)
            else:
                stored = getattr(cl, name)(key, self.value(c["value"]))
            if stored is False:
                raise exc.NotStoredError("%s returned False" % name)
            return stored
        if name == "delete":
            return cl.delete(key)
        if name in ("incr", "decr"):
            kw = {}
            if "initial" in c:
                kw["initial"] = c["initial"]
            if ttl is not None:
                kw["expire"] = ttl
            return getattr(cl, name)(key, c.get("delta", 1), **kw)
        if name == "touch":
            return cl.touch(key, expire=ttl)
        if name == "gets":
            value, cas = cl.gets(key)
            if value is not None:
                self.vars[c["save"]] = cas
            return value
        if name == "cas":
            r = cl.cas(key, self.value(c["value"]), self.value(c["cas"]), expire=ttl)
            if r is False:
                raise exc.CasConflictError("cas returned False")
            if r is None:
                raise exc.NotFoundError("cas returned None")
            return r
        if name == "get_multi":
            return cl.get_many(c["keys"])
        if name == "set_multi":
            items = {k: self.value(v) for k, v in c["items"].items()}
            failed = cl.set_many(items, expire=ttl)
            return True if failed == [] else {"not stored (set_many returned)": failed}
        if name == "delete_multi":
            return cl.delete_many(c["keys"])
        if name == "cas_update":
            return self.cas_update(c)
        if name == "get_or_set":
            return self.get_or_set(c, loads)
        if name == "lock":
            kw = {"timeout": c["ttl"], "wait": c["wait_ms"] / 1000.0}
            if c.get("fencing"):
                kw["fencing"] = True
            if "quorum" in c:
                kw["quorum"] = c["quorum"]
            lock = cl.lock(c["name"], **kw)
            self.vars[c["save"]] = lock
            return True
        if name in ("release", "extend", "held", "fence"):
            lock = self.value(c["lock"])
            if name == "release":
                return lock.release()
            if name == "extend":
                return lock.extend(c["ttl"])
            if name == "held":
                return lock.held
            return lock.fence
        raise StepFailed("unknown call %r" % name)

    def cas_update(self, c):
        op = c["fn"]
        last = []  # the function's last decision: what the outcome reports

        def fn(cur):
            kind = op["op"]
            if kind == "keep":
                last.append("unchanged")
                return multiput.KEEP
            if kind == "delete":
                last.append("deleted")
                return multiput.DELETE
            last.append("stored")
            if kind == "set":
                return op["arg"]
            if kind == "append":
                if cur is None:
                    return op["arg"]
                if isinstance(cur, (bytes, bytearray)):
                    return bytes(cur) + op["arg"].encode()
                return str(cur) + op["arg"]
            if kind == "incr":
                return "1" if cur is None else str(int(cur) + 1)
            raise StepFailed("unknown cas_update fn %r" % (op,))

        self.client.cas_update(c["key"], fn, expire=c.get("ttl"))
        if not last:
            raise StepFailed("cas_update returned without calling the function")
        return last[-1]

    def get_or_set(self, c, loads):
        spec = c["loader"]

        def loader():
            with loads[1]:
                loads[0] += 1
            if "fail" in spec:
                raise RuntimeError(spec["fail"])
            time.sleep(spec.get("delay_ms", 0) / 1000.0)
            return spec["value"]

        return self.client.get_or_set(c["key"], loader, expire=c.get("ttl"))

    # -- steps

    def step(self, i, st):
        if "fault" in st:
            srv = self.servers[st["server"]]
            {"kill": srv.kill, "stop": srv.stop, "cont": srv.cont, "restart": srv.restart}[st["fault"]]()
            return None
        if "sleep_ms" in st:
            time.sleep(st["sleep_ms"] / 1000.0)
            return None
        if "raw" in st:
            return self.raw(st)
        if "parallel" in st:
            return self.parallel(st)
        loads = [0, threading.Lock()]
        outcome = self.call(st, loads)
        return self.check(st.get("expect"), outcome)

    def raw(self, st):
        srv = self.servers[st["server"]]
        key = st["key"]
        if st["raw"] == "get":
            got = srv.raw_get(key)
            if "save" in st:
                self.vars[st["save"]] = got
            if "expect" in st:
                want = st["expect"]["result"]
                want_bytes = self.var(want) if isinstance(want, str) and want.startswith("$") else (
                    None if want is None else want.encode()
                )
                if got != want_bytes:
                    return "raw get of %r on server %d: expected %r, got %r" % (
                        key,
                        st["server"],
                        want_bytes,
                        got,
                    )
            return None
        if st["raw"] == "set":
            srv.raw_set(key, self.raw_bytes(st["value"]), st.get("flags", 0))
            return None
        if st["raw"] == "delete":
            srv.raw_delete(key)
            return None
        raise StepFailed("unknown raw access %r" % st["raw"])

    def parallel(self, st):
        n = st["parallel"]
        c = st["call"]
        loads = [0, threading.Lock()]
        results = [None] * n
        barrier = threading.Barrier(n)

        def work(i):
            try:
                barrier.wait(timeout=PARALLEL_TIMEOUT)
            except threading.BrokenBarrierError:
                pass
            try:
                results[i] = self.call(c, loads)
            except StepFailed as e:
                results[i] = ("err", "runner", str(e))

        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + PARALLEL_TIMEOUT
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        failed = {}  # why -> callers: callers that failed the same way are reported once
        for i, (t, r) in enumerate(zip(threads, results)):
            if t.is_alive() or r is None:
                why = "did not finish within %ss" % PARALLEL_TIMEOUT
            else:
                why = self.check(st.get("expect_each"), r)
            if why:
                failed.setdefault(why, []).append(i)
        problems = ["callers %s of %d: %s" % (who, n, why) for why, who in failed.items()]
        if "loads" in st and loads[0] != st["loads"]:
            problems.append("expected %d loader call(s) in all, got %d" % (st["loads"], loads[0]))
        return "; ".join(problems) or None

    def run(self):
        """None when every step met its expectation, else the first failure, described."""
        sc = self.scenario
        try:
            self.servers = [Server() for _ in range(sc["servers"])]
            self.client = make_client(sc.get("client", {}), self.servers)
            for i, st in enumerate(sc["steps"]):
                try:
                    why = self.step(i, st)
                except StepFailed as e:
                    why = str(e)
                except Exception as e:  # noqa: BLE001 - a broken fault or raw access
                    why = "%s: %s" % (type(e).__name__, e)
                if why:
                    return "step %d (%s): %s" % (i, describe(st), why)
            return None
        finally:
            self.vars.clear()  # drop lock handles before their servers go
            self.client = None
            for s in self.servers:
                s.cont()
                s.kill()


def describe(st):
    """A short form of a step for failure messages."""
    if "parallel" in st:
        return "parallel %d x %s" % (st["parallel"], describe(st["call"]))
    if "raw" in st:
        return "raw %s %r on server %d" % (st["raw"], st["key"], st["server"])
    if "fault" in st:
        return "fault %s on server %d" % (st["fault"], st["server"])
    if "sleep_ms" in st:
        return "sleep %d ms" % st["sleep_ms"]
    args = {k: v for k, v in st.items() if k not in ("call", "expect")}
    for k, v in args.items():
        if isinstance(v, str) and len(v) > 40:
            args[k] = v[:20] + "...(%d bytes)" % len(v)
    return "%s %s" % (st["call"], json.dumps(args))


# ---------------------------------------------------------------------------------------------
# Tests


def test_scenario_names_are_unique_and_gaps_name_real_scenarios():
    names = [s["name"] for _, s in SCENARIOS]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, "scenario names used more than once: %s" % dupes
    unknown = [g for g in GAPS if g not in names]
    assert not unknown, "known-gaps.json lists %r under %r, which no scenario is called" % (unknown, LANG)


@pytest.mark.parametrize(
    "fname,scenario",
    SCENARIOS,
    ids=["%s: %s" % (f, s["name"]) for f, s in SCENARIOS],
)
def test_conformance(fname, scenario):
    failure = Runner(scenario).run()
    name = scenario["name"]
    if name in GAPS:
        if failure is None:
            pytest.fail(
                "%s: %r passes now: remove it from known-gaps.json[%r]" % (fname, name, LANG),
                pytrace=False,
            )
        pytest.xfail("known gap (listed in known-gaps.json): %s" % failure)
    if failure is not None:
        pytest.fail("%s: %r failed at %s" % (fname, name, failure), pytrace=False)
