#!/usr/bin/env bash
# Bring the whole system up on this machine and run the end-to-end scenario:
# install what is missing, start Kafka + PostgreSQL, create the topics, start
# every service (logs in .local/logs, traces in .local/traces.jsonl), then play
# a lab submitting a model and follow it through the review.
#
#   bash deploy/run.sh            # up + scenario (services keep running)
#   bash deploy/services.sh stop  # stop the services; bash deploy/stack.sh down
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
# The demo squeezes a 30-day review window into seconds (one "day" = 1 s).
export FR_INTAKE_SECONDS_PER_DAY=${FR_INTAKE_SECONDS_PER_DAY:-1}
step "services"
bash deploy/services.sh start
step "end-to-end scenario"
.venv/bin/python -m deploy.demo.scenario "$@"
