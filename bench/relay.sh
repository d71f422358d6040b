#!/usr/bin/env bash
# bench/relay.sh: the side-by-side relay run of issue 16, on one machine, all on loopback.
#
# One sink (Postfix's smtp-sink), one load generator (the project's, `cargo bench --bench
# relay`), one message (the ~20 KB newsletter with 51 links the other benches send), 20
# concurrent SMTP sessions, and in turn:
#
#   1. the generator straight into the sink (the ceiling of generator and sink on this machine)
#   2. Postfix relaying to the sink (an instance of its own, config and queue in a temp folder)
#   3. Postfix + OpenDKIM as a milter, one RSA-2048 signature (key made for the run)
#   4. Sluice, a flow without steps
#   5. Sluice, the built-in flow template -> tracking -> archive -> dkim, two RSA-2048
#      signatures (the platform's and a validated customer identity's)
#   and, named in SYSTEMS only (not run by default), Sluice on a PostgreSQL store, a cluster
#   of the run's own (Debian's postgresql, installed when missing; on a Unix socket in the
#   run's folder, pg_stat_statements loaded):
#   6. sluice-pg: one node, a flow without steps
#   7. sluice-pg2: two nodes over one database, the generator's sessions split between them
#   8. sluice-flow-pg: one node, the built-in flow
#   For these the CPU column also gives PostgreSQL's own CPU per message (the postmaster and
#   all its backends) and the statements PostgreSQL ran per message (pg_stat_statements,
#   warm-up included).
#
# Each system gets a warm-up (10 messages a session, not counted), then ROUNDS rounds of
# MESSAGES messages. Per round: messages/second from the first message sent until the sink
# has counted the last (end to end), the CPU time (user + system, /proc/PID/stat) of the
# system's processes and all their descendants per message, and the acknowledgement time
# (last byte of a message written -> its 250) p50 and p99. The table shows the medians of the
# rounds, each column on its own.
#
# Usage (as root, from anywhere in the repository):
#
#   bench/relay.sh [MESSAGES]          # default 5000
#
#   ROUNDS=3 SESSIONS=20 BASE_PORT=24500 (uses BASE_PORT..BASE_PORT+4 on 127.0.0.1; below
#   Linux's ephemeral ports, 32768-60999, which the run's own connections take)
#   SYSTEMS="ceiling postfix opendkim sluice-bare sluice-flow" (a subset runs only those;
#   add sluice-pg sluice-pg2 sluice-flow-pg for the PostgreSQL store)
#   KEEP=1 keeps the temp folder (logs, configurations) for a look afterwards.
#   POSTGRES_SETTINGS="synchronous_commit=off ..." adds settings (`-c NAME=VALUE` each) to the
#   run's PostgreSQL, for experiments on what bounds the PostgreSQL store.
#
# Needs: root (apt-get, and Postfix's master runs as root), Debian's postfix, opendkim and
# opendkim-tools (installed when missing; the system's own Postfix is not configured or
# started: the bench runs a separate instance), cargo. Takes the release build of Sluice
# (minutes the first time), then about five minutes for the five systems at 5,000 messages on
# a 2-core machine (Postfix + OpenDKIM is the slowest, ~1.5 minutes), longer when it is busy.
# Nothing listens beyond 127.0.0.1; everything started is stopped on exit or Ctrl-C (checked:
# SIGINT mid-round leaves no process, port or temp folder behind).
set -euo pipefail

MESSAGES=${1:-${MESSAGES:-5000}}
ROUNDS=${ROUNDS:-3}
SESSIONS=${SESSIONS:-20}
BASE_PORT=${BASE_PORT:-24500}
SYSTEMS=${SYSTEMS:-ceiling postfix opendkim sluice-bare sluice-flow}
KEEP=${KEEP:-0}

SINK_PORT=$BASE_PORT
POSTFIX_PORT=$((BASE_PORT + 1))
MILTER_PORT=$((BASE_PORT + 2))
SLUICE_PORT=$((BASE_PORT + 3))
# A second node's, for sluice-pg2.
SLUICE_PORT_2=$((BASE_PORT + 4))
WARM_UP=$((SESSIONS * 10))

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
TEMPLATES=$HERE/relay

say() { printf '%s\n' "$*" >&2; }
die() {
    say "relay.sh: $*"
    exit 1
}

[[ $(id -u) == 0 ]] || die "run as root (apt-get, and Postfix's master runs as root)"
[[ $MESSAGES =~ ^[0-9]+$ && $MESSAGES -ge $SESSIONS ]] || die "MESSAGES must be a number >= SESSIONS"

# --- what the run needs -------------------------------------------------------------------

install_missing() {
    local missing=()
    command -v smtp-sink >/dev/null || missing+=(postfix)
    command -v opendkim >/dev/null || missing+=(opendkim)
    command -v opendkim-genkey >/dev/null || missing+=(opendkim-tools)
    if [[ " $SYSTEMS " == *"-pg"* ]] && ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
        missing+=(postgresql)
    fi
    ((${#missing[@]} == 0)) && return
    say "installing ${missing[*]} from Debian's packages"
    if [[ " ${missing[*]} " == *" postfix "* ]]; then
        # The bench runs its own Postfix instance; the system's stays unconfigured and stopped.
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

# Builds the load generator and Sluice (release) and copies both into the run's folder: a
# target folder shared with other builds may be rebuilt under us while the bench runs.
build() {
    say "building the load generator and sluice (cargo bench --bench relay --no-run)"
    local executables
    executables=$(cd "$REPO" && cargo bench --bench relay --no-run --message-format=json-render-diagnostics |
        grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//; s/"$//')
    local relay sluice
    relay=$(grep '/relay-[0-9a-f]*$' <<<"$executables" | tail -n 1)
    sluice=$(grep '/sluice$' <<<"$executables" | tail -n 1)
    [[ -x $relay && -x $sluice ]] || die "cargo gave no relay bench or sluice binary"
    cp "$relay" "$WORK/relay"
    cp "$sluice" "$WORK/sluice"
}

# --- processes: started here, stopped here ------------------------------------------------

STARTED_PIDS=()
POSTFIX_DIRS=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for dir in "${POSTFIX_DIRS[@]}"; do
        postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${WORK:-} ]]; then
        if [[ $KEEP == 1 ]]; then
            say "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }

wait_for_port() {
    local port=$1 what=$2
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    die "$what did not listen on 127.0.0.1:$port within a minute"
}

# Fails when a process of ours listens anywhere but on 127.0.0.1.
check_loopback_only() {
    local pid listening
    for pid in "$@"; do
        listening=$(ss -ltnupH | grep "pid=$pid," | awk '{print $5}' | grep -v '^127\.0\.0\.1:' || true)
        [[ -z $listening ]] || die "process $pid listens on $listening"
    done
}

# Stops a process of ours as Ctrl-C would, then with TERM if it is still there after 10 s.
stop_pid() {
    local pid=$1
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

fill() { # TEMPLATE OUT NAME=VALUE...: @NAME@ -> VALUE
    local template=$1 out=$2 expression=()
    shift 2
    for pair in "$@"; do
        expression+=(-e "s|@${pair%%=*}@|${pair#*=}|g")
    done
    sed "${expression[@]}" "$template" >"$out"
}

# DIR MILTERS: starts an instance; its master's pid in POSTFIX_MASTER (not echoed: a command
# substitution's subshell would lose POSTFIX_DIRS, and cleanup with it).
start_postfix() {
    local dir=$1 milters=$2
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    chown postfix "$dir/data"
    fill "$TEMPLATES/main.cf" "$dir/etc/main.cf" DIR="$dir" SINK_PORT="$SINK_PORT" MILTERS="$milters"
    fill "$TEMPLATES/master.cf" "$dir/etc/master.cf" SMTP_PORT="$POSTFIX_PORT"
    POSTFIX_DIRS+=("$dir")
    # Postfix reports to syslog only unless stderr is a terminal; its own log is $dir/maillog.
    postfix -c "$dir/etc" start >&2 || die "postfix did not start: see $dir/maillog"
    wait_for_port "$POSTFIX_PORT" postfix
    # The pid file holds the number right-aligned; read drops the spaces.
    read -r POSTFIX_MASTER <"$dir/queue/pid/master.pid"
}

stop_postfix() {
    local dir=$1
    postfix -c "$dir/etc" stop >&2
    local remaining=()
    for kept in "${POSTFIX_DIRS[@]}"; do
        [[ $kept == "$dir" ]] || remaining+=("$kept")
    done
    POSTFIX_DIRS=("${remaining[@]}")
    # Until the old master has let go of the port.
    while ! port_free "$POSTFIX_PORT"; do sleep 0.1; done
}

# --- measuring ----------------------------------------------------------------------------

RESULTS=()

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# NAME ADDR AUTH PIDS [DATABASE]: warm-up, ROUNDS rounds, one row of medians in RESULTS. With
# DATABASE (a database of the run's PostgreSQL), its server's CPU and statements too.
measure() {
    local name=$1 addr=$2 auth=$3 pids=$4 database=${5:-}
    local options=(--sink-counter "$WORK/sink.count" --sessions "$SESSIONS" --clock-ticks "$(getconf CLK_TCK)")
    [[ -n $auth ]] && options+=(--auth "$auth")
    [[ -n $pids ]] && options+=(--cpu-of "$pids")
    [[ -n $database ]] && options+=(--db-cpu-of "$POSTGRES_PID")
    [[ -n $database ]] && pg_sql "$database" "SELECT pg_stat_statements_reset()" >/dev/null
    local conflicts_before=0
    [[ -n $database ]] && conflicts_before=$(postgres_conflicts)
    say "== $name: warm-up of $WARM_UP messages"
    "$WORK/relay" load "$addr" "$WARM_UP" "${options[@]}" >/dev/null
    local rounds=()
    for round in $(seq 1 "$ROUNDS"); do
        local line
        line=$("$WORK/relay" load "$addr" "$MESSAGES" "${options[@]}")
        say "   round $round: $line (load average $(cut -d' ' -f1 /proc/loadavg))"
        rounds+=("$line")
    done
    # One field per line first: a pattern over the whole line would take db_cpu_ms for cpu_ms.
    field() { printf '%s\n' "${rounds[@]}" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    local rate cpu p50 p99
    rate=$(field rate | median)
    p50=$(field p50_ms | median)
    p99=$(field p99_ms | median)
    if [[ -n $pids ]]; then
        cpu=$(printf '%.2f ms' "$(field cpu_ms | median)")
    else
        cpu="–"
    fi
    if [[ -n $database ]]; then
        local statements
        statements=$(pg_sql "$database" "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
        local sent=$((WARM_UP + ROUNDS * MESSAGES))
        cpu+=$(printf ' + %.2f ms in PostgreSQL, %.1f statements per message' "$(field db_cpu_ms | median)" \
            "$(awk -v s="$statements" -v m="$sent" 'BEGIN { print s / m }')")
        say "   transactions PostgreSQL refused for a conflict (serialization failures, deadlocks):" \
            "$(($(postgres_conflicts) - conflicts_before))"
        # Where the statements go: the most called, per message sent.
        pg_sql "$database" "SELECT round(calls::numeric / $sent, 2) || ' ' || regexp_replace(query, '\s+', ' ', 'g')
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY calls DESC LIMIT 40" >"$WORK/statements-$database.txt"
        say "   statements per message, most called first: $WORK/statements-$database.txt (KEEP=1 keeps it)"
    fi
    RESULTS+=("$(printf '| %s | %.0f | %s | %.1f / %.1f ms |' "$name" "$rate" "$cpu" "$p50" "$p99")")
}

run_ceiling() {
    measure "generator → sink (ceiling)" "127.0.0.1:$SINK_PORT" "" ""
}

run_postfix() {
    start_postfix "$WORK/postfix" ""
    check_loopback_only "$POSTFIX_MASTER"
    measure "Postfix relay" "127.0.0.1:$POSTFIX_PORT" "" "$POSTFIX_MASTER"
    stop_postfix "$WORK/postfix"
}

run_opendkim() {
    local dir=$WORK/opendkim
    mkdir -p "$dir"
    opendkim-genkey -b 2048 -d shop.example -s bench -D "$dir"
    fill "$TEMPLATES/opendkim.conf" "$dir/opendkim.conf" DIR="$dir" MILTER_PORT="$MILTER_PORT"
    chown -R opendkim:opendkim "$dir"
    opendkim -f -x "$dir/opendkim.conf" 2>"$dir/log" &
    local milter=$!
    STARTED_PIDS+=("$milter")
    wait_for_port "$MILTER_PORT" opendkim
    start_postfix "$WORK/postfix-opendkim" "inet:127.0.0.1:$MILTER_PORT"
    check_loopback_only "$POSTFIX_MASTER" "$milter"
    measure "Postfix + OpenDKIM (RSA-2048)" "127.0.0.1:$POSTFIX_PORT" "" "$POSTFIX_MASTER,$milter"
    stop_postfix "$WORK/postfix-opendkim"
    stop_pid "$milter"
}

# NAME FLOW: a data folder set up with that flow, `sluice serve` on it.
run_sluice() {
    local name=$1 flow=$2
    local data=$WORK/sluice-$flow login
    login=$("$WORK/relay" set-up "$data" "$flow")
    fill "$TEMPLATES/sluice.toml" "$data/bench.toml" SMTP_PORT="$SLUICE_PORT" SINK_PORT="$SINK_PORT"
    "$WORK/sluice" serve --data "$data" --config "$data/bench.toml" >"$data/serve.log" 2>&1 &
    local server=$!
    STARTED_PIDS+=("$server")
    wait_for_port "$SLUICE_PORT" sluice
    check_loopback_only "$server"
    measure "$name" "127.0.0.1:$SLUICE_PORT" "${login/ /:}" "$server"
    stop_pid "$server"
}

# --- PostgreSQL: a cluster of the run's own ------------------------------------------------

POSTGRES_PID=
POSTGRES_SOCKET=

# Starts the cluster once (initdb in the run's folder, as the postgres user, listening on a
# Unix socket only); POSTGRES_PID is the postmaster's (setpriv execs, so $! is postgres).
start_postgres() {
    [[ -n $POSTGRES_PID ]] && return
    local bin dir=$WORK/postgres
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    mkdir -p "$dir/data" "$dir/socket"
    chown -R postgres:postgres "$dir"
    setpriv --reuid=postgres --regid=postgres --init-groups \
        "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 ||
        die "initdb failed: see $dir/initdb.log"
    local setting settings=()
    for setting in ${POSTGRES_SETTINGS:-}; do
        settings+=(-c "$setting")
    done
    setpriv --reuid=postgres --regid=postgres --init-groups \
        "$bin/postgres" -D "$dir/data" -k "$dir/socket" -c listen_addresses= \
        -c shared_preload_libraries=pg_stat_statements -c max_connections=200 \
        "${settings[@]}" >"$dir/log" 2>&1 &
    POSTGRES_PID=$!
    STARTED_PIDS+=("$POSTGRES_PID")
    POSTGRES_SOCKET=$dir/socket
    for _ in $(seq 1 600); do
        "$bin/pg_isready" -q -h "$POSTGRES_SOCKET" && break
        sleep 0.1
    done
    "$bin/pg_isready" -q -h "$POSTGRES_SOCKET" || die "PostgreSQL did not start: see $dir/log"
    pg_sql postgres "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
}

# How many transactions the run's PostgreSQL has refused for a conflict so far (its log).
postgres_conflicts() {
    grep -c -E 'could not serialize access|deadlock detected' "$WORK/postgres/log" || true
}

pg_sql() { # DATABASE SQL
    psql -X -q -t -A -h "$POSTGRES_SOCKET" -U postgres -d "$1" -c "$2"
}

# NAME FLOW NODES: a database and a data folder set up with that flow, NODES `sluice serve`
# processes over the database, the generator's sessions split between them.
run_sluice_postgres() {
    local name=$1 flow=$2 nodes=$3
    start_postgres
    local database=sluice_${flow//-/_}_$nodes
    pg_sql postgres "CREATE DATABASE $database" >/dev/null
    pg_sql "$database" "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
    local url="host=$POSTGRES_SOCKET user=postgres dbname=$database"
    local data=$WORK/sluice-pg-$flow-$nodes login
    login=$("$WORK/relay" set-up "$data" "$flow" --store-url "$url")
    local pids=() addrs=() node port node_data
    for node in $(seq 1 "$nodes"); do
        port=$((node == 1 ? SLUICE_PORT : SLUICE_PORT_2))
        node_data=$data-node$node
        mkdir -p "$node_data/keys"
        cp "$data/keys/master.key" "$node_data/keys/"
        fill "$TEMPLATES/sluice.toml" "$node_data/bench.toml" SMTP_PORT="$port" SINK_PORT="$SINK_PORT"
        printf '[store]\nurl = "%s"\n[cluster]\nnode_name = "node-%s"\n' "$url" "$node" >>"$node_data/bench.toml"
        "$WORK/sluice" serve --data "$node_data" --config "$node_data/bench.toml" >"$node_data/serve.log" 2>&1 &
        pids+=("$!")
        STARTED_PIDS+=("$!")
        addrs+=("127.0.0.1:$port")
        wait_for_port "$port" "sluice node $node"
    done
    check_loopback_only "${pids[@]}"
    measure "$name" "$(IFS=,; echo "${addrs[*]}")" "${login/ /:}" "$(IFS=,; echo "${pids[*]}")" "$database"
    for pid in "${pids[@]}"; do
        stop_pid "$pid"
    done
}

# --- the run ------------------------------------------------------------------------------

install_missing
command -v cargo >/dev/null || die "cargo is needed to build the load generator and sluice"
for port in "$SINK_PORT" "$POSTFIX_PORT" "$MILTER_PORT" "$SLUICE_PORT" "$SLUICE_PORT_2"; do
    port_free "$port" || die "127.0.0.1:$port is in use: set BASE_PORT"
done

WORK=$(mktemp -d -t relay-bench.XXXXXX)
# Postfix's and OpenDKIM's unprivileged users read their configuration in here.
chmod 755 "$WORK"
build

# The sink counts messages (-c) on its standard output, which the generator reads.
smtp-sink -c -u nobody "127.0.0.1:$SINK_PORT" 256 >"$WORK/sink.count" 2>"$WORK/sink.log" &
STARTED_PIDS+=("$!")
wait_for_port "$SINK_PORT" smtp-sink
check_loopback_only "$!"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for system in $SYSTEMS; do
    case $system in
    ceiling) run_ceiling ;;
    postfix) run_postfix ;;
    opendkim) run_opendkim ;;
    sluice-bare) run_sluice "Sluice, flow without steps" no-steps ;;
    sluice-flow) run_sluice "Sluice, template → tracking → archive → dkim, two RSA-2048 signatures" built-in ;;
    sluice-pg) run_sluice_postgres "Sluice on PostgreSQL, one node, flow without steps" no-steps 1 ;;
    sluice-pg2) run_sluice_postgres "Sluice on PostgreSQL, two nodes, flow without steps" no-steps 2 ;;
    sluice-flow-pg) run_sluice_postgres "Sluice on PostgreSQL, one node, the built-in flow" built-in 1 ;;
    *) die "unknown system $system (ceiling postfix opendkim sluice-bare sluice-flow sluice-pg sluice-pg2 sluice-flow-pg)" ;;
    esac
done

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
printf '\n%s, %s cores (%s), load average %s before, %s after\n' \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" "$cpu_model" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s messages x %s rounds, %s sessions, %s byte message; medians of the rounds\n\n' \
    "$MESSAGES" "$ROUNDS" "$SESSIONS" "$("$WORK/relay" message-size)"
printf '| system | msg/s | CPU per message in the system | ack p50 / p99 |\n|---|---|---|---|\n'
printf '%s\n' "${RESULTS[@]}"
