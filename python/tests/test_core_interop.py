"""Values written by the Rust core (the `multiput` CLI, a Rust program on the same core) are
read by Python, and the other way round, plain and replicated."""

import os
import shutil
import subprocess

import pytest

import multiput

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def cli():
    """The CLI binary from the workspace (built by `cargo test --workspace`; built here if
    missing)."""
    path = os.environ.get("MULTIPUT_CLI") or os.path.join(ROOT, "target", "debug", "multiput")
    if not os.path.exists(path):
        cargo = shutil.which("cargo")
        assert cargo, "cargo is needed to build the multiput CLI for this test"
        subprocess.run([cargo, "build", "-q", "-p", "multiput-cli"], cwd=ROOT, check=True)
    return path


def run(cli, servers, *args):
    out = subprocess.run(
        [cli, "--servers", ",".join(servers), *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_python_reads_what_the_rust_cli_wrote(cli, addresses):
    run(cli, addresses, "set", "from-rust", "hello from rust")
    c = multiput.Client(addresses)
    assert c.get("from-rust") == b"hello from rust"  # bytes, flags 0
    assert c.server_for("from-rust") in run(cli, addresses, "ring", "from-rust")


def test_rust_cli_reads_what_python_wrote(cli, addresses):
    c = multiput.Client(addresses)
    c.set("from-python", "text from python")
    assert "text from python" in run(cli, addresses, "get", "from-python")


def test_replicated_values_cross_between_rust_and_python(cli, memcached_factory):
    servers = [s.address for s in memcached_factory(3)]
    run(cli, servers, "--replicas", "3", "set", "r-rust", "enveloped by rust")
    c = multiput.Client(servers, replicas=3)
    assert c.get("r-rust") == b"enveloped by rust"
    c.set("r-python", "enveloped by python")
    assert "enveloped by python" in run(cli, servers, "--replicas", "3", "get", "r-python")
    c.delete("r-python")
    out = subprocess.run(
        [cli, "--servers", ",".join(servers), "--replicas", "3", "get", "r-python"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "enveloped by python" not in out.stdout  # the tombstone reads as a miss in Rust too
