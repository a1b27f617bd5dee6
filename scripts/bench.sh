#!/usr/bin/env bash
# Run multiput's benchmarks and store the results under docs/bench-results/.
#
#   scripts/bench.sh
#
# 1. Builds the end-to-end benchmark (tests/benches/e2e.rs) in release.
# 2. Runs it twice, each run starting and stopping its own memcached servers:
#      pinned   (client and servers on one CPU)  -> docs/bench-results/e2e-pinned.md
#      unpinned                                  -> docs/bench-results/e2e-unpinned.md
#    Pinned rows show a client's own CPU cost per operation; unpinned rows include the
#    cross-vCPU wake-ups (~50 us each on these VMs). Compare ratios within one run.
# 3. Runs the criterion micro-benchmarks of the core crate (codec, ring) with --quick, when
#    they exist, into docs/bench-results/criterion.txt.
#
# Environment:
#   E2E_SECONDS    measured seconds per e2e row (default: the bench's own, 2)
#   BENCH_CPU      the CPU the pinned run uses for client and servers (default 0)
#   E2E_ONLY       passed through: run only some e2e scenarios (get,set,multi1,multi3,conc,repl)
#   MEMCACHED_BIN  memcached binary (default: memcached in PATH; installed when missing)
#
# Run it on a quiet machine: other load changes both the absolute numbers and the ratios.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
OUT_DIR="$REPO/docs/bench-results"
BENCH_CPU="${BENCH_CPU:-0}"

cd "$REPO"

# memcached: reuse scripts/memcached.sh's install logic (Debian package via apt-get).
if ! command -v "${MEMCACHED_BIN:-memcached}" >/dev/null 2>&1; then
    "$SCRIPT_DIR/memcached.sh" install
fi

mkdir -p "$OUT_DIR"

echo "bench.sh: building the e2e benchmark (release)" >&2
cargo bench -p multiput-tests --bench e2e --no-run

echo "bench.sh: e2e, pinned (client and servers on CPU $BENCH_CPU)" >&2
E2E_PIN_CLIENT_CPU="$BENCH_CPU" E2E_PIN_SERVER_CPU="$BENCH_CPU" \
    E2E_OUT="$OUT_DIR/e2e-pinned.md" \
    cargo bench -p multiput-tests --bench e2e

echo "bench.sh: e2e, unpinned" >&2
env -u E2E_PIN_CLIENT_CPU -u E2E_PIN_SERVER_CPU \
    E2E_OUT="$OUT_DIR/e2e-unpinned.md" \
    cargo bench -p multiput-tests --bench e2e

benches=()
for b in codec ring; do
    if [[ -f "$REPO/core/benches/$b.rs" ]]; then
        benches+=(--bench "$b")
    fi
done
if ((${#benches[@]} > 0)); then
    echo "bench.sh: criterion micro-benchmarks (${benches[*]}) --quick" >&2
    {
        echo "# cargo bench -p multiput ${benches[*]} -- --quick"
        echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs"
        cargo bench -p multiput "${benches[@]}" -- --quick 2>&1
    } | tee "$OUT_DIR/criterion.txt"
else
    echo "bench.sh: no core/benches/{codec,ring}.rs; skipping the criterion benchmarks" >&2
fi

echo "bench.sh: results in $OUT_DIR" >&2
ls -l "$OUT_DIR" >&2
