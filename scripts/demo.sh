#!/usr/bin/env bash
# The multiput demo: a replicated memcached fleet on this machine, and what happens to its keys
# when a server dies, comes back empty, or misses a write. About two minutes, the build included.
#
#   ./scripts/demo.sh [--no-languages]
#
#   1. build the CLI (release) and start 4 local memcached servers (scripts/memcached.sh)
#   2. where each key's 2 copies live: `multiput --replicas 2 ring`
#   3. replicated writes, then every server asked on its own: each key is on its two ring
#      servers and nowhere else, both copies carrying the same stamp
#   4. `kill -9` of one server in the middle of 200 replicated reads: no miss, no error
#   5. writes go on with --write-policy one (the default, all, fails while a replica is down)
#   6. that server restarted empty: replicated reads write its copies back (read repair)
#   7. a frozen (SIGSTOP) replica misses a write: its stale copy loses to the later one and is
#      overwritten by the next read
#   8. Python and Node read the same keys, when their packages are built in this checkout
#      (.venv with `import multiput`; wasm/js/pkg); skipped otherwise, or with --no-languages
#
# Every claim it prints is checked: the script exits 1 as soon as one does not hold, so it is
# also an end-to-end test. The servers it started are stopped on exit, on failure and on Ctrl-C
# (by the PIDs scripts/memcached.sh recorded in .run/demo/).
#
# Ports default to 21211-21214; set MULTIPUT_DEMO_PORTS="p1 p2 p3 ..." (3 or more) to change
# them. The CLI is built into $CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

languages=1
for arg in "$@"; do
    case "$arg" in
    --no-languages) languages=0 ;;
    -h | --help)
        sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
        exit 0
        ;;
    *)
        echo "demo.sh: unknown argument '$arg' (see --help)" >&2
        exit 2
        ;;
    esac
done

read -r -a ports <<<"${MULTIPUT_DEMO_PORTS:-21211 21212 21213 21214}"
if ((${#ports[@]} < 3)); then
    echo "demo.sh: MULTIPUT_DEMO_PORTS needs at least 3 ports" >&2
    exit 2
fi
export MULTIPUT_RUN_DIR="$PWD/.run/demo"
tmp="$MULTIPUT_RUN_DIR/tmp"
t_start=$SECONDS

if [[ -t 1 ]]; then
    B=$'\033[1m' D=$'\033[2m' G=$'\033[32m' R=$'\033[31m' N=$'\033[0m'
else
    B='' D='' G='' R='' N=''
fi
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; } # a step
why() { printf '%s   %s%s\n' "$D" "$*" "$N"; }    # what the step shows
claims=0
ok() {
    claims=$((claims + 1))
    printf '   %s✓%s %s\n' "$G" "$N" "$*"
}
fail() {
    printf '   %s✗ CLAIM FAILED:%s %s\n' "$R" "$N" "$*" >&2
    exit 1
}
# check CLAIM CONDITION: print the claim when CONDITION (shell code) holds, else fail with it.
check() { if eval "$2"; then ok "$1"; else fail "$1"; fi; }

# Stop what this run started, whatever way it ends.
started=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((started)); then
        say "stopping the demo servers"
        scripts/memcached.sh stop all || rc=1
    fi
    rm -rf "$tmp"
    if ((rc == 0)); then
        printf '\n%s%d claims checked, all held; %d s in all.%s\n' "$B" "$claims" "$((SECONDS - t_start))" "$N"
    else
        printf '\n%sdemo failed (exit %d)%s\n' "$R" "$rc" "$N" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A command line as one would type it.
quote() {
    local a s=''
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_:.,/=@%+-]+$ ]]; then s+=" $a"; else s+=" '${a//\'/\'\\\'\'}'"; fi
    done
    printf '%s' "${s# }"
}
# run ARGS...: print `$ multiput ARGS`, run it, print its stderr and stdout indented, and keep
# them in $out and $err, its exit status in $rc (never fatal here: the caller checks).
run() {
    printf '%s   $ multiput %s%s\n' "$D" "$(quote "$@")" "$N"
    rc=0
    "$mp" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    out=$(<"$tmp/out")
    err=$(<"$tmp/err")
    if [[ -s "$tmp/err" ]]; then sed -e 's/^/     /' -e '$a\' "$tmp/err"; fi
    if [[ -s "$tmp/out" ]]; then sed -e 's/^/     /' -e '$a\' "$tmp/out"; fi
    return 0
}
# raw PORT KEY FILE: what the server on PORT alone holds for KEY, read plainly (no --replicas:
# the stored bytes, envelope included), into FILE. Status 0 hit, 1 miss, 2 error.
raw() {
    local r=0
    "$mp" --servers "127.0.0.1:$1" get "$2" >"$3" 2>"$tmp/raw.err" || r=$?
    ((r == 0)) && return 0
    grep -q '^multiput: miss' "$tmp/raw.err" && return 1
    sed 's/^/     /' "$tmp/raw.err" >&2
    return 2
}
# envelope FILE: decode the 24-byte envelope header (docs/envelope.md) of a stored copy into
# env_ts (the stamp), env_writer, env_payload and env_desc; status 1 if FILE is no envelope.
envelope() {
    local hex ms
    hex=$(od -An -v -tx1 -N24 "$1" | tr -d ' \n')
    [[ ${#hex} == 48 && "${hex:0:8}" == e14d5001 && "${hex:8:2}" == 00 ]] || return 1
    env_ts=$((16#${hex:16:16}))
    env_writer=${hex:32:16}
    env_payload=$(tail -c +25 "$1")
    ms=$((env_ts >> 16))
    env_desc="ts=$env_ts ($(date -u -d "@$((ms / 1000))" +%H:%M:%S).$(printf %03d $((ms % 1000)))Z) writer=$env_writer"
}
pid_of() { tr -dc '0-9' <"$MULTIPUT_RUN_DIR/$1.pid"; }
port_refuses() { ! timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }
same_set() { [[ "$(tr ' ' '\n' <<<"$1" | sort)" == "$(tr ' ' '\n' <<<"$2" | sort)" ]]; }
now_us() { echo "${EPOCHREALTIME/./}"; }
# check_multiget: every KEY<TAB>VALUE line of $out is the expected value, and every key is there.
check_multiget() {
    local k v seen=0
    while IFS=$'\t' read -r k v; do
        [[ "$v" == "${expect[$k]-}" ]] || return 1
        seen=$((seen + 1))
    done <<<"$out"
    ((seen == $1))
}

say "1. build the CLI and start ${#ports[@]} memcached servers"
why "scripts/memcached.sh starts one memcached per port on 127.0.0.1 and records its PID;"
why "only those PIDs are ever signalled (kill -9, SIGSTOP and the final stop below)."
scripts/memcached.sh install
t0=$SECONDS
cargo build --release --locked -q -p multiput-cli
mp="${CARGO_TARGET_DIR:-target}/release/multiput"
echo "   built $mp in $((SECONDS - t0)) s"
if [[ -d "$MULTIPUT_RUN_DIR" ]]; then
    scripts/memcached.sh stop all >/dev/null # servers left by an interrupted run (recorded PIDs only)
fi
started=1
scripts/memcached.sh start "${ports[@]}" | sed 's/^/   /'
mkdir -p "$tmp"
servers=$(printf '127.0.0.1:%s,' "${ports[@]}")
export MULTIPUT_SERVERS="${servers%,}"
why "every multiput command below uses MULTIPUT_SERVERS=$MULTIPUT_SERVERS"

keys=(user:1 user:2 user:3 user:4 session:abc cart:42 "clé:été")
declare -A expect where

say "2. where each key's two copies live"
why "computed locally, without a connection: the first 2 distinct servers of the key's ketama"
why "preference list, owner first (libmemcached's ring, as PHP and pylibmc place keys)."
run --replicas 2 ring "${keys[@]}"
((rc == 0)) || fail "multiput ring failed"
while IFS=$'\t' read -r k a b; do where[$k]="$a $b"; done <<<"$out"
for k in "${keys[@]}"; do [[ "${where[$k]-}" == *" "127.0.0.1:* ]] || fail "ring gave no 2 servers for $k"; done

say "3. replicated writes, and each server asked on its own"
why "--replicas 2 set writes both copies at once, each inside multiput's 24-byte envelope (a"
why "timestamp and the writer's id); with the default --write-policy all, exit 0 means both stored."
for k in "${keys[@]}"; do
    expect[$k]="value of $k"
    run --replicas 2 set "$k" "${expect[$k]}"
    ((rc == 0)) || fail "replicated set of $k failed"
done
why "a replicated read returns the value; -v prints the copy's stamp and the key's replicas on stderr:"
run --replicas 2 get -v user:1
check "user:1 reads back as written, stamped, from ${where[user:1]/ /,}" \
    '[ "$rc" = 0 ] && [[ "$out" == "${expect[user:1]}" && "$err" == *"enveloped=yes"* ]]'
why "proof on the servers themselves: a plain read of one server (--servers HOST:PORT, no --replicas)"
why "returns the stored bytes, envelope included. The copy of user:1 on its owner:"
first_owner=${where[user:1]%% *}
raw "${first_owner##*:}" user:1 "$tmp/a" || fail "user:1 is not on its owner $first_owner"
printf '     %s\n' "$(od -An -v -tx1 -N24 "$tmp/a" | tr -d '\n' | sed 's/^ *//') | $(tail -c +25 "$tmp/a")"
why "  = magic e1 4d 50, version 01, kind/type/format/reserved, 8 bytes of stamp, 8 of writer id | the value"
for k in "${keys[@]}"; do
    holders=()
    files=()
    for p in "${ports[@]}"; do
        s=0
        raw "$p" "$k" "$tmp/copy.$p" || s=$?
        ((s != 2)) || fail "127.0.0.1:$p failed to answer for $k"
        if ((s == 0)); then
            holders+=("127.0.0.1:$p")
            files+=("$tmp/copy.$p")
        fi
    done
    same_set "${holders[*]}" "${where[$k]}" ||
        fail "$k is on ${holders[*]:-no server}, the ring says ${where[$k]}"
    cmp -s "${files[0]}" "${files[1]}" || fail "the two copies of $k differ"
    envelope "${files[0]}" || fail "the copy of $k is not enveloped"
    [[ "$env_payload" == "${expect[$k]}" ]] || fail "the copy of $k holds '$env_payload'"
    ok "$k: on ${where[$k]/ / and } only; identical copies, $env_desc"
done

victim=${where[user:1]%% *}
vport=${victim##*:}
vpid=$(pid_of "$vport")
vkeys=()
for k in "${keys[@]}"; do
    if [[ " ${where[$k]} " == *" $victim "* ]]; then vkeys+=("$k"); fi
done
reads=200
kill_before=51

say "4. kill -9 $victim (pid $vpid) in the middle of $reads replicated reads"
why "each read is a new \`multiput --replicas 2 get KEY\` over the ${#keys[@]} keys in turn; the kill comes"
why "before read $kill_before. ${#vkeys[@]} keys have a copy there (${vkeys[*]}): their other copy answers."
hits=0 misses=0 errors=0 wrong=0
t0=$(now_us)
deadline=$((SECONDS + 60))
for ((i = 1; i <= reads; i++)); do
    if ((i == kill_before)); then
        kill -9 "$vpid"
        echo "   [before read $i] kill -9 $vpid   ($victim)"
    fi
    ((SECONDS < deadline)) || fail "the read loop took more than 60 s"
    k=${keys[(i - 1) % ${#keys[@]}]}
    r=0
    v=$("$mp" --replicas 2 get "$k" 2>"$tmp/err") || r=$?
    if ((r == 0)); then
        if [[ "$v" == "${expect[$k]}" ]]; then hits=$((hits + 1)); else wrong=$((wrong + 1)); fi
    elif grep -q '^multiput: miss' "$tmp/err"; then
        misses=$((misses + 1))
    else
        errors=$((errors + 1))
        sed "s/^/     read $i: /" "$tmp/err"
    fi
done
t1=$(now_us)
echo "   $reads reads in $(((t1 - t0) / 1000)) ms: $hits right values, $misses misses, $errors errors, $wrong wrong values"
check "no miss, no error, no wrong value, before or after the kill" '[ "$hits" = "$reads" ]'
check "$victim is really gone: its port refuses connections" 'port_refuses "$vport"'
run health
down=$(awk 'NR > 1 && $2 == "down" { print $1 }' <<<"$out" | tr '\n' ' ')
check "multiput health reports $victim down (exit 2) and every other server up" \
    '[ "$rc" = 2 ] && [ "$down" = "$victim " ]'

say "5. writes go on while $victim is down"
why "the default --write-policy all needs both copies stored: a write to ${vkeys[0]} fails (exit 1) and names"
why "the dead replica. (The live copy was still written: an unmet policy is reported, not rolled back.)"
k=${vkeys[0]}
expect[$k]="value of $k, written while $victim was down"
run --replicas 2 set "$k" "${expect[$k]}"
check "the default policy refuses: exit 1, naming $victim" '[ "$rc" = 1 ] && [[ "$err" == *"$victim"* ]]'
why "with 2 copies a majority (--write-policy quorum) is both copies, so it refuses too."
why "--write-policy one (= quorum:1) accepts one stored copy and warns about the missing one:"
for k in "${vkeys[@]}"; do
    expect[$k]="value of $k, written while $victim was down"
    run --replicas 2 --write-policy one set "$k" "${expect[$k]}"
    [[ "$rc" == 0 && "$err" == *"warning"*"$victim"* ]] || fail "write-policy one: the write of $k"
done
ok "all ${#vkeys[@]} writes succeeded (exit 0), each warning that $victim missed its copy"
run --replicas 2 get "${keys[@]}"
check "a replicated multi-get returns every key's latest value" \
    '[ "$rc" = 0 ] && check_multiget "${#keys[@]}"'

say "6. restart $victim empty; reads repair it"
scripts/memcached.sh start "$vport" | sed 's/^/   /'
vpid=$(pid_of "$vport")
why "a restarted memcached has lost everything; asked directly, it has none of its ${#vkeys[@]} keys:"
for k in "${vkeys[@]}"; do
    s=0
    raw "$vport" "$k" "$tmp/v" || s=$?
    ((s == 1)) || fail "$k on the restarted $victim: expected a miss (status $s)"
done
ok "${vkeys[*]}: all missing on $victim"
run stats
items_on() { awk -v s="$1" '$1 == s { print $2 }' <<<"$out"; }
check "memcached's own count on $victim: 0 items" '[ "$rc" = 0 ] && [ "$(items_on "$victim")" = 0 ]'
why "one replicated multi-get (read policy all: both copies of each key are asked) returns the"
why "latest values and writes each missing or older copy back to its replica:"
run --replicas 2 get "${keys[@]}"
check "every key reads its latest value" '[ "$rc" = 0 ] && check_multiget "${#keys[@]}"'
why "asked directly again, $victim holds its keys again, byte for byte the other replica's copy:"
for k in "${vkeys[@]}"; do
    other=${where[$k]/"$victim"/}
    other=${other// /}
    raw "$vport" "$k" "$tmp/v" || fail "$k is still missing on $victim after the read"
    raw "${other##*:}" "$k" "$tmp/o" || fail "$k is missing on $other"
    cmp -s "$tmp/v" "$tmp/o" || fail "the repaired copy of $k differs from $other's"
    envelope "$tmp/v" || fail "the repaired copy of $k is not enveloped"
    ok "$k: back on $victim, identical to $other's copy, $env_desc"
done
run stats
check "memcached's own count on $victim: 0 → ${#vkeys[@]} items, the copies read repair wrote" \
    '[ "$rc" = 0 ] && [ "$(items_on "$victim")" = "${#vkeys[@]}" ]'
why "(multiput's own repair counters live in each client object, metrics() in Rust, Python and PHP;"
why "the CLI, one process per command, prints none: the copies above and memcached's item count show it.)"

k=cart:42
owner=${where[$k]%% *}
second=${where[$k]##* }
opid=$(pid_of "${owner##*:}")
say "7. a stale copy loses to the later one"
why "write v1 to both copies of $k, then freeze its owner $owner (kill -STOP $opid): it keeps"
why "its data but answers nothing, like a server stuck in swap or behind a partition."
expect[$k]="v1: 2 items"
run --replicas 2 set "$k" "${expect[$k]}"
((rc == 0)) || fail "replicated set of $k v1"
echo "   \$ kill -STOP $opid   ($owner)"
kill -STOP "$opid"
why "write v2 with --write-policy one: the frozen owner times out (--timeout-ms 300), the other stores it"
expect[$k]="v2: 3 items"
run --replicas 2 --write-policy one --timeout-ms 300 set "$k" "${expect[$k]}"
r=$rc e=$err
echo "   \$ kill -CONT $opid   ($owner)"
kill -CONT "$opid"
check "the write succeeded with one copy, warning that $owner did not store it" \
    '[ "$r" = 0 ] && [[ "$e" == *"warning"*"$owner"* ]]'
why "asked one at a time, the two servers now disagree:"
raw "${owner##*:}" "$k" "$tmp/o" && envelope "$tmp/o" || fail "no enveloped copy of $k on $owner"
ts_old=$env_ts old=$env_payload
echo "     $owner: \"$old\"  $env_desc"
raw "${second##*:}" "$k" "$tmp/s" && envelope "$tmp/s" || fail "no enveloped copy of $k on $second"
ts_new=$env_ts new=$env_payload
echo "     $second: \"$new\"  $env_desc"
check "the owner holds v1, the other replica v2, and v2's stamp is the later one" \
    '[ "$old" = "v1: 2 items" ] && [ "$new" = "v2: 3 items" ] && ((ts_new > ts_old))'
why "a replicated read asks both, returns the later copy (though the stale one is on the key's"
why "owner) and writes it over the stale copy:"
run --replicas 2 get -v "$k"
check "the read returns v2" '[ "$rc" = 0 ] && [ "$out" = "v2: 3 items" ]'
raw "${owner##*:}" "$k" "$tmp/o" && envelope "$tmp/o" || fail "no enveloped copy of $k on $owner"
echo "     $owner now: \"$env_payload\"  $env_desc"
check "$owner's copy is now v2, with v2's stamp: repaired" \
    '[ "$env_payload" = "v2: 3 items" ] && [ "$env_ts" = "$ts_new" ]'

if ((languages)); then
    py=() node=()
    if [[ -x .venv/bin/python ]] && timeout 20 .venv/bin/python -c 'import multiput' 2>/dev/null; then
        py=(.venv/bin/python -c '
import sys, multiput
c = multiput.Client(sys.argv[1].split(","), replicas=2)
for k in sys.argv[2:]:
    v = c.get(k)
    print(k + "\t" + ("(miss)" if v is None else v.decode() if isinstance(v, bytes) else str(v)))
')
    fi
    if command -v node >/dev/null && [[ -f wasm/js/pkg/multiput_wasm.js ]]; then
        node=(node -e '
const { Client } = require(process.argv[1]);
const c = new Client(process.argv[2].split(","), { replicas: 2 });
(async () => {
  for (const k of process.argv.slice(3)) {
    const v = await c.get(k);
    console.log(k + "\t" + (v === null ? "(miss)" : Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v).toString() : String(v)));
  }
})().then(() => c.close(), (e) => { console.error(String(e)); c.close(); process.exitCode = 1; });
' "$PWD/wasm/js")
    fi
    if ((${#py[@]} + ${#node[@]})); then
        say "8. the same keys from other languages"
        why "the Python and Node packages wrap the same core: same ring, same envelope, same winner."
    else
        why "(step 8, reading the keys from Python or Node, skipped: no .venv with the multiput package, no wasm/js/pkg)"
    fi
    for lang in Python Node; do
        if [[ $lang == Python ]]; then
            cmd=("${py[@]}") how='multiput.Client(servers, replicas=2).get(key)'
        else
            cmd=("${node[@]}") how="new Client(servers, { replicas: 2 }).get(key) (wasm/js)"
        fi
        ((${#cmd[@]})) || continue
        echo "   $lang: $how, for each key"
        rc=0
        out=$(timeout 30 "${cmd[@]}" "$MULTIPUT_SERVERS" "${keys[@]}" 2>"$tmp/err") || rc=$?
        sed 's/^/     /' <<<"$out"
        sed 's/^/     /' "$tmp/err"
        check "$lang reads every key's latest value" '[ "$rc" = 0 ] && check_multiget "${#keys[@]}"'
    done
fi

say "the fleet at the end"
run health
check "every server is up again" '[ "$rc" = 0 ]'
