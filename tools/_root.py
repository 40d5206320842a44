"""The commands' bootstrap: ``python tools/NAME.py`` puts tools/, not the repository root, on
sys.path, so each command imports this module first (``import _root``), and the root's packages
(experiments, devkit, trainers, datasets) import by name from wherever the command is run."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _one_paragraph_errors(kind, error, traceback) -> None:
    """A declaration that cannot be read (experiments/catalog.py: a module's METHOD or DATASET,
    or PROGRAD_PLUGINS) ends the command in one `error: ...` paragraph, not a traceback."""
    from experiments.catalog import CatalogError

    if issubclass(kind, CatalogError) and not os.environ.get("PROGRAD_TRACEBACK"):
        print(f"error: {error}", file=sys.stderr)
        return
    sys.__excepthook__(kind, error, traceback)


sys.excepthook = _one_paragraph_errors
