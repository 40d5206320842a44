#!/usr/bin/env bash
# Install upstream Dassl (KaiyangZhou/Dassl.pytorch), unmodified, at the commit this project is
# tested with (c61a1b5, its head since 2022). Its setup.py imports numpy (so --no-build-isolation)
# and pins stale requirements (so --no-deps; requirements.txt lists what it imports). When Dassl
# is already installed nothing is done (DASSL_REINSTALL=1 installs it again).
#   DASSL_SRC     a copy of Dassl to install (default ../Dassl.pytorch, cloned when missing);
#                 pip builds inside it, so it must be writable
#   DASSL_COMMIT  the commit to clone (default c61a1b5)
#   DASSL_REPO    where to clone it from (default upstream on GitHub)
#   PYTHON        the interpreter whose environment gets Dassl (default python3)
set -euo pipefail
DASSL_SRC=${DASSL_SRC:-../Dassl.pytorch}
DASSL_COMMIT=${DASSL_COMMIT:-c61a1b5}
DASSL_REPO=${DASSL_REPO:-https://github.com/KaiyangZhou/Dassl.pytorch.git}
PYTHON=${PYTHON:-python3}

if [ -z "${DASSL_REINSTALL:-}" ] && OUTDATED_IGNORE=1 "$PYTHON" -c "import dassl" 2>/dev/null; then
    echo "Dassl is already installed ($(OUTDATED_IGNORE=1 "$PYTHON" -c 'import dassl, os; print(os.path.dirname(dassl.__file__))' 2>/dev/null));" \
         "DASSL_REINSTALL=1 installs it again."
    exit 0
fi
if [ ! -d "$DASSL_SRC" ]; then
    echo "Cloning upstream Dassl into $DASSL_SRC at commit $DASSL_COMMIT"
    timeout 300 git clone --quiet "$DASSL_REPO" "$DASSL_SRC"
    git -C "$DASSL_SRC" checkout --quiet --detach "$DASSL_COMMIT"
elif [ -d "$DASSL_SRC/.git" ]; then
    at=$(git -C "$DASSL_SRC" rev-parse HEAD)
    if [[ "$at" != "$DASSL_COMMIT"* ]]; then
        echo "note: $DASSL_SRC is at commit ${at:0:7}, not $DASSL_COMMIT, the one tested here."
    fi
fi
echo "Installing Dassl from $DASSL_SRC"
"$PYTHON" -m pip install -q --no-build-isolation --no-deps "$DASSL_SRC"
