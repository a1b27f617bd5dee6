#!/usr/bin/env bash
# Run every test in the repository against real memcached processes.
#
#   ./scripts/test.sh
#
# Installs Debian's memcached when it is missing (the tests start and stop their own servers
# on free 127.0.0.1 ports, by PID), then runs the Rust workspace's unit, property, vector,
# integration and doc tests. Needs Rust (cargo) and, on a fresh Debian machine, root or sudo
# for apt-get.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "memcached"
scripts/memcached.sh install
memcached -V

step "Rust workspace: unit, property, ring-vector, integration and doc tests"
cargo test --workspace --locked --no-fail-fast

echo
echo "all test suites passed"
