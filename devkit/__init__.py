"""Development harnesses and test helpers: the tiny CLIP and the synthetic datasets the tests and
the demo build on, a throwaway Slurm cluster, on-disk snapshots, the pytest plugin that fails a
run skipping for want of Dassl, the helpers test modules share (train runs, script runs, logs),
and the harnesses behind the development commands in tools/ (the demo, the tiny CLIP's
pretraining, the parity checks against the official KgCoOp and CoOp code). Not for users'
experiments: those go through train.py, scripts/ and the experiments package."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def worker_environment() -> dict[str, str]:
    """The environment for a harness's worker, a devkit module run as a script
    (``python devkit/<name>.py --worker ...``): Python puts only devkit/ on sys.path then, so the
    repository root goes first on PYTHONPATH (the project's packages import); Dassl's wilds does
    not ask PyPI for versions, and warnings stay out of the stderr tail an error shows."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "OUTDATED_IGNORE": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
