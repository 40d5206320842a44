"""Submit a protocol to Slurm or a local pool, or show where its runs stand:
``python tools/sweep.py PROTOCOL ...`` / ``python tools/sweep.py status [OUTPUT]`` (``--help``
lists the options). The code is experiments/sweep.py."""

import sys

import _root  # noqa: F401  (the repository root on sys.path)

from experiments.sweep import main

if __name__ == "__main__":
    sys.exit(main())
