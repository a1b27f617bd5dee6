#!/usr/bin/env bash
# The multiput demo: start three local memcached servers, write and read keys through the
# `multiput` CLI and the Rust example, show where every key lives and check that each one is
# on exactly the server the ring names, then stop the servers.
#
#   ./scripts/demo.sh
#
# Ports default to 21211-21213; set MULTIPUT_DEMO_PORTS="p1 p2 p3" to change them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

read -r -a ports <<<"${MULTIPUT_DEMO_PORTS:-21211 21212 21213}"
export MULTIPUT_RUN_DIR="$PWD/.run/demo"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing memcached if needed, building the CLI"
scripts/memcached.sh install
cargo build --release --locked -q -p multiput-cli
cargo build --release --locked -q -p multiput --example basic
mp=target/release/multiput

say "starting memcached on 127.0.0.1:${ports[*]}"
scripts/memcached.sh start "${ports[@]}"
trap 'say "stopping the demo servers"; scripts/memcached.sh stop all' EXIT
servers=$(printf '127.0.0.1:%s,' "${ports[@]}")
export MULTIPUT_SERVERS="${servers%,}"

keys=(user:1 user:2 user:3 session:abc cart:42 "clé:été")
say "where each key lives (libmemcached's weighted ketama, as PHP and pylibmc place them)"
"$mp" ring "${keys[@]}"

say "writing through the ring"
for k in "${keys[@]}"; do
    "$mp" set "$k" "value of $k" --ttl 300
done
"$mp" set counter 41
"$mp" incr counter

say "reading them back in one multi-get"
"$mp" get "${keys[@]}" counter

say "asking each server directly: every key is on the server the ring named, and only there"
while IFS=$'\t' read -r key owner; do
    for p in "${ports[@]}"; do
        if MULTIPUT_SERVERS="127.0.0.1:$p" "$mp" get "$key" >/dev/null 2>&1; then
            [ "127.0.0.1:$p" = "$owner" ] || { echo "MISPLACED: $key found on 127.0.0.1:$p, ring says $owner"; exit 1; }
            echo "  $key: on $owner"
        fi
    done
done < <("$mp" ring "${keys[@]}")

say "the same from Rust (core/examples/basic.rs)"
IFS=, read -r -a addrs <<<"$MULTIPUT_SERVERS"
target/release/examples/basic "${addrs[@]}"

say "fleet stats and health"
"$mp" stats
"$mp" health
