#!/usr/bin/env bash
# Bring the whole system up on this machine and play one review end to end:
# install what is missing; start Kafka (secured) and PostgreSQL; the four services
# and the web console, the demo lab model server, the AsyncAPI pages and the lab's
# enforcement point (logs in .local/logs, traces in .local/traces.jsonl); then
# deploy/demo/scenario.py plays the lab, the agency's operator, two reviewers and a
# government subscriber, and ends with a summary. Everything keeps running afterwards.
#
#   bash deploy/run.sh
#   bash deploy/services.sh stop && bash deploy/stack.sh down      # stop it all
#
# Every port can be moved, so that two stacks run side by side (pass the same
# variables to the stop commands): FR_KAFKA_PORT, FR_KAFKA_CONTROLLER_PORT, FR_PG_PORT
# (deploy/stack.sh); FR_INTAKE_HTTP_PORT, FR_EVALUATION_HTTP_PORT, FR_RISK_HTTP_PORT,
# FR_ACCESS_HTTP_PORT, FR_CONSOLE_HTTP_PORT (8301..8305); FR_ASYNCAPI_DOCS_PORT (8306);
# FR_DEMO_MODEL_PORT (8900); FR_DECISION_API_PORT (8181).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
step() { printf '\n==> %s\n' "$*" >&2; }
trap 'printf "\nrun: FAILED at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
# A random caller token in a 0600 file, made once.
token_file() { [[ -s $1 ]] || (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$1" && echo >>"$1"); }

step "install"
bash deploy/install.sh
step "infrastructure up (Kafka SASL_SSL with ACLs, PostgreSQL, topics, principals)"
eval "$(bash deploy/stack.sh up)"
export FR_KAFKA_BOOTSTRAP FR_DATABASE_URL

export FR_INTAKE_HTTP_PORT=${FR_INTAKE_HTTP_PORT:-8301} FR_EVALUATION_HTTP_PORT=${FR_EVALUATION_HTTP_PORT:-8302}
export FR_RISK_HTTP_PORT=${FR_RISK_HTTP_PORT:-8303} FR_ACCESS_HTTP_PORT=${FR_ACCESS_HTTP_PORT:-8304}
export FR_CONSOLE_HTTP_PORT=${FR_CONSOLE_HTTP_PORT:-8305} FR_ASYNCAPI_DOCS_PORT=${FR_ASYNCAPI_DOCS_PORT:-8306}
export FR_DEMO_MODEL_PORT=${FR_DEMO_MODEL_PORT:-8900} FR_DECISION_API_PORT=${FR_DECISION_API_PORT:-8181}
# Demo settings (local development only). A day of the review window lasts 6 s (30
# days in three minutes, time for the five suites on a busy machine); the risk policy's
# durations (a critical escalation's two-day decision deadline, the conclusion's hour
# of grace) run at 60 s a day, so that two people can sign within the deadline on a
# busy machine (each command starts a Python process). The suites run side by side.
export FR_INTAKE_SECONDS_PER_DAY=${FR_INTAKE_SECONDS_PER_DAY:-6}
export FR_RISK_SECONDS_PER_DAY=${FR_RISK_SECONDS_PER_DAY:-60}
export FR_EVALUATION_WORKER_CONCURRENCY=${FR_EVALUATION_WORKER_CONCURRENCY:-5}
# The demo lab model server speaks plain http on loopback with this key; endpoints
# must be public https hosts, so intake and evaluation allowlist it.
export DEMO_LAB_API_KEY=${DEMO_LAB_API_KEY:-demo-key}
export FR_INTAKE_ENDPOINT_ALLOWLIST="[\"127.0.0.1:$FR_DEMO_MODEL_PORT\"]"
export FR_EVALUATION_ENDPOINT_ALLOWLIST=$FR_INTAKE_ENDPOINT_ALLOWLIST
export FR_TENANT_CREDENTIALS_DIR=$ROOT/.local/kafka/tenants
# Secrets that in production come from the secret store: the risk service's audit
# key, the callers of access's agency API, of the web console and of the lab's
# decision API.
mkdir -p .local/demo .local/console
[[ -f .local/risk/audit-key.pem ]] || .venv/bin/frontier-review audit keygen
export FR_ACCESS_API_TOKENS_FILE=$ROOT/.local/demo/access-api-tokens.txt
token_file "$FR_ACCESS_API_TOKENS_FILE"
export FR_CONSOLE_TOKENS_FILE=${FR_CONSOLE_TOKENS_FILE:-$ROOT/.local/console/tokens}
token_file "$FR_CONSOLE_TOKENS_FILE"
export FR_ENFORCER_TOKENS_FILE=$ROOT/.local/demo/decision-api-tokens.txt
token_file "$FR_ENFORCER_TOKENS_FILE"

step "the services (intake, evaluation, risk, access, the console), the demo lab model server, the AsyncAPI pages"
bash deploy/services.sh start
bash deploy/services.sh start evaluation.demo_model runtime.asyncapi_docs
step "a lab and two reviewers join"
.venv/bin/python -m deploy.demo.scenario onboard
step "the lab's enforcement point: frontier-lab decision-api on :$FR_DECISION_API_PORT"
FR_ENFORCER_LAB_ID=demo-lab FR_ENFORCER_CREDENTIALS_FILE=$FR_TENANT_CREDENTIALS_DIR/lab.demo-lab.json \
    bash deploy/services.sh start enforcer
step "the review"
.venv/bin/python -m deploy.demo.scenario review "$@"
