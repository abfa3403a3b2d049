#!/usr/bin/env bash
# Idempotent installer for a fresh Debian/Ubuntu machine: OS packages (Java 17,
# Maven, PostgreSQL server, Chromium for the console's headless browser tests),
# the project venv, and the Kafka broker jars.
# Re-running is cheap: every step is skipped when its result is already in place.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL=$ROOT/.local
VENV=$ROOT/.venv
PYPROJECT=$ROOT/pyproject.toml
PIP_STAMP=$LOCAL/pip.stamp
POM=$ROOT/deploy/kafka/pom.xml
KAFKA_LIBS=$LOCAL/kafka/libs
LIBS_STAMP=$LOCAL/kafka/libs.stamp

say() { printf 'install: %s\n' "$*" >&2; }
die() { printf 'install: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

# --- detection -------------------------------------------------------------

java_ok() {
    command -v java >/dev/null 2>&1 || return 1
    local major
    # `java -version` prints e.g.: openjdk version "17.0.15" 2025-04-15
    major=$(java -version 2>&1 | awk -F'"' '/version/ && !n++ {split($2, v, "."); print v[1]}')
    [[ $major =~ ^[0-9]+$ ]] && ((major >= 17))
}

pg_bin() {
    # Newest installed major version wins; stack.sh uses the same rule.
    # shellcheck disable=SC2012  # glob of fixed Debian paths, no odd file names
    { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -1
}

pg_ok() {
    local bin
    bin=$(pg_bin)
    # postgresql-client alone also creates .../bin, so look for the server tools.
    [[ -n $bin && -x $bin/initdb && -x $bin/pg_ctl && -x $bin/postgres ]]
}

# First interpreter >= 3.11 that can create venvs (Debian splits venv out).
find_python() {
    local py
    for py in python3.13 python3.12 python3.11 python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

# --- 1. OS packages --------------------------------------------------------

missing=()
java_ok || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
pg_ok || missing+=(postgresql)
# The web console's tests drive headless Chromium (tests/console/test_browser.py).
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
    missing+=(chromium)
if [[ ! -x $VENV/bin/python ]] && ! find_python >/dev/null; then
    missing+=(python3 python3-venv)
fi

if ((${#missing[@]})); then
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to apt-get install: ${missing[*]}"
        sudo=(sudo)
    fi
    say "os: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
    say "os: java 17+, maven, postgresql, chromium already present"
fi

java_ok || die "java on PATH is older than 17 even after install (check update-alternatives --config java)"
command -v mvn >/dev/null 2>&1 || die "mvn still missing after install"
pg_ok || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
say "os: java $(java -version 2>&1 | awk -F'"' '/version/ && !n++ {print $2}'), $(mvn -v 2>/dev/null | sed -n '1s/\x1b\[[0-9;]*m//gp' | cut -d' ' -f1-3), postgres $(pg_bin)"

# --- 2. Python venv --------------------------------------------------------

mkdir -p "$LOCAL"
if [[ -x $VENV/bin/python ]]; then
    say "python: reusing $VENV"
else
    py=$(find_python) || die "no python3 >= 3.11 with venv support found"
    say "python: creating $VENV with $py"
    "$py" -m venv "$VENV"
    # A fresh venv means the pip stamp describes some other environment.
    rm -f "$PIP_STAMP"
fi
"$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$VENV uses Python < 3.11; delete it and re-run"

# --- 3. Kafka jars ---------------------------------------------------------
# Before pip so a missing pyproject.toml does not block the broker jars.

if compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null && [[ $LIBS_STAMP -nt $POM ]]; then
    say "kafka: jars up to date ($(find "$KAFKA_LIBS" -name '*.jar' | wc -l) in $KAFKA_LIBS)"
else
    say "kafka: resolving broker jars from Maven Central (deploy/kafka/pom.xml)"
    # Resolve into a scratch dir and swap, so a changed pom never leaves stale
    # jars (e.g. an old slf4j-api) next to the new ones on the classpath.
    tmp=$LOCAL/kafka/libs.new
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$LOCAL/mvn.log" 2>&1; then
        tail -n 30 "$LOCAL/mvn.log" >&2
        die "maven could not resolve the Kafka jars (full log: $LOCAL/mvn.log)"
    fi
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    touch "$LIBS_STAMP"
    say "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
fi

# --- 4. Python dependencies ------------------------------------------------

[[ -f $PYPROJECT ]] || die "python: $PYPROJECT not found; cannot 'pip install -e .[dev]' (is the checkout complete?)"
if [[ -f $PIP_STAMP && $PIP_STAMP -nt $PYPROJECT ]]; then
    say "python: dependencies up to date (pip.stamp newer than pyproject.toml)"
else
    say "python: pip install -e '.[dev]'"
    if ! (cd "$ROOT" && "$VENV/bin/pip" install -q -e '.[dev]') >"$LOCAL/pip.log" 2>&1; then
        tail -n 30 "$LOCAL/pip.log" >&2
        die "pip install failed (full log: $LOCAL/pip.log)"
    fi
    touch "$PIP_STAMP"
    say "python: dependencies installed"
fi

say "done; next: bash deploy/stack.sh up"
