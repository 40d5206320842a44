"""ProGrad's math as pure torch functions: the two loss terms and the gradient projection.

No config, no Dassl. Everything here is computed in fp32 whatever the dtype of the inputs, because
fp16 dot products and squared norms of prompt gradients overflow or underflow easily.

Paper: Zhu et al., "Prompt-aligned Gradient for Prompt Tuning", ICCV 2023, Eq. (3)-(5).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


def cross_entropy_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the few-shot labels (the "domain-specific" direction), in fp32.

    Args:
        student_logits: (batch, n_cls) logits of the learned prompt.
        labels: (batch,) class indices.
    """
    return F.cross_entropy(student_logits.float(), labels)


def kl_to_teacher_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(p_teacher || p_student) at temperature T, scaled by T², averaged over the batch.

    KL = T² · mean_b Σ_c p_t(c) · (log p_t(c) − log p_s(c)),  p = softmax(logits / T).

    The official code logs the cross-entropy to the teacher instead; it differs from this KL by the
    teacher's entropy, a constant, so the gradient (the "general direction") is the same and this
    value is 0 when the student agrees with the teacher.

    Args:
        student_logits: (batch, n_cls) logits of the learned prompt.
        teacher_logits: (batch, n_cls) zero-shot logits of the hand-crafted prompt (no gradient
            flows into them).
        temperature: T > 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student_log_prob = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_prob = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = F.kl_div(student_log_prob, teacher_log_prob, log_target=True, reduction="batchmean")
    return kl * temperature * temperature


class Projection(NamedTuple):
    """Result of :func:`project_conflicting_gradient`.

    gradient: the update direction, fp32, shape of g_ce.
    conflicted: whether g_ce·g_kl < 0 (the projection was applied).
    cosine: cos(g_ce, g_kl); 0 when either norm is 0.
    removed_norm: |g_ce − gradient|, the norm the projection took away (0 when not conflicted).
    """

    gradient: torch.Tensor
    conflicted: bool
    cosine: float
    removed_norm: float


def project_conflicting_gradient(
    ce_gradient: torch.Tensor, kl_gradient: torch.Tensor, lambda_: float
) -> Projection:
    """ProGrad's update rule, on flattened gradients.

    g = g_ce − λ · (g_ce·g_kl / |g_kl|²) · g_kl   if g_ce·g_kl < 0,
    g = g_ce                                       otherwise.

    With λ = 1 a conflicting g_ce loses its whole component along g_kl (g ⟂ g_kl); λ = 0 returns
    g_ce. When |g_kl| = 0 there is no general direction to protect, so g_ce is returned unchanged.
    Non-finite inputs give a non-finite gradient, so a caller's finiteness check skips the step.

    Args:
        ce_gradient: gradient of the cross-entropy, any shape.
        kl_gradient: gradient of the KL term, same shape.
        lambda_: projection strength λ in [0, 1].
    """
    if ce_gradient.shape != kl_gradient.shape:
        raise ValueError(
            f"g_ce and g_kl must have the same shape, got {tuple(ce_gradient.shape)} and "
            f"{tuple(kl_gradient.shape)}"
        )
    g_ce = ce_gradient.float()
    g_kl = kl_gradient.float()
    dot = torch.dot(g_ce.flatten(), g_kl.flatten())
    kl_norm_sq = torch.dot(g_kl.flatten(), g_kl.flatten())
    ce_norm = torch.linalg.vector_norm(g_ce)
    if not (torch.isfinite(dot) and torch.isfinite(kl_norm_sq) and torch.isfinite(ce_norm)):
        return Projection(torch.full_like(g_ce, float("nan")), False, float("nan"), float("nan"))

    norms = ce_norm * kl_norm_sq.sqrt()
    cosine = (dot / norms).item() if norms > 0 else 0.0
    if dot >= 0 or kl_norm_sq == 0:
        return Projection(g_ce, False, cosine, 0.0)
    removed = (lambda_ * dot / kl_norm_sq) * g_kl
    return Projection(g_ce - removed, True, cosine, torch.linalg.vector_norm(removed).item())


class GradientDiagnostics:
    """Running statistics of the projections of an epoch: whether λ matters on a dataset.

    conflict_share: fraction of steps with g_ce·g_kl < 0.
    mean_cosine: mean cos(g_ce, g_kl).
    mean_removed_norm: mean |g_ce − g| (0 on steps without conflict).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.conflicts = 0
        self.cosine_sum = 0.0
        self.removed_norm_sum = 0.0

    def add(self, projection: Projection, gradient_scale: float = 1.0) -> None:
        """Record one step; `gradient_scale` is the loss scale the gradients carry (amp)."""
        if not math.isfinite(projection.cosine):
            return  # a skipped step: no direction to speak of
        self.steps += 1
        self.conflicts += int(projection.conflicted)
        self.cosine_sum += projection.cosine
        self.removed_norm_sum += projection.removed_norm / gradient_scale

    def summary(self) -> dict[str, float]:
        steps = max(self.steps, 1)
        return {
            "conflict_share": self.conflicts / steps,
            "mean_cosine": self.cosine_sum / steps,
            "mean_removed_norm": self.removed_norm_sum / steps,
        }
