#!/usr/bin/env bash
# Start/stop the frontier-review services as local background processes.
#
#   bash deploy/services.sh start|stop|status [service ...]
#
# Each service runs `python -m services.<name>`; logs in .local/logs/<name>.log,
# traces appended to .local/traces.jsonl (FR_OTEL_EXPORTER=jsonl unless set).
# On the secured stack each service connects as its own Kafka principal:
# FR_KAFKA_CREDENTIALS_FILE=$FR_KAFKA_PRINCIPALS_DIR/<service>.json (the part of
# the name before the first dot; evaluation.demo_model gets none: no Kafka).
# Default: every services/<name>/__main__.py except the runtime package.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN=.local/run
LOGS=.local/logs
mkdir -p "$RUN" "$LOGS"
export FR_OTEL_EXPORTER=${FR_OTEL_EXPORTER:-jsonl}

all_services() {
    for main in services/*/__main__.py; do
        name=$(basename "$(dirname "$main")")
        [[ $name == runtime ]] || echo "$name"
    done
}

# The command line, not kill -0: where PID 1 does not reap, a dead service
# lingers as a zombie that kill -0 still reports alive.
alive() { grep -qa "services.$2" "/proc/$1/cmdline" 2>/dev/null; }
running() { [[ -f $RUN/$1.pid ]] && alive "$(cat "$RUN/$1.pid")" "$1"; }

# The environment a service starts with: its own principal, never the shell's.
principal_env() {
    [[ -n ${FR_KAFKA_PRINCIPALS_DIR:-} ]] || return 0
    if [[ $1 == *.* ]]; then
        echo "-u FR_KAFKA_CREDENTIALS_FILE"
    else
        echo "FR_KAFKA_CREDENTIALS_FILE=$FR_KAFKA_PRINCIPALS_DIR/$1.json"
    fi
}

start() {
    if running "$1"; then echo "$1: already running (pid $(cat "$RUN/$1.pid"))" >&2; return; fi
    # shellcheck disable=SC2046  # principal_env prints words for env, no globs
    setsid nohup env $(principal_env "$1") .venv/bin/python -m "services.$1" >>"$LOGS/$1.log" 2>&1 &
    echo $! >"$RUN/$1.pid"
    sleep 1
    running "$1" || { tail -n 30 "$LOGS/$1.log" >&2; echo "$1: failed to start" >&2; exit 1; }
    echo "$1: started (pid $!, log $LOGS/$1.log)" >&2
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

command=${1:-}; shift || true
names=("$@"); ((${#names[@]})) || mapfile -t names < <(all_services)
case $command in
    start) for n in "${names[@]}"; do start "$n"; done ;;
    stop) for n in "${names[@]}"; do stop "$n"; done ;;
    status)
        for n in "${names[@]}"; do
            if running "$n"; then echo "$n: running (pid $(cat "$RUN/$n.pid"))"; else echo "$n: stopped"; fi
        done ;;
    *) echo "usage: bash deploy/services.sh start|stop|status [service ...]" >&2; exit 2 ;;
esac
