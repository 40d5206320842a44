"""TRAINER.COOP.PREC in one place: autocast, loss scaling and the guarded optimizer step.

fp16: CLIP and the prompt in half precision (OpenAI's weights), as CoOp; no loss scaling.
fp32: everything in fp32.
amp:  fp32 weights, forward under autocast (fp16 on CUDA, bf16 on CPU), losses scaled by a
      GradScaler. Every gradient a step uses is scaled by the same factor, and ProGrad's projection
      is invariant to a common scale, so the projected gradient is simply unscaled by the scaler.

A step whose gradient holds inf/NaN is never written into the prompt: the scaler skips it (and
lowers its scale) under amp, and the guard below skips it otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

PRECISIONS = ("fp16", "fp32", "amp")


class Precision:
    """The precision policy of a trainer."""

    def __init__(self, mode: str, device: torch.device):
        if mode not in PRECISIONS:
            raise ValueError(
                f'TRAINER.COOP.PREC must be one of {", ".join(PRECISIONS)}, got "{mode}"'
            )
        self.mode = mode
        self.device = torch.device(device)
        self.scaler = torch.amp.GradScaler(self.device.type) if mode == "amp" else None

    @property
    def weights_fp32(self) -> bool:
        """Whether CLIP's weights (and so the prompt) are kept in fp32."""
        return self.mode in ("fp32", "amp")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass: autocast under amp, nothing otherwise."""
        if self.mode != "amp":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def gradient_scale(self) -> float:
        """The factor the current step's gradients carry (the loss scale under amp, else 1)."""
        return self.scaler.get_scale() if self.scaler is not None else 1.0

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to differentiate: scaled under amp."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        params: Sequence[torch.nn.Parameter],
        gradients: Sequence[torch.Tensor],
    ) -> bool:
        """Write `gradients` (as returned for `scale(loss)`) into `params` and step if finite.

        Returns:
            whether the optimizer stepped (False: the step held inf/NaN and was skipped).
        """
        for param, gradient in zip(params, gradients, strict=True):
            param.grad = gradient.to(param.dtype)
        finite = all(bool(torch.isfinite(param.grad).all()) for param in params)
        if self.scaler is not None:
            # Unscales, skips the step on inf/NaN and adapts the scale.
            self.scaler.step(optimizer)
            self.scaler.update()
        elif finite:
            optimizer.step()
        return finite


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat fp32 vector (the gradient ProGrad projects)."""
    return torch.cat([tensor.float().flatten() for tensor in tensors])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector back into tensors shaped like `like`."""
    pieces = vector.split([tensor.numel() for tensor in like])
    return [piece.view_as(tensor) for piece, tensor in zip(pieces, like, strict=True)]
