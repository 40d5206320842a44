"""The commands' bootstrap: ``python tools/NAME.py`` puts tools/, not the repository root, on
sys.path, so each command imports this module first (``import _root``), and the root's packages
(experiments, devkit, trainers, datasets) import by name from wherever the command is run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
