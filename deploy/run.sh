#!/usr/bin/env bash
# Bring the whole system up on this machine and run the end-to-end scenario:
# install what is missing, start Kafka + PostgreSQL, create the topics, start
# every service (logs in .local/logs, traces in .local/traces.jsonl), then play
# a lab submitting a model and follow it through the review.
#
#   bash deploy/run.sh            # up + scenario (services keep running)
#   bash deploy/services.sh stop; bash deploy/services.sh stop evaluation.demo_model
#   bash deploy/stack.sh down
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
step() { printf '\n==> %s\n' "$*" >&2; }
trap 'printf "\nrun: FAILED at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

step "install"
bash deploy/install.sh
step "infrastructure up (Kafka, PostgreSQL, topics)"
eval "$(bash deploy/stack.sh up)"
export FR_KAFKA_BOOTSTRAP FR_DATABASE_URL
# Demo settings (local development only): a "day" of the review window lasts
# 1 s, and the demo lab model server speaks plain http on loopback :8900 with this
# key; endpoints must be public https hosts, so intake and evaluation allowlist it.
export FR_INTAKE_SECONDS_PER_DAY=${FR_INTAKE_SECONDS_PER_DAY:-1}
export FR_INTAKE_ENDPOINT_ALLOWLIST='["127.0.0.1:8900"]'
export FR_EVALUATION_ENDPOINT_ALLOWLIST='["127.0.0.1:8900"]'
export FR_RISK_SECONDS_PER_DAY=${FR_RISK_SECONDS_PER_DAY:-$FR_INTAKE_SECONDS_PER_DAY}
# The risk service signs its audit log; in production the key is a mounted secret.
[[ -f .local/risk/audit-key.pem ]] || .venv/bin/python -m services.risk.cli audit keygen
export DEMO_LAB_API_KEY=${DEMO_LAB_API_KEY:-demo-key}
# The web console (http://127.0.0.1:8305) admits holders of a token; the demo makes one.
export FR_CONSOLE_TOKENS_FILE=${FR_CONSOLE_TOKENS_FILE:-$ROOT/.local/console/tokens}
if [[ ! -s $FR_CONSOLE_TOKENS_FILE ]]; then
    mkdir -p "$(dirname "$FR_CONSOLE_TOKENS_FILE")"
    (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d " \n" >"$FR_CONSOLE_TOKENS_FILE")
fi
step "services and the demo lab model server"
bash deploy/services.sh start
bash deploy/services.sh start evaluation.demo_model
step "end-to-end scenario"
.venv/bin/python -m deploy.demo.scenario "$@"
