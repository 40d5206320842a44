"""Training curves of one run as a PNG: ``python tools/plot_curves.py RUN_DIR [-o FILE.png]``.
The code is experiments/plots.py."""

import sys

import _root  # noqa: F401  (the repository root on sys.path)

from experiments.plots import main

if __name__ == "__main__":
    sys.exit(main())
