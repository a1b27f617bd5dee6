"""Real memcached processes for the tests.

Servers are started from the ``memcached`` binary on PATH (Debian's package), on free ports of
127.0.0.1, polled until they answer ``version``, and killed by PID at teardown. Three
session servers back most tests (and the Django settings, through
``MULTIPUT_TEST_SERVERS``); failure tests start their own with ``memcached_factory`` and stop
(SIGSTOP), resume or ``kill -9`` them.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

MEMCACHED = shutil.which("memcached")
if MEMCACHED is None:
    raise RuntimeError("memcached is not on PATH: apt-get install -y memcached")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Memcached:
    """One memcached process on 127.0.0.1."""

    def __init__(self, port=None, extra=(), listening_only=False):
        self.port = port or free_port()
        self.extra = list(extra)
        # Ready when the port accepts connections, without asking anything: for servers that
        # only talk TLS (-Z) or only to authenticated clients (-Y).
        self.listening_only = listening_only
        self.proc = None
        self.start()

    @property
    def address(self) -> str:
        return "127.0.0.1:%d" % self.port

    def start(self):
        cmd = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64", "-t", "2"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        self.proc = subprocess.Popen(cmd + self.extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("memcached exited with %s on port %d" % (self.proc.returncode, self.port))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if self.listening_only:
                        return
                    s.sendall(b"version\r\n")
                    if s.recv(64).startswith(b"VERSION"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("memcached on port %d did not answer version" % self.port)

    def kill(self):
        """kill -9, by PID."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def pause(self):
        """SIGSTOP, then wait until the kernel shows every thread stopped: a request sent in
        between would still be answered, and the test would measure nothing."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self._all_threads_stopped():
                return
            time.sleep(0.002)
        raise RuntimeError("memcached on port %d did not stop" % self.port)

    def _all_threads_stopped(self) -> bool:
        task_dir = "/proc/%d/task" % self.proc.pid
        try:
            for tid in os.listdir(task_dir):
                with open("%s/%s/stat" % (task_dir, tid), "rb") as f:
                    stat = f.read()
                # The state follows the parenthesised command name.
                if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"T", b"t"):
                    return False
        except (FileNotFoundError, ValueError):
            return False
        return True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self):
        self.kill()
        self.start()

    def raw(self, command: bytes) -> bytes:
        """Send one text-protocol command and return the reply up to END/STORED/..."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(command)
            data = b""
            while not data.endswith((b"END\r\n", b"STORED\r\n", b"DELETED\r\n", b"NOT_FOUND\r\n", b"ERROR\r\n")):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    def raw_get(self, key: str):
        """``(flags, data)`` of a key as stored, or None."""
        reply = self.raw(b"get " + key.encode() + b"\r\n")
        if reply == b"END\r\n":
            return None
        header, rest = reply.split(b"\r\n", 1)
        _, _, flags, length = header.split(b" ")
        return int(flags), rest[: int(length)]


_session_servers = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under MULTIPUT_NO_SKIPS (set by .ci/run) a skipped test fails: in CI every dependency
    is installed, so a skip would hide a missing part."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("MULTIPUT_NO_SKIPS") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under MULTIPUT_NO_SKIPS: {report.longrepr}"


def pytest_configure(config):
    # Started here (not in a fixture) so that the Django settings module can name them.
    for _ in range(3):
        _session_servers.append(Memcached())
    os.environ["MULTIPUT_TEST_SERVERS"] = ",".join(s.address for s in _session_servers)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")


def pytest_unconfigure(config):
    for s in _session_servers:
        s.kill()


@pytest.fixture(scope="session")
def servers():
    """The three session servers."""
    return list(_session_servers)


@pytest.fixture(scope="session")
def addresses(servers):
    return [s.address for s in servers]


@pytest.fixture
def memcached_factory():
    """Start private servers for a test; all are killed at its end."""
    started = []

    def make(n=1, **kw):
        out = [Memcached(**kw) for _ in range(n)]
        started.extend(out)
        return out

    yield make
    for s in started:
        try:
            s.resume()
        except (ProcessLookupError, AttributeError):
            pass
        s.kill()


@pytest.fixture
def client(addresses):
    import multiput

    c = multiput.Client(addresses)
    c.flush_all()
    return c


@pytest.fixture
def key():
    """A unique key per test."""
    return "t:" + uuid.uuid4().hex[:16]
