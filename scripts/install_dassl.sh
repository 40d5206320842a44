#!/usr/bin/env bash
# Install upstream Dassl (KaiyangZhou/Dassl.pytorch), unmodified, from a clone beside this repo.
# Its setup.py imports numpy (so --no-build-isolation) and pins stale requirements (so --no-deps;
# requirements.txt lists what it imports). Where Dassl can't be had, the tests that need it skip.
#   DASSL_SRC  the clone to install (default ../Dassl.pytorch; cloned when missing)
set -euo pipefail
DASSL_SRC=${DASSL_SRC:-../Dassl.pytorch}
PYTHON=${PYTHON:-python3}

if [ ! -d "$DASSL_SRC" ]; then
    if "$PYTHON" -c "import dassl" 2>/dev/null; then
        echo "Dassl is already installed ($("$PYTHON" -c 'import dassl; print(dassl.__file__)'));"
        echo "set DASSL_SRC to a clone to reinstall it."
        exit 0
    fi
    echo "Cloning upstream Dassl into $DASSL_SRC"
    timeout 300 git clone --depth 1 https://github.com/KaiyangZhou/Dassl.pytorch.git "$DASSL_SRC"
fi
"$PYTHON" -m pip install --no-build-isolation --no-deps "$DASSL_SRC"
