#!/usr/bin/env bash
# Build the WebAssembly core and run the Node package's tests (node --test) against real
# memcached processes that the tests start on free 127.0.0.1 ports and stop by PID.
#
#   wasm/test.sh
#
# Needs memcached on PATH, Node >= 18, and what wasm/install-tools.sh installs. The interop
# tests use the Rust CLI (built here) and, when the repo's .venv has it, the Python binding.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

./build.sh
cargo build --locked --quiet --manifest-path ../Cargo.toml -p multiput-cli
if [ -n "${MULTIPUT_NO_SKIPS:-}" ]; then
    # CI (.ci/run): every dependency is installed, so a skipped test would hide a missing part.
    out="$(mktemp)"
    trap 'rm -f "$out"' EXIT
    node --test js/test/ | tee "$out"
    grep -q '^# skipped 0$' "$out" || { echo "node tests were skipped under MULTIPUT_NO_SKIPS" >&2; exit 1; }
else
    node --test js/test/
fi
