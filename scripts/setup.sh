#!/bin/sh
# Install what qbo-sync needs, when it is missing: Debian's PostgreSQL 15 with pg_cron,
# PL/Python and pgTAP (plus requests for the server's Python), and the project's virtual
# environment with the dependencies pinned in pyproject.toml. Re-running is fast and changes
# nothing. Works as root, or as a normal user with sudo (or with the packages already present).
set -eu
cd "$(dirname "$0")/.."

# chromium and chromium-driver: the status page's test in a real browser (headless)
PACKAGES="postgresql-15 postgresql-client-15 postgresql-15-cron postgresql-plpython3-15 postgresql-15-pgtap python3-requests chromium chromium-driver"
PYTHON=${PYTHON:-python3}

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    if [ "$(id -u)" = 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "setup: these Debian packages are missing:$missing" >&2
        echo "setup: install them as root: apt-get install -y$missing" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Without this, installing the server creates and starts a default cluster we do not use.
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        $SUDO mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    $SUDO apt-get install -y -q $missing || { $SUDO apt-get update -q && $SUDO apt-get install -y -q $missing; }
fi

stamp=".venv/.qbo-sync-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    echo "setup: preparing the virtual environment in .venv"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    rm -f .venv/.qbo-sync-*
    touch "$stamp"
fi
