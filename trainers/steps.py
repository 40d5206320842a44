"""One training step of CoOp and of ProGrad, as plain functions (no cfg, no Dassl).

The Dassl trainers call these from `forward_backward`; the benchmarks time them directly. They
take any model with CustomCLIP's interface, so CoCoOp and ProGradCoCoOp (CoCoOpCLIP) use them
too. `prograd_rule` is ProGrad's update for any prompt learner's parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn

from .precision import Precision
from .prograd_ops import (
    ParameterProjection,
    cross_entropy_loss,
    kl_to_teacher_loss,
    project_parameter_gradients,
)


class CoOpStep(NamedTuple):
    logits: torch.Tensor  # (B, C) student logits
    loss: torch.Tensor  # cross-entropy, fp32 scalar
    gradients: list[torch.Tensor]  # what was written into the parameters (scaled under amp)


class ProGradStep(NamedTuple):
    logits: torch.Tensor  # (B, C) student logits
    xe_loss: torch.Tensor
    kl_loss: torch.Tensor
    projection: ParameterProjection
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
    per_tensor: bool = True,
    always: bool = False,
) -> ProGradStep:
    """ProGrad's gradient: g_ce projected off g_kl where they conflict (:func:`prograd_rule`).

    The image features are computed once and give both the student's and the teacher's logits.
    """
    with precision.autocast():
        student_logits, teacher_logits = model(image, return_teacher=True)
    xe_loss = cross_entropy_loss(student_logits, label)
    kl_loss = kl_to_teacher_loss(student_logits, teacher_logits, temperature)
    projection = prograd_rule(xe_loss, kl_loss, params, precision, lambda_, per_tensor, always)
    return ProGradStep(student_logits, xe_loss, kl_loss, projection, projection.gradients)


def prograd_rule(
    domain_loss: torch.Tensor,
    general_loss: torch.Tensor,
    params: Sequence[nn.Parameter],
    precision: Precision,
    lambda_: float,
    per_tensor: bool = True,
    always: bool = False,
) -> ParameterProjection:
    """ProGrad's update for any prompt learner: ∇ domain loss, projected off ∇ general loss.

    Call it from any trainer that has a domain loss (cross-entropy on the few-shot labels) and a
    general loss (KL to the zero-shot prediction), over all its trainable parameters, and write
    the returned gradients with `Precision.step`. λ = 0 gives the domain gradient unchanged.

    Args:
        domain_loss, general_loss: scalar losses of one forward pass (its graph is kept for the
            second gradient).
        params: the trainable parameters (context, meta-net, ...).
        precision: scales the losses under amp (the projection is invariant to the scale).
        lambda_: projection strength λ in [0, 1].
        per_tensor: project each parameter tensor on its own (the official code) or all of them
            as one vector (LOSS.PROJECTION; see `project_parameter_gradients`).
        always: project at every step, conflict or not (LOSS.NAME vertical_grad, the ablation).
    """
    g_ce = torch.autograd.grad(precision.scale(domain_loss), params, retain_graph=True)
    g_kl = torch.autograd.grad(precision.scale(general_loss), params)
    return project_parameter_gradients(g_ce, g_kl, lambda_, per_tensor, always)
