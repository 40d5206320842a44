"""The benchmarks' bootstrap: ``python benchmarks/NAME.py`` puts benchmarks/, not the repository
root, on sys.path, so each benchmark imports this module first (``import _root``), and the root's
packages (trainers, ...) import by name from wherever it is run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
