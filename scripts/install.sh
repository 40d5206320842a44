#!/usr/bin/env bash
# Install what train.py, the tests and the demo need into the active Python environment:
# requirements.txt, then upstream Dassl (scripts/install_dassl.sh). What is already installed is
# skipped, so a second call only checks. `make test` and `make demo` call this.
#   PYTHON  the interpreter whose environment gets the packages (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! command -v "$PYTHON" >/dev/null; then
    echo "error: $PYTHON not found; activate a Python >= 3.10 environment or set PYTHON." >&2
    exit 1
fi
echo "Installing into the active Python environment: $("$PYTHON" -c 'import sys; print(sys.prefix)') ($("$PYTHON" --version 2>&1))"
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    "$PYTHON" -m ensurepip --upgrade >/dev/null
fi

if missing=$("$PYTHON" scripts/requirements_met.py requirements.txt); then
    echo "requirements.txt: everything is installed"
else
    echo "requirements.txt: installing $(echo "$missing" | tr '\n' ' ')"
    if ! "$PYTHON" -m pip install -r requirements.txt; then
        echo "error: pip could not install requirements.txt into this environment (see above)." \
             "If pip says externally-managed-environment, work in a virtual environment:" \
             "python3 -m venv .venv && . .venv/bin/activate && make test" >&2
        exit 1
    fi
fi
PYTHON="$PYTHON" bash scripts/install_dassl.sh
