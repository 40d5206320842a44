"""ProGrad's math as pure torch functions: the two loss terms and the gradient projection.

No config, no Dassl. Everything here is computed in fp32 whatever the dtype of the inputs, because
fp16 dot products and squared norms of prompt gradients overflow or underflow easily.

Paper: Zhu et al., "Prompt-aligned Gradient for Prompt Tuning", ICCV 2023, Eq. (3)-(5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .precision import flatten, unflatten


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
    conflicted: whether g_ce·g_kl < 0 (ProGrad's rule projects exactly then).
    cosine: cos(g_ce, g_kl); 0 when either norm is 0.
    removed_norm: |g_ce − gradient|, the norm the projection took away (0 when not projected).
    """

    gradient: torch.Tensor
    conflicted: bool
    cosine: float
    removed_norm: float


def project_conflicting_gradient(
    ce_gradient: torch.Tensor, kl_gradient: torch.Tensor, lambda_: float, always: bool = False
) -> Projection:
    """ProGrad's update rule, on flattened gradients.

    g = g_ce − λ · (g_ce·g_kl / |g_kl|²) · g_kl   if g_ce·g_kl < 0 (or always),
    g = g_ce                                       otherwise.

    With λ = 1 a conflicting g_ce loses its whole component along g_kl (g ⟂ g_kl); λ = 0 returns
    g_ce. When |g_kl| = 0 there is no general direction to protect, so g_ce is returned unchanged.
    Non-finite inputs give a non-finite gradient, so a caller's finiteness check skips the step.

    always=True is the paper's "always project" ablation (``LOSS.NAME vertical_grad``, the first
    version of the official code): the component along g_kl is removed at every step, also when
    the two directions agree, so with λ = 1 the update is always orthogonal to g_kl.

    Args:
        ce_gradient: gradient of the cross-entropy, any shape.
        kl_gradient: gradient of the KL term, same shape.
        lambda_: projection strength λ in [0, 1].
        always: project whatever the sign of g_ce·g_kl.
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
    if (dot >= 0 and not always) or kl_norm_sq == 0:
        return Projection(g_ce, False, cosine, 0.0)
    removed = (lambda_ * dot / kl_norm_sq) * g_kl
    conflicted = bool(dot < 0)
    return Projection(g_ce - removed, conflicted, cosine, torch.linalg.vector_norm(removed).item())


# LOSS.PROJECTION: how ProGrad's rule treats a prompt learner with several parameter tensors.
PROJECTIONS = ("per_tensor", "whole")


class ParameterProjection(NamedTuple):
    """Result of :func:`project_parameter_gradients`: ProGrad's update of a prompt learner.

    gradients: the update of each parameter tensor, fp32, shaped as the parameter.
    conflicted: whether the projection was applied (to any tensor, per tensor).
    cosine: cos(g_ce, g_kl) of the whole gradient vectors; 0 when either norm is 0.
    removed_norm: |g_ce − g| over all parameters, the norm the projection took away.
    """

    gradients: list[torch.Tensor]
    conflicted: bool
    cosine: float
    removed_norm: float


def project_parameter_gradients(
    ce_gradients: Sequence[torch.Tensor],
    kl_gradients: Sequence[torch.Tensor],
    lambda_: float,
    per_tensor: bool = True,
    always: bool = False,
) -> ParameterProjection:
    """ProGrad's rule over all the trainable tensors of a prompt learner.

    per_tensor=True (the official code, `prograd_backward_and_update` of its Dassl fork): each
    tensor p is projected on its own, g_p = g_ce,p − λ · (g_ce,p·g_kl,p / |g_kl,p|²) · g_kl,p where
    g_ce,p·g_kl,p < 0. With λ = 1 no tensor's update conflicts with its part of g_kl, so the whole
    update does not conflict either (a sum of non-negative dot products).
    per_tensor=False: the tensors form one vector, projected as one (the paper's formula applied
    to that vector): the least change that ends orthogonal to the whole g_kl (λ = 1).
    With one tensor (CoOp's context) the two are the same computation.

    Args:
        ce_gradients: gradient of the domain loss (cross-entropy) for each tensor.
        kl_gradients: gradient of the general loss (KL to zero-shot CLIP), same shapes.
        lambda_: projection strength λ in [0, 1].
        per_tensor: project each tensor on its own (True) or the whole vector (False).
        always: remove the component along g_kl at every step, conflict or not (the
            ``vertical_grad`` ablation; see :func:`project_conflicting_gradient`).
    """
    if len(ce_gradients) != len(kl_gradients):
        raise ValueError(
            f"got {len(ce_gradients)} g_ce tensors and {len(kl_gradients)} g_kl tensors; give "
            f"one of each per parameter"
        )
    if not per_tensor:
        whole = project_conflicting_gradient(
            flatten(ce_gradients), flatten(kl_gradients), lambda_, always
        )
        gradients = unflatten(whole.gradient, ce_gradients)
        return ParameterProjection(gradients, whole.conflicted, whole.cosine, whole.removed_norm)
    projections = [
        project_conflicting_gradient(g_ce, g_kl, lambda_, always)
        for g_ce, g_kl in zip(ce_gradients, kl_gradients, strict=True)
    ]
    if len(projections) == 1:
        (only,) = projections
        return ParameterProjection([only.gradient], only.conflicted, only.cosine, only.removed_norm)
    dot = sum(_dot(g_ce, g_kl) for g_ce, g_kl in zip(ce_gradients, kl_gradients, strict=True))
    norms = math.sqrt(sum(_dot(g, g) for g in ce_gradients) * sum(_dot(g, g) for g in kl_gradients))
    if not (math.isfinite(dot) and math.isfinite(norms)):
        cosine = float("nan")  # a step that will be skipped
    else:
        cosine = dot / norms if norms > 0 else 0.0
    removed = math.sqrt(sum(p.removed_norm**2 for p in projections))
    return ParameterProjection(
        [p.gradient for p in projections],
        any(p.conflicted for p in projections),
        cosine,
        removed,
    )


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.dot(a.float().flatten(), b.float().flatten()).item()


class GradientDiagnostics:
    """Running statistics of the projections of an epoch: whether λ matters on a dataset.

    conflict_share: fraction of steps with g_ce·g_kl < 0 (in some tensor, projecting per tensor).
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
