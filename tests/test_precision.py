"""The precision policy: a non-finite step never reaches the prompt, in every precision."""

import pytest
import torch

from trainers.precision import Precision, flatten, unflatten


@pytest.mark.parametrize("mode", ["fp32", "fp16", "amp"])
def test_non_finite_gradient_is_skipped_and_prompt_unchanged(mode):
    """An inf in the gradient: no optimizer step, the parameter keeps its value."""
    dtype = torch.float16 if mode == "fp16" else torch.float32
    ctx = torch.nn.Parameter(torch.ones(3, dtype=dtype))
    optimizer = torch.optim.SGD([ctx], lr=0.1)
    precision = Precision(mode, torch.device("cpu"))
    precision.scale(torch.tensor(1.0))  # the scaler starts its scale on first use
    scale_before = precision.gradient_scale()
    stepped = precision.step(optimizer, [ctx], [torch.tensor([1.0, float("inf"), 0.0])])
    assert not stepped
    assert torch.equal(ctx.detach(), torch.ones(3, dtype=dtype))
    if mode == "amp":
        assert precision.gradient_scale() < scale_before  # the scaler backed off


@pytest.mark.parametrize("mode", ["fp32", "fp16", "amp"])
def test_finite_gradient_steps_with_unscaled_value(mode):
    """A finite (scaled) gradient moves the parameter by lr × unscaled gradient."""
    dtype = torch.float16 if mode == "fp16" else torch.float32
    ctx = torch.nn.Parameter(torch.zeros(2, dtype=dtype))
    optimizer = torch.optim.SGD([ctx], lr=0.5)
    precision = Precision(mode, torch.device("cpu"))
    scaled = precision.scale(torch.tensor(1.0))
    gradient = torch.tensor([1.0, -2.0]) * scaled  # as autograd returns for scale(loss)
    assert precision.step(optimizer, [ctx], [gradient])
    torch.testing.assert_close(ctx.detach().float(), torch.tensor([-0.5, 1.0]))


def test_fp16_gradient_overflowing_on_cast_is_skipped():
    """An fp32 update too large for an fp16 prompt is caught after the cast, not written."""
    ctx = torch.nn.Parameter(torch.zeros(1, dtype=torch.float16))
    precision = Precision("fp16", torch.device("cpu"))
    assert not precision.step(torch.optim.SGD([ctx], lr=1.0), [ctx], [torch.tensor([1e6])])
    assert ctx.item() == 0.0


def test_unknown_precision_names_the_key():
    """TRAINER.COOP.PREC outside the known precisions is a ValueError naming the key."""
    with pytest.raises(
        ValueError, match='TRAINER.COOP.PREC must be one of fp16, fp32, amp, bf16, .*got "fp8"'
    ):
        Precision("fp8", torch.device("cpu"))


def test_flatten_unflatten_round_trip():
    """Gradients flattened for the projection come back with their shapes and values."""
    tensors = [torch.randn(2, 3), torch.randn(4)]
    back = unflatten(flatten(tensors), tensors)
    assert all(torch.equal(a, b) for a, b in zip(tensors, back, strict=True))
