"""One training step of CoOp and of ProGrad, as plain functions (no cfg, no Dassl).

The Dassl trainers call these from `forward_backward`; the benchmarks time them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn

from .precision import Precision, flatten, unflatten
from .prograd_ops import (
    Projection,
    cross_entropy_loss,
    kl_to_teacher_loss,
    project_conflicting_gradient,
)


class CoOpStep(NamedTuple):
    logits: torch.Tensor  # (B, C) student logits
    loss: torch.Tensor  # cross-entropy, fp32 scalar
    gradients: list[torch.Tensor]  # what was written into the parameters (scaled under amp)


class ProGradStep(NamedTuple):
    logits: torch.Tensor  # (B, C) student logits
    xe_loss: torch.Tensor
    kl_loss: torch.Tensor
    projection: Projection
    gradients: list[torch.Tensor]


def coop_gradients(
    model: nn.Module,
    image: torch.Tensor,
    label: torch.Tensor,
    precision: Precision,
    params: Sequence[nn.Parameter],
) -> CoOpStep:
    """CoOp's gradient: ∇ CE(student(image), label) w.r.t. `params`."""
    with precision.autocast():
        logits = model(image)
    loss = cross_entropy_loss(logits, label)
    gradients = list(torch.autograd.grad(precision.scale(loss), params))
    return CoOpStep(logits, loss, gradients)


def prograd_gradients(
    model: nn.Module,
    image: torch.Tensor,
    label: torch.Tensor,
    precision: Precision,
    params: Sequence[nn.Parameter],
    lambda_: float,
    temperature: float,
) -> ProGradStep:
    """ProGrad's gradient: g_ce projected off g_kl where they conflict.

    The image features are computed once and give both the student's and the teacher's logits.
    """
    with precision.autocast():
        student_logits, teacher_logits = model(image, return_teacher=True)
    xe_loss = cross_entropy_loss(student_logits, label)
    kl_loss = kl_to_teacher_loss(student_logits, teacher_logits, temperature)
    g_ce = flatten(torch.autograd.grad(precision.scale(xe_loss), params, retain_graph=True))
    g_kl = flatten(torch.autograd.grad(precision.scale(kl_loss), params))
    projection = project_conflicting_gradient(g_ce, g_kl, lambda_)
    gradients = unflatten(projection.gradient, params)
    return ProGradStep(student_logits, xe_loss, kl_loss, projection, gradients)
