"""Our ProGrad and CoOp against the official ProGrad code (BeierZhu/Prompt-align), whole train.py
runs: tools/prograd_parity.py.

Runs only where PROGRAD_OFFICIAL names a checkout of Prompt-align (the folder holding
ProGrad.public/ and Dassl.ProGrad.pytorch/), e.g. after
`git clone https://github.com/BeierZhu/Prompt-align /tmp/prompt-align`:
    PROGRAD_OFFICIAL=/tmp/prompt-align python -m pytest tests/test_prograd_parity.py
"""

import os
from pathlib import Path

import pytest

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
OFFICIAL = os.environ.get("PROGRAD_OFFICIAL", "")
pytestmark = pytest.mark.skipif(
    not (OFFICIAL and (Path(OFFICIAL) / "ProGrad.public" / "trainers" / "prograd.py").is_file()),
    reason="PROGRAD_OFFICIAL is not set to a checkout of BeierZhu/Prompt-align",
)


@pytest.mark.parametrize("method", ["CoOp", "ProGrad"])
def test_whole_train_py_runs_agree_with_the_official_ones(method):
    """Both train.py's, 2 epochs of 2 steps (rn50_ep50: constant warmup, then cosine; SGD with
    momentum; ProGrad with λ 1): the same batches, learning rates and start, no BatchNorm in
    training mode, the last context in both checkpoints, and the context updates agree to fp32
    rounding: 1e-5 of their size after 2 epochs, 2e-4 after the warmup epoch (whose LR of 1e-5
    moves CoOp's random context so little that rounding is a larger share of it)."""
    from devkit.prograd_parity import compare_whole_runs

    report = compare_whole_runs(
        OFFICIAL, method, epochs=2, lambda_=1.0, num_classes=8, images_per_class=16
    )
    assert report["trainer_files"][1].endswith(f"ProGrad.public/trainers/{method.lower()}.py")
    assert report["steps_per_epoch"] == 2 and report["same_start"]
    assert report["our_lrs"] == report["their_lrs"] == [1e-5, 1e-5, 2e-3, 2e-3]
    assert report["batchnorm_training"] == [False, False]
    assert report["checkpoints_hold_the_last_context"]
    assert report["context_moved"] > 1e-3
    assert report["relative_update_difference"] < 1e-5
    assert max(report["relative_update_difference_per_epoch"]) < 2e-4
    if method == "ProGrad":  # the projection fired, on both sides alike
        assert any(summary["conflict"] for summary in report["our_summaries"])
        for ours, theirs in zip(report["our_summaries"], report["their_summaries"], strict=True):
            assert ours["xe_loss"] == pytest.approx(theirs["xe_loss"], rel=1e-5)
