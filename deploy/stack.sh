#!/usr/bin/env bash
# Local Kafka (KRaft, single node, SASL_SSL + ACLs) + PostgreSQL for dev and
# integration tests, without Docker. All state lives under .local/ (gitignored).
#
#   bash deploy/stack.sh up|down|status|wipe
#
# Progress goes to stderr and `up` prints only export lines on stdout, so
#   eval "$(bash deploy/stack.sh up)"
# configures the current shell: bootstrap, protocol, CA file, the directory of
# principal credentials, the test harness's and the operator's credentials files.
# Ports: FR_KAFKA_PORT (SASL_SSL clients), FR_KAFKA_CONTROLLER_PORT (mutual TLS),
# FR_KAFKA_PLAINTEXT_PORT (optional, benchmarks only), FR_PG_PORT.
# Run deploy/install.sh first on a fresh machine.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL=$ROOT/.local
PY=$ROOT/.venv/bin/python
HOST=127.0.0.1

KAFKA_PORT=${FR_KAFKA_PORT:-19092}
CONTROLLER_PORT=${FR_KAFKA_CONTROLLER_PORT:-19093}
PLAINTEXT_PORT=${FR_KAFKA_PLAINTEXT_PORT:-}
PG_PORT=${FR_PG_PORT:-15432}
KAFKA_START_TIMEOUT=${FR_KAFKA_START_TIMEOUT:-90}

K_DIR=$LOCAL/kafka
K_LIBS=$K_DIR/libs
K_DATA=$K_DIR/data
K_LOGS=$K_DIR/logs
K_PROPS=$K_DIR/server.properties
K_PID=$K_DIR/kafka.pid
K_CLUSTER_ID=$K_DIR/cluster.id
K_SCRAM_STAMP=$K_DIR/scram.formatted
K_PRINCIPALS=$K_DIR/principals
K_CA=$K_DIR/tls/ca.pem
K_TEMPLATE=$ROOT/deploy/kafka/server.properties.template
K_LOG4J=$ROOT/deploy/kafka/log4j2.xml

PG_DIR=$LOCAL/pg
PG_DATA=$PG_DIR/data
PG_LOGS=$PG_DIR/logs
PG_RUN=$PG_DIR/run
PG_USER=frontier
PG_PASSWORD=frontier
PG_DB=frontier_review

mkdir -p "$LOCAL"

say() { printf '%s\n' "$*" >&2; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

port_open() {
    # Bash's /dev/tcp avoids depending on nc/ss; loopback refuses instantly.
    timeout 2 bash -c ": </dev/tcp/$HOST/$1" 2>/dev/null
}

# --- Kafka -------------------------------------------------------------------

kafka_java() { java -cp "$K_LIBS/*" "$@"; }

# Prints the broker pid if the pid file names a live kafka.Kafka process.
# Checking the command line (not just kill -0) guards against pid reuse and
# zombies (a zombie's cmdline is empty), which matter when PID 1 does not reap.
kafka_pid() {
    local pid
    [[ -f $K_PID ]] || return 1
    pid=$(<"$K_PID")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    grep -qa 'kafka\.Kafka' "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

# Broker port of the running instance: it keeps the ports it was started with
# even if FR_KAFKA_PORT changed since.
kafka_running_port() {
    sed -n 's|^listeners=[A-Z]*://[^:]*:\([0-9]*\).*|\1|p' "$K_PROPS" 2>/dev/null || true
}

# A broker started before security (PLAINTEXT only) keeps running as it is until
# down/up; clients must then be told so.
kafka_running_secured() { grep -q '^listener.security.protocol.map=CLIENT:SASL_SSL' "$K_PROPS" 2>/dev/null; }
KAFKA_SECURED=1

kafka_tail_logs() {
    local f
    for f in "$K_LOGS/server.out" "$K_LOGS/server.log"; do
        [[ -s $f ]] || continue
        say "---- last lines of $f ----"
        tail -n 25 "$f" >&2
    done
}

# Ready = the port accepts connections AND the broker answers API requests
# (metadata via aiokafka's admin client); an open port alone is not enough
# because KRaft opens listeners before the broker is unfenced.
# Ready = the broker answers an authenticated API request (deploy/local_kafka.py);
# after a format also = its first metadata snapshot exists (see the template).
kafka_wait_ready() {
    local pid=$1 port=$2 rc=0 snapshot=()
    [[ -x $PY ]] || die "kafka: .venv missing; run: bash deploy/install.sh"
    [[ ${3:-} == formatted ]] && snapshot=(--snapshot-in "$K_DATA")
    if kafka_running_secured; then
        (cd "$ROOT" && "$PY" -m deploy.local_kafka wait-ready --home "$K_DIR" \
            --bootstrap "$HOST:$port" --pid "$pid" --timeout "$KAFKA_START_TIMEOUT" \
            "${snapshot[@]}") || rc=$?
    else
        local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
        rc=1
        while ((SECONDS < deadline)); do
            kafka_pid >/dev/null || { rc=2; break; }
            if port_open "$port"; then rc=0; break; fi
            sleep 1
        done
    fi
    case $rc in
        0) return 0 ;;
        2) kafka_tail_logs; die "kafka: broker exited during startup" ;;
        *) kafka_tail_logs; die "kafka: not ready on :$port after ${KAFKA_START_TIMEOUT}s" ;;
    esac
}

kafka_up() {
    local pid port
    if pid=$(kafka_pid); then
        port=$(kafka_running_port)
        kafka_wait_ready "$pid" "$port"
        say "kafka: already running on :$port (pid $pid)"
        [[ $port == "$KAFKA_PORT" ]] || say "kafka: note: FR_KAFKA_PORT=$KAFKA_PORT ignored until down/up"
        KAFKA_PORT=$port
        if ! kafka_running_secured; then
            KAFKA_SECURED=0
            say "kafka: WARNING: this broker was started before security (PLAINTEXT, no ACLs);"
            say "kafka:   run 'bash deploy/stack.sh wipe && bash deploy/stack.sh up' to secure it"
        fi
        return 0
    fi
    rm -f "$K_PID"

    command -v java >/dev/null 2>&1 || die "java not found; run: bash deploy/install.sh"
    compgen -G "$K_LIBS/kafka_2.13-*.jar" >/dev/null || die "Kafka jars missing in $K_LIBS; run: bash deploy/install.sh"
    [[ -x $PY ]] || die "kafka: .venv missing; run: bash deploy/install.sh"
    for port in "$KAFKA_PORT" "$CONTROLLER_PORT" $PLAINTEXT_PORT; do
        port_open "$port" && die "kafka: port $port is taken by another process (not ours: no live pid in $K_PID)"
    done
    if [[ -f $K_DATA/meta.properties && ! -f $K_SCRAM_STAMP ]]; then
        die "kafka: $K_DATA was formatted before security (no SCRAM credentials in it); run 'bash deploy/stack.sh wipe' first"
    fi

    mkdir -p "$K_DATA" "$K_LOGS"
    # Rendered every start so FR_* port overrides apply; the template is the source.
    # Also makes the TLS material and the super users' credentials the first time.
    (cd "$ROOT" && "$PY" -m deploy.local_kafka render --home "$K_DIR" --template "$K_TEMPLATE" \
        --out "$K_PROPS" --client-port "$KAFKA_PORT" --controller-port "$CONTROLLER_PORT" \
        --plaintext-port "${PLAINTEXT_PORT:-0}" --log-dirs "$K_DATA") ||
        die "kafka: could not render $K_PROPS"

    if [[ ! -s $K_CLUSTER_ID ]]; then
        kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1 >"$K_CLUSTER_ID"
        [[ -s $K_CLUSTER_ID ]] || die "kafka: StorageTool random-uuid produced no id"
    fi
    local formatted=""
    # Formatting is a one-time step per data dir; meta.properties marks it done. It
    # also writes the super users' SCRAM credentials (broker, operator) into the
    # metadata log: the first credential cannot be created over an authenticated
    # listener. They travel in an argument file (mode 0600), not on the command line.
    if [[ ! -f $K_DATA/meta.properties ]]; then
        say "kafka: formatting $K_DATA (cluster id $(<"$K_CLUSTER_ID"))"
        local args
        args=$(cd "$ROOT" && "$PY" -m deploy.local_kafka format-args --home "$K_DIR" \
            --cluster-id "$(<"$K_CLUSTER_ID")" --config "$K_PROPS")
        kafka_java -Dlog4j2.configurationFile="$K_LOG4J" -Dkafka.logs.dir="$K_LOGS" \
            "@$args" >"$K_LOGS/format.log" 2>&1 ||
            { rm -f "$args"; cat "$K_LOGS/format.log" >&2; die "kafka: storage format failed"; }
        rm -f "$args"
        touch "$K_SCRAM_STAMP"
        formatted=formatted
    fi

    say "kafka: starting on :$KAFKA_PORT (SASL_SSL; controller :$CONTROLLER_PORT${PLAINTEXT_PORT:+; plaintext :$PLAINTEXT_PORT})"
    local t0=$SECONDS
    # setsid+nohup: the broker must outlive this script and the terminal.
    # Started from a non-interactive shell, setsid execs without forking, so $!
    # is the JVM's pid (verified by kafka_pid below). 9>&- keeps the stack lock
    # from being inherited by the broker, which would hold it forever.
    setsid nohup java -Xms256m -Xmx512m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$K_LOG4J" -Dkafka.logs.dir="$K_LOGS" \
        -cp "$K_LIBS/*" kafka.Kafka "$K_PROPS" \
        >"$K_LOGS/server.out" 2>&1 </dev/null 9>&- &
    echo $! >"$K_PID"
    sleep 0.5
    pid=$(kafka_pid) || { kafka_tail_logs; die "kafka: broker did not start (see $K_LOGS)"; }
    kafka_wait_ready "$pid" "$KAFKA_PORT" "$formatted"
    say "kafka: ready on :$KAFKA_PORT (pid $pid, up in $((SECONDS - t0))s)"
}

kafka_down() {
    local pid i
    if ! pid=$(kafka_pid); then
        rm -f "$K_PID"
        say "kafka: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # Controlled shutdown flushes logs; give it 30 s before forcing.
    for ((i = 0; i < 60; i++)); do
        kafka_pid >/dev/null || break
        sleep 0.5
    done
    if kafka_pid >/dev/null; then
        say "kafka: still running after 30s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$K_PID"
    say "kafka: stopped (pid $pid)"
}

kafka_status() {
    local pid port
    if pid=$(kafka_pid) && port=$(kafka_running_port) && port_open "$port"; then
        say "kafka: running on :$port (pid $pid)"
        return 0
    fi
    if [[ -n ${pid:-} ]]; then
        say "kafka: process $pid alive but port ${port:-?} not accepting connections"
    else
        say "kafka: down"
    fi
    return 1
}

# --- PostgreSQL --------------------------------------------------------------

pg_bin() {
    # shellcheck disable=SC2012  # glob of fixed Debian paths, no odd file names
    { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -1
}
PG_BIN=$(pg_bin)

# Postgres refuses to run as root, so as root every server-side command runs as
# the `postgres` OS user (created by the Debian package). `cd /` because
# pg_ctl/initdb complain when the caller's cwd is unreadable for that user.
as_pg() {
    if ((EUID == 0)); then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_running() {
    [[ -n $PG_BIN && -f $PG_DATA/postmaster.pid ]] &&
        as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

# Line 4 of postmaster.pid is the port the running server actually uses.
pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true; }

# The postgres user must be able to traverse every ancestor of .local/pg.
# Inside the repo we fix it (o+x only); outside we refuse to touch system dirs.
pg_fix_traversal() {
    local d=$PG_DIR
    while [[ $d != / ]]; do
        d=$(dirname "$d")
        as_pg test -x "$d" && continue
        if [[ $d == "$ROOT" || $d == "$ROOT"/* ]]; then
            chmod o+x "$d"
        else
            die "postgres: user 'postgres' cannot enter $d (chmod o+x it, or clone the repo elsewhere, e.g. not under /root)"
        fi
    done
}

pg_psql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U postgres -d postgres "$@"
}

pg_up() {
    [[ -n $PG_BIN && -x $PG_BIN/initdb ]] || die "PostgreSQL server binaries not found; run: bash deploy/install.sh"
    if ((EUID == 0)) && ! id postgres >/dev/null 2>&1; then
        die "running as root but there is no 'postgres' OS user to run the server as"
    fi

    if pg_running; then
        local port
        port=$(pg_running_port)
        say "postgres: already running on :$port"
        [[ $port == "$PG_PORT" ]] || say "postgres: note: FR_PG_PORT=$PG_PORT ignored until down/up"
        PG_PORT=$port
    else
        port_open "$PG_PORT" && die "postgres: port $PG_PORT is taken by another process"
        mkdir -p "$PG_DATA" "$PG_LOGS" "$PG_RUN"
        if ((EUID == 0)); then
            chown -R postgres:postgres "$PG_DIR"
            pg_fix_traversal
        fi
        chmod 700 "$PG_DATA"

        if [[ ! -f $PG_DATA/PG_VERSION ]]; then
            say "postgres: initdb $PG_DATA"
            # C locale: deterministic collation in tests, no dependency on generated locales.
            as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-locale \
                >"$PG_LOGS/initdb.log" 2>&1 ||
                { cat "$PG_LOGS/initdb.log" >&2; die "postgres: initdb failed"; }
            echo "include_if_exists = 'frontier.conf'" >>"$PG_DATA/postgresql.conf"
        fi

        # Regenerated on every start so FR_PG_PORT overrides apply.
        cat >"$PG_DATA/frontier.conf" <<EOF
# Generated by deploy/stack.sh on every start; edit the script, not this file.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
max_connections = 200
# fsync stays on (the default): tests should see real durability behaviour.
EOF
        cat >"$PG_DATA/pg_hba.conf" <<'EOF'
# DEV ONLY (written by deploy/stack.sh): trust auth, loopback and local socket only.
# Anyone on this machine can connect as any role. Never use this outside dev/test.
local   all  all                 trust
host    all  all  127.0.0.1/32   trust
host    all  all  ::1/128        trust
EOF
        ((EUID == 0)) && chown postgres:postgres "$PG_DATA/frontier.conf" "$PG_DATA/pg_hba.conf"

        say "postgres: starting on :$PG_PORT"
        # 9>&-: see kafka_up; the postmaster must not inherit the stack lock.
        as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOGS/postgres.log" -w -t 60 >/dev/null 9>&- ||
            { tail -n 25 "$PG_LOGS/postgres.log" >&2; die "postgres: failed to start"; }
        say "postgres: ready on :$PG_PORT"
    fi

    # Role and database are checked, not assumed: a wiped or half-created
    # cluster converges to the same state.
    if [[ $(pg_psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'") != 1 ]]; then
        pg_psql -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD' CREATEDB"
        say "postgres: created role $PG_USER"
    fi
    if [[ $(pg_psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") != 1 ]]; then
        pg_psql -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
        say "postgres: created database $PG_DB"
    fi
}

pg_down() {
    if pg_running; then
        as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null
        say "postgres: stopped"
    else
        say "postgres: not running"
    fi
}

pg_status() {
    local port
    if pg_running && port=$(pg_running_port) && "$PG_BIN/pg_isready" -q -h "$HOST" -p "$port"; then
        say "postgres: running on :$port"
        return 0
    fi
    say "postgres: down"
    return 1
}

# --- project topics ------------------------------------------------------------

create_topics() {
    local why
    if [[ ! -x $PY ]]; then
        say "topics: skipped (.venv/bin/python missing; run deploy/install.sh)"
        return 0
    fi
    # find_spec instead of importing: only asks "is it there yet" (the module is
    # being written concurrently); a broken module still fails loudly below.
    if ! why=$(cd "$ROOT" && "$PY" -c '
import importlib.util, sys
try:
    ok = importlib.util.find_spec("services.runtime.topics") is not None
except ImportError as exc:
    print(exc); sys.exit(1)
sys.exit(0 if ok else 1)' 2>&1); then
        say "topics: skipped (services.runtime.topics not importable${why:+: $why})"
        return 0
    fi
    say "topics: python -m services.runtime.topics create"
    if ! (cd "$ROOT" && admin_env "$PY" -m services.runtime.topics create) >&2; then
        say "topics: ERROR: 'python -m services.runtime.topics create' failed (Kafka and Postgres are up)"
        return 1
    fi
    say "topics: done"
}

# Every agency service, the test harness: a SCRAM credential each (file in
# $K_PRINCIPALS, made once), then the registry's ACLs for all principals.
bootstrap_principals() {
    ((KAFKA_SECURED)) || return 0
    say "principals: python -m services.runtime.principals bootstrap"
    if ! (cd "$ROOT" && admin_env "$PY" -m services.runtime.principals bootstrap \
        --dir "$K_PRINCIPALS") >&2; then
        say "principals: ERROR: 'python -m services.runtime.principals bootstrap' failed"
        return 1
    fi
}

# The operator's connection, for admin tooling only.
admin_env() {
    if ((KAFKA_SECURED)); then
        env FR_KAFKA_BOOTSTRAP="$HOST:$KAFKA_PORT" FR_KAFKA_SECURITY_PROTOCOL=SASL_SSL \
            FR_KAFKA_CA_FILE="$K_CA" FR_KAFKA_CREDENTIALS_FILE="$K_PRINCIPALS/operator.json" \
            FR_DATABASE_URL="$(database_url)" "$@"
    else
        env FR_KAFKA_BOOTSTRAP="$HOST:$KAFKA_PORT" FR_KAFKA_SECURITY_PROTOCOL=PLAINTEXT \
            FR_DATABASE_URL="$(database_url)" "$@"
    fi
}

database_url() { echo "postgresql://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB"; }

# --- commands -------------------------------------------------------------------

cmd_up() {
    local rc=0
    pg_up
    kafka_up
    create_topics || rc=1
    bootstrap_principals || rc=1
    # stdout on purpose: eval "$(bash deploy/stack.sh up)". Printed even when
    # topic creation failed, since the servers themselves are usable. The shell
    # gets the test harness's principal; admin tools take the operator's file
    # explicitly (FR_KAFKA_CREDENTIALS_FILE=$FR_KAFKA_OPERATOR_CREDENTIALS_FILE ...),
    # and deploy/services.sh gives each service its own.
    echo "export FR_KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT"
    if ((KAFKA_SECURED)); then
        echo "export FR_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
        echo "export FR_KAFKA_CA_FILE=$K_CA"
        echo "export FR_KAFKA_PRINCIPALS_DIR=$K_PRINCIPALS"
        echo "export FR_KAFKA_CREDENTIALS_FILE=$K_PRINCIPALS/test.json"
        echo "export FR_KAFKA_OPERATOR_CREDENTIALS_FILE=$K_PRINCIPALS/operator.json"
        if [[ -n $PLAINTEXT_PORT ]] && grep -q "^listeners=.*PLAINTEXT://$HOST:$PLAINTEXT_PORT" "$K_PROPS"; then
            echo "export FR_KAFKA_PLAINTEXT_BOOTSTRAP=$HOST:$PLAINTEXT_PORT"
        fi
    else
        echo "export FR_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"
    fi
    echo "export FR_DATABASE_URL=$(database_url)"
    # exit, not return: a failing function call would trip the ERR trap.
    exit "$rc"
}

cmd_down() {
    kafka_down
    pg_down
}

cmd_status() {
    local rc=0
    kafka_status || rc=1
    pg_status || rc=1
    return "$rc"
}

cmd_wipe() {
    cmd_down
    # Jars (libs/) are downloads, not state: keep them.
    # TLS material and principal credentials are kept: the next format writes the
    # super users' credentials again and `up` re-creates the others from their files.
    rm -rf "$K_DATA" "$K_LOGS" "$K_PROPS" "$K_PID" "$K_CLUSTER_ID" "$K_SCRAM_STAMP" "$PG_DIR"
    say "wipe: removed Kafka and Postgres data under $LOCAL"
}

# up/down/wipe serialize on a lock: test runners may call `up` concurrently.
lock() {
    exec 9>"$LOCAL/stack.lock"
    flock -w 180 9 || die "another deploy/stack.sh still holds $LOCAL/stack.lock after 180s"
}

case ${1:-} in
    up)
        lock
        cmd_up
        ;;
    down)
        lock
        cmd_down
        ;;
    status) cmd_status || exit 1 ;;
    wipe)
        lock
        cmd_wipe
        ;;
    *)
        say "usage: $0 up|down|status|wipe"
        exit 2
        ;;
esac
