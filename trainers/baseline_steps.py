"""One training step of KgCoOp and of CoOp + KD, as plain functions (no cfg, no Dassl).

Like trainers/steps.py: the Dassl trainers call these from `forward_backward`, the benchmark
times them directly. Both are CoOp's step with another loss: one forward, one gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn

from .baseline_ops import distillation_loss, kgcoop_loss
from .precision import Precision


class KgCoOpStep(NamedTuple):
    logits: torch.Tensor  # (B, C) student logits
    loss: torch.Tensor  # CE + W · L_kg, fp32 scalar
    xe_loss: torch.Tensor
    kg_loss: torch.Tensor  # 1 − mean_c cos(learned, hand-crafted text feature)
    gradients: list[torch.Tensor]  # what was written into the parameters (scaled under amp)


class DistillationStep(NamedTuple):
    logits: torch.Tensor  # (B, C) student logits
    loss: torch.Tensor  # (1 − α) CE + α T² KL, fp32 scalar
    xe_loss: torch.Tensor
    kl_loss: torch.Tensor
    gradients: list[torch.Tensor]


def kgcoop_gradients(
    model: nn.Module,
    image: torch.Tensor,
    label: torch.Tensor,
    precision: Precision,
    params: Sequence[nn.Parameter],
    weight: float,
) -> KgCoOpStep:
    """KgCoOp's gradient: ∇ [CE(student(image), label) + W · L_kg] w.r.t. `params`.

    `model` is a CustomCLIP built with the hand-crafted prompts' text features as its teacher;
    the learned prompts' text features are encoded once and serve both terms.
    """
    with precision.autocast():
        logits, text_features, teacher_text_features = model(image, return_text_features=True)
    loss, xe_loss, kg_loss = kgcoop_loss(
        logits, label, text_features, teacher_text_features, weight
    )
    gradients = list(torch.autograd.grad(precision.scale(loss), params))
    return KgCoOpStep(logits, loss, xe_loss, kg_loss, gradients)


def distillation_gradients(
    model: nn.Module,
    image: torch.Tensor,
    label: torch.Tensor,
    precision: Precision,
    params: Sequence[nn.Parameter],
    alpha: float,
    temperature: float,
) -> DistillationStep:
    """CoOp + KD's gradient: ∇ [(1 − α) CE + α T² KL(teacher ‖ student)] w.r.t. `params`.

    The image features are computed once and give both the student's and the teacher's logits.
    """
    with precision.autocast():
        student_logits, teacher_logits = model(image, return_teacher=True)
    loss, xe_loss, kl_loss = distillation_loss(
        student_logits, teacher_logits, label, alpha, temperature
    )
    gradients = list(torch.autograd.grad(precision.scale(loss), params))
    return DistillationStep(student_logits, loss, xe_loss, kl_loss, gradients)
