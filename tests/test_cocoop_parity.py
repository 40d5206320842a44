"""Our CoCoOp takes the CoOp repository's CoCoOp steps on identical input (cocoop_parity).

Runs only with COOP_REPO pointing at a checkout of https://github.com/KaiyangZhou/CoOp: their
trainer is imported from it at run time (in a subprocess), nothing of it is in this repository.
"""

import os
from pathlib import Path

import pytest

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
COOP_REPO = os.environ.get("COOP_REPO", "")
pytestmark = pytest.mark.skipif(
    not COOP_REPO, reason="set COOP_REPO to a checkout of KaiyangZhou/CoOp to compare against it"
)


@pytest.mark.parametrize(("arch", "batch"), [("ViT", 1), ("RN", 2)])
def test_same_steps_logits_and_checkpoints_as_the_coop_repository(arch, batch):
    """Several SGD steps from the same checkpoint on the same batches: parameters equal to fp32
    rounding (far below how far they moved), same logits; each side evaluates the other's
    checkpoint as its own."""
    from devkit.cocoop_parity import run_parity

    figures = run_parity(Path(COOP_REPO), arch=arch, steps=6, batch=batch)
    for name, moved in figures["relative_distance_travelled"].items():
        assert moved > 1e-3, name  # the steps changed every tensor...
        # ... and the two sides disagree by less than 0.1% of how far it moved.
        assert figures["relative_parameter_difference_at_end"][name] < 1e-3 * moved, name
    assert max(figures["max_relative_parameter_difference_per_step"]) < 1e-4
    assert figures["max_abs_logit_difference"] < 1e-3 * figures["logit_scale_of_reference"]
    assert figures["same_predictions"]
    assert figures["theirs_evaluating_our_checkpoint_max_abs_difference"] < 1e-4
    assert figures["ours_evaluating_their_checkpoint_max_abs_difference"] < 1e-4


def test_whole_train_py_runs_agree_with_the_coop_repository():
    """Both train.py's, 2 epochs of batch 2 (CoCoOp's ctxv1 config: constant warmup, then cosine;
    SGD with momentum), tiny RN CLIP: the same batches, learning rates and start, no BatchNorm in
    training mode, the last state in both checkpoints, and the updates of the context and
    meta-net agree to fp32 rounding: 1e-4 of their size after 2 epochs, 1e-3 after the warmup
    epoch (whose LR of 1e-5 moves them so little that rounding is a larger share of it)."""
    from devkit.cocoop_parity import compare_whole_runs

    report = compare_whole_runs(Path(COOP_REPO), epochs=2, batch=2)
    assert report["steps_per_epoch"] == 8 and report["same_start"]
    assert report["tensor_names"][0] == "ctx" and len(report["tensor_names"]) == 5
    assert report["our_lrs"] == report["their_lrs"]
    assert report["batchnorm_training"] == [False, False]
    assert report["checkpoints_hold_the_last_context"]
    assert report["context_moved"] > 1e-3
    assert report["relative_update_difference"] < 1e-4
    assert max(report["relative_update_difference_per_epoch"]) < 1e-3
