#!/usr/bin/env bash
# Start, stop and inspect local memcached servers for multiput development.
#
#   scripts/memcached.sh install                install Debian's memcached if missing
#   scripts/memcached.sh start PORT [PORT...]   start one server per port on 127.0.0.1
#   scripts/memcached.sh stop PORT... | all     stop servers started by this script
#   scripts/memcached.sh status                 list servers started by this script
#
# Each server runs as
#   memcached -l 127.0.0.1 -p PORT -U 0 -m 64 -c 1024 -t 2 [-u root]
# in the background; its PID goes to $STATE_DIR/PORT.pid and its output to
# $STATE_DIR/PORT.log, where STATE_DIR is ${MULTIPUT_RUN_DIR:-<repo>/.run/memcached}.
# Only PIDs recorded there are ever signalled.
#
# Environment:
#   MULTIPUT_RUN_DIR   state directory (default: <repo>/.run/memcached)
#   MEMCACHED_BIN      memcached binary (default: memcached from PATH; installed
#                      with apt-get when missing)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
STATE_DIR="${MULTIPUT_RUN_DIR:-$REPO/.run/memcached}"
MEMCACHED_BIN="${MEMCACHED_BIN:-memcached}"

START_TIMEOUT_DS=50 # tenths of a second to wait for a server to answer (5 s)
STOP_TIMEOUT_DS=50  # tenths of a second to wait after SIGTERM before SIGKILL (5 s)

PROG="$(basename "$0")"

usage() {
    cat <<EOF
usage: $PROG install                 install Debian's memcached if it is missing
       $PROG start PORT [PORT...]   start memcached on 127.0.0.1:PORT (one per port)
       $PROG stop PORT... | all     stop servers started by this script
       $PROG status                 show port, pid and liveness of recorded servers

State (pid and log files): $STATE_DIR (override with MULTIPUT_RUN_DIR)
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

log() {
    echo "$PROG: $*" >&2
}

check_port() {
    local port="$1"
    if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
        die "invalid port: '$port' (expected 1..65535)"
    fi
}

# Install Debian's memcached package when the binary is missing.
ensure_memcached() {
    if command -v "$MEMCACHED_BIN" >/dev/null 2>&1; then
        return 0
    fi
    if [[ "$MEMCACHED_BIN" != memcached ]]; then
        die "MEMCACHED_BIN=$MEMCACHED_BIN is not an executable"
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "memcached is not installed and apt-get is unavailable; install memcached (1.6.x) by hand"
    log "memcached not found; installing Debian's memcached package"
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "memcached is not installed; run as root or install sudo"
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y memcached
    command -v "$MEMCACHED_BIN" >/dev/null 2>&1 || die "memcached still not found after apt-get install"
    # Note: the package may start a system-wide memcached on 127.0.0.1:11211
    # (systemd); that one is not managed by this script.
}

pidfile() { echo "$STATE_DIR/$1.pid"; }
logfile() { echo "$STATE_DIR/$1.log"; }

# Prints the PID recorded for PORT, or nothing.
recorded_pid() {
    local f
    f="$(pidfile "$1")"
    [[ -f "$f" ]] || return 0
    local pid
    pid="$(tr -dc '0-9' <"$f")"
    [[ -n "$pid" ]] && echo "$pid"
    return 0
}

# True when PID exists and is not a zombie (an unreaped zombie accepts kill -0).
pid_alive() {
    local pid="$1" stat
    kill -0 "$pid" 2>/dev/null || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null || true)"
    [[ -z "$stat" ]] && return 0 # no procfs: trust kill -0
    stat="${stat##*) }"          # field 3 follows the parenthesised command name
    [[ "${stat%% *}" != Z ]]
}

# True when PID is alive and is a memcached serving PORT (guards against PID reuse).
is_our_memcached() {
    local pid="$1" port="$2"
    [[ -n "$pid" ]] || return 1
    pid_alive "$pid" || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0 # no procfs: trust kill -0
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmd" == *memcached* && "$cmd" == *" -p $port "* ]]
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# True when 127.0.0.1:PORT answers "version" with "VERSION ...".
answers_version() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "version\r\n" >&3
        IFS= read -r -t 1 line <&3 || exit 1
        [[ "$line" == VERSION* ]]
    ' _ "$1" 2>/dev/null
}

start_one() {
    local port="$1"
    local pid
    pid="$(recorded_pid "$port")"
    if [[ -n "$pid" ]]; then
        if is_our_memcached "$pid" "$port"; then
            log "port $port: already running (pid $pid)"
            return 0
        fi
        rm -f "$(pidfile "$port")" # stale
    fi
    if port_open "$port"; then
        die "port $port: already in use by another process; not starting"
    fi

    local args=(-l 127.0.0.1 -p "$port" -U 0 -m 64 -c 1024 -t 2)
    if [[ "$(id -u)" -eq 0 ]]; then
        args+=(-u root) # memcached refuses to run as root without -u
    fi
    local logf
    logf="$(logfile "$port")"
    # nohup execs memcached, so $! is memcached's own PID.
    nohup "$MEMCACHED_BIN" "${args[@]}" </dev/null >"$logf" 2>&1 &
    pid=$!
    echo "$pid" >"$(pidfile "$port")"

    local i
    for ((i = 0; i < START_TIMEOUT_DS; i++)); do
        if ! pid_alive "$pid"; then
            rm -f "$(pidfile "$port")"
            wait "$pid" 2>/dev/null || true
            log "port $port: memcached (pid $pid) exited during startup; log $logf:"
            sed 's/^/    /' "$logf" >&2 || true
            exit 1
        fi
        if answers_version "$port"; then
            echo "started memcached on 127.0.0.1:$port (pid $pid, log $logf)"
            return 0
        fi
        sleep 0.1
    done
    log "port $port: memcached (pid $pid) did not answer 'version' within $((START_TIMEOUT_DS / 10)) s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$(pidfile "$port")"
    sed 's/^/    /' "$logf" >&2 || true
    exit 1
}

stop_one() {
    local port="$1"
    local f pid
    f="$(pidfile "$port")"
    pid="$(recorded_pid "$port")"
    if [[ -z "$pid" ]]; then
        log "port $port: no server recorded in $STATE_DIR"
        rm -f "$f"
        return 0
    fi
    if ! is_our_memcached "$pid" "$port"; then
        log "port $port: recorded pid $pid is not running (stale pidfile removed)"
        rm -f "$f"
        return 0
    fi
    kill -CONT "$pid" 2>/dev/null || true # a SIGSTOPped server cannot act on TERM
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < STOP_TIMEOUT_DS; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        log "port $port: pid $pid ignored SIGTERM for $((STOP_TIMEOUT_DS / 10)) s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_TIMEOUT_DS; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        if pid_alive "$pid"; then
            die "port $port: pid $pid still alive after SIGKILL"
        fi
    fi
    rm -f "$f"
    echo "stopped memcached on 127.0.0.1:$port (pid $pid)"
}

recorded_ports() {
    local f
    shopt -s nullglob
    for f in "$STATE_DIR"/*.pid; do
        f="${f##*/}"
        echo "${f%.pid}"
    done | sort -n
}

cmd_start() {
    (($# > 0)) || {
        usage >&2
        exit 2
    }
    local port
    for port in "$@"; do check_port "$port"; done
    ensure_memcached
    mkdir -p "$STATE_DIR"
    for port in "$@"; do start_one "$port"; done
}

cmd_stop() {
    (($# > 0)) || {
        usage >&2
        exit 2
    }
    local ports=() port
    if [[ "$1" == all ]]; then
        (($# == 1)) || die "'stop all' takes no ports"
        [[ -d "$STATE_DIR" ]] || return 0
        mapfile -t ports < <(recorded_ports)
    else
        for port in "$@"; do check_port "$port"; done
        ports=("$@")
    fi
    ((${#ports[@]} > 0)) || {
        echo "no servers recorded in $STATE_DIR"
        return 0
    }
    for port in "${ports[@]}"; do stop_one "$port"; done
}

cmd_status() {
    (($# == 0)) || die "status takes no arguments"
    local ports=() port pid alive answers
    if [[ -d "$STATE_DIR" ]]; then
        mapfile -t ports < <(recorded_ports)
    fi
    ((${#ports[@]} > 0)) || {
        echo "no servers recorded in $STATE_DIR"
        return 0
    }
    printf '%-6s %-8s %-6s %s\n' PORT PID ALIVE ANSWERS
    for port in "${ports[@]}"; do
        pid="$(recorded_pid "$port")"
        if is_our_memcached "$pid" "$port"; then alive=yes; else alive=no; fi
        if [[ "$alive" == yes ]] && answers_version "$port"; then answers=yes; else answers=no; fi
        printf '%-6s %-8s %-6s %s\n' "$port" "${pid:--}" "$alive" "$answers"
    done
}

main() {
    (($# > 0)) || {
        usage >&2
        exit 2
    }
    local cmd="$1"
    shift
    case "$cmd" in
    install) ensure_memcached ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage ;;
    *)
        log "unknown command: $cmd"
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
