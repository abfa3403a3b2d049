#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what is missing, starts
# the real Kafka + PostgreSQL, then lint, types, contract checks and pytest.
# Any failure stops the run with a non-zero exit. Extra args go to pytest.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
step() { printf '\n==> %s\n' "$*" >&2; }
trap 'printf "\ntest: FAILED at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

step "install (OS packages, venv, Kafka jars)"
bash deploy/install.sh
step "infrastructure up"
eval "$(bash deploy/stack.sh up)"
export FR_KAFKA_BOOTSTRAP FR_DATABASE_URL
# The fault tests (tests/system/test_faults.py, marker "system") restart this stack
# and no other.
export FR_SYSTEM_STACK=$ROOT/deploy/stack.sh

PY=.venv/bin
step "ruff";   $PY/ruff check . && $PY/ruff format --check .
step "mypy";   $PY/mypy
step "event schemas are committed and backward compatible"
$PY/python -m contracts check
step "AsyncAPI documents are up to date"
$PY/python -m services.runtime.asyncapi check
step "the lab guide's generated sections are up to date"
$PY/python -m docs.lab_guide check
step "pytest (real Kafka + PostgreSQL)"
set +e
$PY/pytest -q -p no:cacheprovider "$@"
code=$?
set -e
if ((code == 5)); then
    echo "test: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$code"
