#!/usr/bin/env python3
"""The cross-language value matrix: every value type x every writer language x every reader
language, with every client in its default settings, against real memcached.

    .venv/bin/python tests/interop/matrix.py     # after the Python, PHP (FFI) and Node builds

Writers and readers: Python (``multiput.Client``), PHP (``Multiput\\Memcached``, the PECL
drop-in, through the C ABI: ``$MULTIPUT_FFI_LIB``), Node (the WASM package in wasm/js) and Rust
(``core/examples/matrix.rs``: the blocking client with ``values::encode`` and
``values::decode_checked``; built with ``cargo build -p multiput --example matrix``, found at
``$MULTIPUT_MATRIX_RUST`` or target/debug/examples/matrix).
Each writer stores the same named values (text, bytes, ints, floats, bools, a structure) in
plain mode, each reader reads all of them, and every cell is checked against what the
convention promises (docs/interop.md): scalars come back with their type everywhere; a
structure comes back where its serializer is readable (JSON everywhere, a pickle in Python,
PHP ``serialize()`` in PHP) and is an "undecodable" error, naming the writer, elsewhere.

It also stores the values pylibmc, pymemcache and PECL memcached write (raw flags and bytes)
and checks that each reader reads its own ecosystem's values and refuses the other's with a
typed error naming the writer, never a wrong value.

Starts two memcached processes on free 127.0.0.1 ports and stops them by PID.
"""

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LANGS = ["python", "php", "node", "rust"]
RUST = os.environ.get("MULTIPUT_MATRIX_RUST") or os.path.join(REPO, "target", "debug", "examples", "matrix")

# name -> (category, canonical value) as a reader reports it (see reader_python below).
SCALARS = {
    "text": ("text", "héllo wörld ✓"),
    "empty_text": ("text", ""),
    "bytes": ("bytes", "00ff7261770a"),
    "int": ("int", "42"),
    "negative": ("int", "-7"),
    "big": ("int", str(2**62)),
    "float": ("float", 1.5),
    "small_float": ("float", -0.25),
    "true": ("bool", True),
    "false": ("bool", False),
}
STRUCT = {"a": [1, 2], "b": "c"}

# Values other clients wrote: (flags, payload, {reader: expected}); an expected
# ("error", "undecodable", hint) also checks that the message names the likely writer.
LEGACY = {
    "pecl_int": (1, b"42", {
        "python": ("error", "undecodable", "PECL"),
        "php": ("int", "42"),
        "node": ("error", "undecodable", "PECL"),
    }),
    "pecl_double": (2, b"1.5", {
        "python": ("error", "undecodable", "PECL"),
        "php": ("float", 1.5),
        "node": ("error", "undecodable", "PECL"),
    }),
    "pecl_bool": (3, b"1", {
        "python": ("error", "undecodable", "PECL"),
        "php": ("bool", True),
        "node": ("error", "undecodable", "PECL"),
    }),
    "pecl_serialized": (4, b'a:1:{s:1:"a";i:1;}', {
        "python": ("error", "undecodable", None),
        "php": ("struct", json.dumps({"a": 1}, sort_keys=True)),
        "node": ("error", "undecodable", None),
    }),
    "pylibmc_pickle": (1, pickle.dumps([1, 2], 2), {
        "python": ("struct", json.dumps([1, 2])),
        "php": ("error", "undecodable", "pickle"),
        "node": ("error", "undecodable", "pickle"),
    }),
    "pymemcache_text": (16, "héllo".encode(), {
        "python": ("text", "héllo"),
        "php": ("error", "undecodable", "pylibmc"),
        "node": ("text", "héllo"),
    }),
    "pylibmc_long": (4, b"42", {
        "python": ("int", "42"),
        "php": ("error", "undecodable", "pylibmc"),
        "node": ("int", "42"),
    }),
    # The one collision the bytes cannot reveal: pymemcache's int 42 and PECL's double 42.0
    # are both "42" with flags 2. Each reads it as its own ecosystem's type: equal, not the
    # same type (documented in docs/interop.md).
    "pymemcache_int": (2, b"42", {
        "python": ("int", "42"),
        "php": ("float", 42.0),
        "node": ("int", "42"),
    }),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_memcached():
    port = free_port()
    cmd = [shutil.which("memcached") or "memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"version\r\n")
                if s.recv(64).startswith(b"VERSION"):
                    return proc, "127.0.0.1:%d" % port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("memcached did not start")


def expected(writer, name, reader):
    """What `reader` must report for the value `name` written by `writer`."""
    if name in SCALARS:
        cat, value = SCALARS[name]
        if reader == "php" and cat in ("text", "bytes"):
            # PHP has one string type: text and bytes both read as a string (hex here).
            return ("string", value.encode().hex() if cat == "text" else value)
        return (cat, value)
    if name == "json":  # PHP's SERIALIZER_JSON: JSON, readable everywhere
        return ("struct", json.dumps(STRUCT, sort_keys=True))
    assert name == "struct"
    # Node and Rust write JSON, which every reader reads; a pickle and PHP serialize() output
    # are read by their own language only.
    if writer in ("node", "rust") or reader == writer:
        return ("struct", json.dumps(STRUCT, sort_keys=True))
    return ("error", "undecodable", "Python pickle" if writer == "python" else "PHP serialize()")


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p.stdout


def helper(lang, action, servers, prefix, names=()):
    if lang == "python":
        return run([sys.executable, os.path.join(HERE, "matrix_python.py"), action, servers, prefix, *names])
    if lang == "php":
        return run(["php", "-d", "ffi.enable=1", os.path.join(HERE, "matrix.php"), action, servers, prefix, *names])
    if lang == "rust":
        return run([RUST, action, servers, prefix, *names])
    return run(["node", os.path.join(HERE, "matrix.js"), action, servers, prefix, *names])


def raw_set(address, key, flags, data):
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"set %s %d 0 %d\r\n%s\r\n" % (key.encode(), flags, len(data), data))
        assert s.recv(64) == b"STORED\r\n"


def main():
    if not os.access(RUST, os.X_OK):
        print("the Rust side is not built (%s): cargo build -p multiput --example matrix" % RUST, file=sys.stderr)
        return 1
    procs = []
    try:
        for _ in range(2):
            proc, addr = start_memcached()
            procs.append((proc, addr))
        servers = ",".join(a for _, a in procs)
        run_id = uuid.uuid4().hex[:8]
        names = {w: [] for w in LANGS}
        for writer in LANGS:
            out = helper(writer, "write", servers, "mx:%s:%s:" % (run_id, writer))
            names[writer] = out.split()
        # Legacy values go to the server that owns the key for every client (one server: the
        # placement rules are the ring's tests, not this one's).
        legacy_server = procs[0][1]
        for name, (flags, data, _) in LEGACY.items():
            raw_set(legacy_server, "mx:%s:legacy:%s" % (run_id, name), flags, data)

        failures = []
        cells = 0
        for reader in LANGS:
            for writer in LANGS:
                got = json.loads(helper(reader, "read", servers, "mx:%s:%s:" % (run_id, writer), names[writer]))
                for name in names[writer]:
                    cells += 1
                    check(failures, writer, reader, name, got.get(name), expected(writer, name, reader))
            got = json.loads(helper(reader, "read", legacy_server, "mx:%s:legacy:" % run_id, list(LEGACY)))
            for name, (_, _, by_reader) in LEGACY.items():
                cells += 1
                # Rust's default reads others' values as Node does (pylibmc's numbers, no pickle).
                want = by_reader["node" if reader == "rust" else reader]
                check(failures, "legacy", reader, name, got.get(name), want)
        for f in failures:
            print("FAIL", f)
        print("value matrix: %d cells, %d failures (writers and readers: %s; legacy values: %d)"
              % (cells, len(failures), ", ".join(LANGS), len(LEGACY)))
        return 1 if failures else 0
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def check(failures, writer, reader, name, got, want):
    where = "%s wrote %s, %s read %r" % (writer, name, reader, got)
    if got is None:
        failures.append(where + ": no result")
        return
    if want[0] == "error":
        if got[0] != "error" or got[1] != want[1]:
            failures.append(where + ": expected an %s error" % want[1])
        elif want[2] and want[2].lower() not in got[2].lower():
            failures.append(where + ": the message does not name %r" % want[2])
        return
    if list(got[:2]) != list(want[:2]):
        failures.append(where + ": expected %r" % (want,))


if __name__ == "__main__":
    sys.exit(main())
