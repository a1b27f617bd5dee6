#!/usr/bin/env bash
# Keep the logic layer free of I/O: core/src/logic/ must not read a clock, open a socket,
# sleep, spawn, touch files or draw randomness, and must not reach into the driver layer.
# Time comes into the logic layer as arguments and randomness as seeds (see
# core/src/logic/mod.rs); run by .ci/run.
#
#   scripts/check-layers.sh
#
# Test code is exempt: a file's `#[cfg(test)]` module (at column 0, by convention the end of
# the file) and the `tests.rs` files beside the modules. Comments are ignored.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

forbidden=(
    'Instant::now' 'SystemTime::now' 'std::thread' 'thread::sleep' 'tokio' 'fastrand'
    'rand::' 'getrandom' 'RandomState' 'std::fs' 'std::process' 'libc::' 'TcpStream'
    'TcpListener' 'UdpSocket' 'std::env' 'crate::driver' 'crate::client' 'crate::blocking'
    'crate::fork' 'crate::recipes::' 'crate::replicated' 'crate::api'
)
pattern="$(printf '%s|' "${forbidden[@]}")"
pattern="${pattern%|}"

status=0
while IFS= read -r -d '' f; do
    case "$f" in */tests.rs) continue ;; esac
    # Lines before the test module, without comment lines, numbered.
    hits="$(awk '/^#\[cfg\(test\)\]/ { exit } { print FILENAME ":" FNR ": " $0 }' "$f" |
        grep -Ev '^[^:]+:[0-9]+: *//' | grep -E "$pattern" || true)"
    if [ -n "$hits" ]; then
        printf '%s\n' "$hits"
        status=1
    fi
done < <(find core/src/logic -name '*.rs' -print0)

if [ "$status" -ne 0 ]; then
    echo "check-layers: the logic layer (core/src/logic) must do no I/O and use no driver code;" \
        "pass the time in, take a seed, or move the code to core/src/driver" >&2
    exit 1
fi
echo "check-layers: core/src/logic does no I/O"
