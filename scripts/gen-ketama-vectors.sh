#!/usr/bin/env bash
# Regenerate the ketama ring vectors (docs/vectors/ring/ketama_*.json) with libmemcached itself.
#
#   scripts/gen-ketama-vectors.sh           # rewrite docs/vectors/ring/ketama_*.json
#   scripts/gen-ketama-vectors.sh --check   # regenerate into a temp dir; fail if any file differs
#
# Needs gcc and libmemcached's headers (Debian: apt-get install libmemcached-dev; the committed
# files were made with Debian 12's libmemcached 1.1.4, libmemcached-awesome). Builds
# scripts/gen-ketama-vectors.c into a temp dir and runs it: the configurations (mode, servers,
# ports, weights, descriptions) are in the C file, the keys in scripts/ketama-vector-keys/
# (one UTF-8 key a line). Pure computation: no server is contacted and no name is resolved.
# See docs/vectors/ring/README.md for the format and the provenance of the keys.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

check=0
case "${1:-}" in
    "") ;;
    --check) check=1 ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

flags="$(pkg-config --cflags --libs libmemcached 2>/dev/null || echo -lmemcached)"
# shellcheck disable=SC2086 # word splitting of the pkg-config flags is intended
gcc -std=gnu99 -O2 -Wall -Wextra -Werror -o "$tmp/gen-ketama-vectors" \
    scripts/gen-ketama-vectors.c $flags

out=docs/vectors/ring
if [ "$check" = 1 ]; then
    out="$tmp/out"
    mkdir -p "$out"
fi
"$tmp/gen-ketama-vectors" scripts/ketama-vector-keys "$out"

if [ "$check" = 1 ]; then
    status=0
    for f in "$out"/ketama_*.json; do
        name="$(basename "$f")"
        if ! cmp -s "$f" "docs/vectors/ring/$name"; then
            echo "differs: docs/vectors/ring/$name" >&2
            status=1
        fi
    done
    for f in docs/vectors/ring/ketama_*.json; do
        [ -e "$out/$(basename "$f")" ] || { echo "not generated: $f" >&2; status=1; }
    done
    [ "$status" = 0 ] && echo "docs/vectors/ring/ketama_*.json: identical to libmemcached's answers"
    exit "$status"
fi
echo "wrote $out/ketama_*.json"
