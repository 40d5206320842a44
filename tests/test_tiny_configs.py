"""Every method's tiny.yaml: its own protocol script trains it on TinyWorld with the shipped tiny
CLIP and evaluates it (1 shot, 1 epoch, 1 seed), as `bash scripts/<method>/main.sh tinyworld
tiny K` does for a user."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from experiments.protocols import METHODS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FEWSHOT_METHODS = sorted(name for name, method in METHODS.items() if "fewshot" in method.defaults)


def test_every_few_shot_method_has_a_tiny_config():
    """A user can swap the method of the TinyWorld main job without writing a config."""
    missing = [
        name
        for name in FEWSHOT_METHODS
        if not (ROOT / "configs" / "trainers" / METHODS[name].config_folder / "tiny.yaml").is_file()
    ]
    assert FEWSHOT_METHODS and not missing


# CoOp and ProGrad run in tests/test_demo.py; KD is ProGrad's tiny.yaml with LOSS.NAME kd, and
# ProGradCoCoOp's file is CoCoOp's with ProGrad's LOSS block (every config file is loaded by
# tests/test_bad_input.py), so the trainers that run here are those with a file of their own.
RUN_HERE = ("KgCoOp", "CoCoOp", "LinearProbeCLIP")


@pytest.mark.parametrize("method", RUN_HERE)
def test_tiny_config_trains_and_evaluates_through_the_script(method, tinyworld_root, tmp_path):
    """The run finishes on the tiny CLIP's
    weights, not a download, with an accuracy far above chance (1/32 = 3.1% on the base half):
    every tiny config keeps most of the pretrained CLIP's zero-shot knowledge after one epoch."""
    environment = {
        **os.environ,
        "DATA": str(tinyworld_root),
        "OUTPUT": str(tmp_path / "output"),
        "SEEDS": "1",
        "EPOCHS": "1",
        "OMP_NUM_THREADS": "1",
        "EXTRA_OPTS": "DATASET.SUBSAMPLE_CLASSES base",  # 32 classes: half the time
        "PYTHON": sys.executable,  # train.py runs with the interpreter running the tests
    }
    completed = subprocess.run(
        ["bash", f"scripts/{method.lower()}/main.sh", "tinyworld", "tiny", "1"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (log,) = (tmp_path / "output" / "tinyworld" / method).glob("tiny_1shots/*/seed1/log.txt")
    text = log.read_text()
    assert "PATH: assets/tiny_clip_tinyworld.pt.gz" in text
    accuracy = float(re.findall(r"\* accuracy: ([\d.]+)%", text)[-1])
    assert accuracy > 30.0
