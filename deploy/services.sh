#!/usr/bin/env bash
# Start/stop the frontier-review services as local background processes.
#
#   bash deploy/services.sh start|stop|status [name ...]
#
# A name is a service (`python -m services.<name>`), a module of one
# (evaluation.demo_model: the demo lab model server; runtime.asyncapi_docs: the
# AsyncAPI documents as web pages), or `enforcer`: a lab's
# enforcement point, the decision API sidecar (`frontier-lab decision-api`).
# start's default: every services/<name>/__main__.py except the runtime package;
# stop's and status's: those and whatever else was started here.
# Logs in .local/logs/<name>.log, traces appended to .local/traces.jsonl
# (FR_OTEL_EXPORTER=jsonl unless set).
#
# Kafka: on the secured stack each service connects as its own principal,
# FR_KAFKA_CREDENTIALS_FILE=$FR_KAFKA_PRINCIPALS_DIR/<service>.json; a module of
# a service gets none (no Kafka).
# HTTP: FR_<NAME>_HTTP_PORT (e.g. FR_INTAKE_HTTP_PORT=18301) is that service's
# FR_HTTP_PORT (unset: the service's default); the demo model server listens on
# FR_DEMO_MODEL_PORT (8900), the AsyncAPI pages on FR_ASYNCAPI_DOCS_PORT (8306).
# A port another process holds stops the start.
# The enforcer follows the lab FR_ENFORCER_LAB_ID's policy feed with the lab's
# Kafka credentials FR_ENFORCER_CREDENTIALS_FILE, answers callers listed in
# FR_ENFORCER_TOKENS_FILE, on FR_DECISION_API_PORT (8181).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN=.local/run
LOGS=.local/logs
mkdir -p "$RUN" "$LOGS"
export FR_OTEL_EXPORTER=${FR_OTEL_EXPORTER:-jsonl}

die() { echo "$*" >&2; exit 1; }

all_services() {
    for main in services/*/__main__.py; do
        name=$(basename "$(dirname "$main")")
        [[ $name == runtime ]] || echo "$name"
    done
}

# What identifies the process in its command line.
mark_of() { if [[ $1 == enforcer ]]; then echo decision-api; else echo "services.$1"; fi; }

# The command line, not kill -0: where PID 1 does not reap, a dead service
# lingers as a zombie that kill -0 still reports alive. Whole words only, so
# services.evaluation is not services.evaluation.demo_model.
alive() { [[ " $({ tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) " == *" $(mark_of "$2") "* ]]; }
running() { [[ -f $RUN/$1.pid ]] && alive "$(cat "$RUN/$1.pid")" "$1"; }
port_taken() { timeout 2 bash -c ": </dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# The command of $1 into CMD, its environment changes into ENV (env(1) arguments:
# its own principal and port, never the shell's), the port it binds into PORT.
plan() {
    ENV=(-u FR_HTTP_PORT)
    PORT=""
    case $1 in
        enforcer)
            ENV+=(FR_LAB_ID="${FR_ENFORCER_LAB_ID:?set FR_ENFORCER_LAB_ID}"
                FR_KAFKA_CREDENTIALS_FILE="${FR_ENFORCER_CREDENTIALS_FILE:?set FR_ENFORCER_CREDENTIALS_FILE}")
            PORT=${FR_DECISION_API_PORT:-8181}
            CMD=(.venv/bin/frontier-lab decision-api
                --tokens "${FR_ENFORCER_TOKENS_FILE:?set FR_ENFORCER_TOKENS_FILE}" --port "$PORT")
            ;;
        *.*)
            [[ -z ${FR_KAFKA_PRINCIPALS_DIR:-} ]] || ENV+=(-u FR_KAFKA_CREDENTIALS_FILE)
            CMD=(.venv/bin/python -m "services.$1")
            if [[ $1 == evaluation.demo_model ]]; then
                PORT=${FR_DEMO_MODEL_PORT:-8900}
                CMD+=(--port "$PORT")
            elif [[ $1 == runtime.asyncapi_docs ]]; then
                PORT=${FR_ASYNCAPI_DOCS_PORT:-8306}
                CMD+=(--port "$PORT")
            fi
            ;;
        *)
            if [[ -n ${FR_KAFKA_PRINCIPALS_DIR:-} ]]; then
                local credentials=$FR_KAFKA_PRINCIPALS_DIR/$1.json
                [[ -f $credentials ]] ||
                    die "$1: no Kafka credentials in $credentials (is $1 among the principals 'python -m services.runtime.principals bootstrap' makes?)"
                ENV+=(FR_KAFKA_CREDENTIALS_FILE="$credentials")
            fi
            local port_var="FR_${1^^}_HTTP_PORT"
            PORT=${!port_var:-}
            [[ -z $PORT ]] || ENV+=(FR_HTTP_PORT="$PORT")
            CMD=(.venv/bin/python -m "services.$1")
            ;;
    esac
}

start() {
    if running "$1"; then echo "$1: already running (pid $(cat "$RUN/$1.pid"))" >&2; return; fi
    plan "$1"
    if [[ -n $PORT ]] && port_taken "$PORT"; then
        die "$1: port $PORT is taken by another process (choose another: see deploy/services.sh)"
    fi
    setsid nohup env "${ENV[@]}" "${CMD[@]}" >>"$LOGS/$1.log" 2>&1 &
    echo $! >"$RUN/$1.pid"
    sleep 1
    running "$1" || { tail -n 30 "$LOGS/$1.log" >&2; die "$1: failed to start"; }
    echo "$1: started (pid $!${PORT:+, port $PORT}, log $LOGS/$1.log)" >&2
}

stop() {
    running "$1" || { rm -f "$RUN/$1.pid"; return; }
    local pid; pid=$(cat "$RUN/$1.pid")
    kill -TERM "$pid"  # graceful: in-flight handlers finish, nothing is lost
    for _ in $(seq 1 30); do alive "$pid" "$1" || break; sleep 1; done
    if alive "$pid" "$1"; then kill -KILL "$pid"; fi
    rm -f "$RUN/$1.pid"
    echo "$1: stopped" >&2
}

# Every service, and whatever else was started here and has a pid file.
known() {
    { all_services; for pid in "$RUN"/*.pid; do [[ -f $pid ]] && basename "$pid" .pid; done; } |
        awk '!seen[$0]++'
}

command=${1:-}; shift || true
names=("$@")
if ((${#names[@]} == 0)); then
    if [[ $command == start ]]; then mapfile -t names < <(all_services); else mapfile -t names < <(known); fi
fi
case $command in
    start) for n in "${names[@]}"; do start "$n"; done ;;
    stop) for n in "${names[@]}"; do stop "$n"; done ;;
    status)
        for n in "${names[@]}"; do
            if running "$n"; then echo "$n: running (pid $(cat "$RUN/$n.pid"))"; else echo "$n: stopped"; fi
        done ;;
    *) echo "usage: bash deploy/services.sh start|stop|status [name ...]" >&2; exit 2 ;;
esac
