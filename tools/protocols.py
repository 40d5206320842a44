"""The run scripts' entry point: ``python3 tools/protocols.py run [--script NAME] FUNCTION
ARGS...`` (scripts/common.sh) prints (DRY_RUN) or runs a protocol's commands; the protocols are
experiments/protocols.py. Standard library only, so the scripts start it in a few milliseconds."""

import sys

import _root  # noqa: F401  (the repository root on sys.path)

from experiments.protocols import main

if __name__ == "__main__":
    sys.exit(main())
