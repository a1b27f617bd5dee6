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

step "Python binding (python/): pip install ./python, pytest against real memcached"
# A venv in the repo (.venv, reused), the extension built from source by pip (maturin), and the
# exact test dependencies this suite was run with (gunicorn: test_gunicorn.py serves a Django
# app with --preload and forked workers; prometheus_client: multiput.prometheus's collector).
# pylibmc (cross-compatibility tests) needs libmemcached; if it cannot be installed only those
# tests are skipped.
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q ./python pytest==9.2.0 django==5.2.19 pymemcache==4.0.0 gunicorn==27.0.1 prometheus_client==0.26.0
# MULTIPUT_NO_SKIPS=1 (what .ci/run sets): every dependency must be there and no test may be
# skipped, in any of the suites below.
if [ -n "${MULTIPUT_NO_SKIPS:-}" ]; then
    .venv/bin/python -m pip install -q pylibmc==1.6.3
else
    .venv/bin/python -m pip install -q pylibmc==1.6.3 ||
        echo "warning: pylibmc could not be installed; its cross-compatibility tests are skipped"
fi
pytest_rc=0
# (python/tests/conftest.py turns a skip into a failure under MULTIPUT_NO_SKIPS.)
MULTIPUT_CLI="$PWD/target/debug/multiput" .venv/bin/python -m pytest -q python/tests || pytest_rc=$?
if [ "$pytest_rc" -eq 5 ]; then
    echo "pytest collected no tests in python/tests" >&2
    exit 1
elif [ "$pytest_rc" -ne 0 ]; then
    exit "$pytest_rc"
fi

step "WASM core + Node client (wasm/): built for wasm32-unknown-unknown, node --test against real memcached"
wasm/install-tools.sh   # the wasm32 target, and wasm-bindgen-cli 0.2.130 unless that exact version is installed
wasm/test.sh            # build.sh + the CLI for interop + node --test wasm/js/test/

step "PHP binding (php-ext/): phpunit against real memcached and Debian's php-memcached"
# tests/FpmTest.php runs Debian's php8.2-fpm behind nginx (started and stopped by the test;
# both live in /usr/sbin, which a non-root PATH may lack).
if ! command -v phpunit >/dev/null || ! php -m 2>/dev/null | grep -qix memcached ||
    ! [ -x /usr/sbin/php-fpm8.2 ] || ! [ -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q php-cli phpunit php-memcached php8.2-fpm nginx >/dev/null
fi
cargo build --locked -q -p multiput-ffi -p multiput-cli
(cd php-ext && MULTIPUT_FFI_LIB="$PWD/../target/debug/libmultiput_ffi.so" \
    MULTIPUT_CLI="$PWD/../target/debug/multiput" MULTIPUT_PYTHON="$PWD/../.venv/bin/python" \
    phpunit ${MULTIPUT_NO_SKIPS:+--fail-on-skipped})

step "Cross-language value matrix: every type x writer x reader (Python, PHP, Node, Rust), default settings"
# tests/interop/matrix.py: real memcached, each binding in its own process (docs/interop.md);
# the Rust side is core/examples/matrix.rs.
cargo build --locked -q -p multiput --example matrix
MULTIPUT_FFI_LIB="$PWD/target/debug/libmultiput_ffi.so" .venv/bin/python tests/interop/matrix.py

echo
echo "all test suites passed"
