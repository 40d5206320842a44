"""Our MaPLe takes the official MaPLe code's steps on identical input (devkit/maple_parity.py).

Runs only with MAPLE_OFFICIAL pointing at a checkout of
https://github.com/muzairkhattak/multimodal-prompt-learning: their trainer is imported from it at
run time (in a subprocess), nothing of it is in this repository.
"""

import os
from pathlib import Path

import pytest

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
MAPLE_OFFICIAL = os.environ.get("MAPLE_OFFICIAL", "")
pytestmark = pytest.mark.skipif(
    not MAPLE_OFFICIAL,
    reason="set MAPLE_OFFICIAL to a checkout of muzairkhattak/multimodal-prompt-learning",
)


def test_reference_computation_takes_the_official_steps_bit_for_bit():
    """MODEL.TEXT_ENCODER reference: six SGD steps of batch 4 from the same checkpoint give the
    official parameters exactly, and each side evaluates the other's checkpoint as its own."""
    from devkit.maple_parity import run_parity

    figures = run_parity(Path(MAPLE_OFFICIAL), steps=6, batch=4, reference=True)
    assert len(figures["tensors"]) == 9  # ctx, proj, 2 deep text prompts, 2 couplings
    assert min(figures["relative_distance_travelled"].values()) > 1e-3
    assert max(figures["max_relative_parameter_difference_per_step"]) == 0.0
    assert figures["theirs_evaluating_our_checkpoint_max_abs_difference"] == 0.0
    assert figures["ours_evaluating_their_checkpoint_max_abs_difference"] == 0.0


def test_fast_paths_take_the_official_steps_to_fp16_gradient_rounding():
    """The packed text tower: the official code rounds each class's gradient of the deep text
    prompts to fp16 before summing them, ours rounds the sum, so the updates differ by less than
    two fp16 rounding steps (2^-10) of how far each tensor moved, and the logits agree to 1e-4."""
    from devkit.maple_parity import run_parity

    figures = run_parity(Path(MAPLE_OFFICIAL), steps=6, batch=4)
    for name, moved in figures["relative_distance_travelled"].items():
        assert moved > 1e-3, name
        assert figures["relative_parameter_difference_at_end"][name] < 2**-10 * moved, name
    assert figures["max_abs_logit_difference"] < 1e-4 * figures["logit_scale_of_reference"]
    assert figures["same_predictions"]
    assert figures["theirs_evaluating_our_checkpoint_max_abs_difference"] < 1e-4
    assert figures["ours_evaluating_their_checkpoint_max_abs_difference"] < 1e-4
