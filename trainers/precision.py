"""TRAINER.COOP.PREC in one place: autocast, loss scaling and the guarded optimizer step.

fp16: CLIP and the prompt in half precision (OpenAI's weights as shipped, as CoOp; an open_clip
      model cast to fp16 whole); no loss scaling.
bf16: CLIP and the prompt in bfloat16 (weights and compute); no loss scaling (bf16 has fp32's
      range).
fp32: everything in fp32.
amp:  fp32 weights, forward under autocast (fp16 on CUDA, bf16 on CPU), losses scaled by a
      GradScaler. Every gradient a step uses is scaled by the same factor, and ProGrad's projection
      is invariant to a common scale, so the projected gradient is simply unscaled by the scaler.
amp_fp16, amp_bf16: amp with autocast in that dtype on any device (open_clip trains with
      amp_bf16); the GradScaler only under amp_fp16, where fp16's range needs it.

A step whose gradient holds inf/NaN is never written into the prompt: the scaler skips it (and
lowers its scale) under amp, and the guard below skips it otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

PRECISIONS = ("fp16", "fp32", "amp", "bf16", "amp_fp16", "amp_bf16")
AMP_MODES = ("amp", "amp_fp16", "amp_bf16")


class Precision:
    """The precision policy of a trainer."""

    def __init__(self, mode: str, device: torch.device):
        if mode not in PRECISIONS:
            raise ValueError(
                f'TRAINER.COOP.PREC must be one of {", ".join(PRECISIONS)}, got "{mode}"'
            )
        self.mode = mode
        self.device = torch.device(device)
        # amp keeps its scaler on every device (as before bf16 became a choice).
        scaled = mode in ("amp", "amp_fp16")
        self.scaler = torch.amp.GradScaler(self.device.type) if scaled else None

    @property
    def weights_fp32(self) -> bool:
        """Whether CLIP's weights (and so the prompt) are kept in fp32."""
        return self.mode == "fp32" or self.mode in AMP_MODES

    @property
    def weights_dtype(self) -> str:
        """CLIP's weight dtype under this precision: "fp32", "bf16" or "fp16" (what a model
        loaded for it computes in outside autocast; it keys shared models and features)."""
        if self.weights_fp32:
            return "fp32"
        return "bf16" if self.mode == "bf16" else "fp16"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype autocast computes in, None without autocast."""
        if self.mode == "amp":
            return torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return {"amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}.get(self.mode)

    def cast_weights(self, clip_model: torch.nn.Module) -> None:
        """Put a freshly loaded CLIP model's weights in this precision's dtype, in place.

        OpenAI's weights come in fp16 (OpenAI's mix: LayerNorms in fp32) and stay so under fp16,
        as CoOp; an open_clip model (fp32) is cast to fp16 whole.
        """
        if self.weights_fp32:
            clip_model.float()
        elif self.mode == "bf16":
            clip_model.to(torch.bfloat16)
        elif next(clip_model.parameters()).dtype == torch.float32 and not any(
            parameter.dtype == torch.float16 for parameter in clip_model.parameters()
        ):
            clip_model.half()

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass: autocast under amp, nothing otherwise."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
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
