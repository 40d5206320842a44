"""The losses of the paper's comparison rows as pure torch functions: KgCoOp and CoOp + KD.

No config, no Dassl. Computed in fp32 whatever the dtype of the inputs, as in prograd_ops.

KgCoOp: Yao et al., "Visual-Language Prompt Tuning with Knowledge-guided Context Optimization",
CVPR 2023, Eq. (5)-(6); official code htyao89/KgCoOp, trainers/kgcoop.py.
KD: the distillation baseline of the ProGrad paper, as in the first version of the official
ProGrad code (BeierZhu/Prompt-align, commit 27ddd3b, `KnowledgeDistillLoss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .prograd_ops import cross_entropy_loss, kl_to_teacher_loss

# The eps of the official code's torch.nn.CosineSimilarity(dim=1, eps=1e-07).
COSINE_EPS = 1e-7


def knowledge_guided_loss(
    student_text_features: torch.Tensor, teacher_text_features: torch.Tensor
) -> torch.Tensor:
    """KgCoOp's regulariser: 1 − mean over classes of cos(w_c, w_c^clip), in fp32.

    L_kg = 1 − (1/C) Σ_c cos(w_c, w_c^clip), with w_c the text feature of the learned prompt of
    class c and w_c^clip that of its hand-crafted prompt. 0 when the learned prompts give the
    hand-crafted features (up to scale); at most 2.

    Args:
        student_text_features: (C, D) text features of the learned prompts (any scale).
        teacher_text_features: (C, D) text features of the hand-crafted prompts; no gradient
            flows into them.
    """
    if student_text_features.shape != teacher_text_features.shape:
        raise ValueError(
            f"student and teacher text features must have the same shape (classes, width), got "
            f"{tuple(student_text_features.shape)} and {tuple(teacher_text_features.shape)}"
        )
    cosine = F.cosine_similarity(
        student_text_features.float(),
        teacher_text_features.detach().float(),
        dim=-1,
        eps=COSINE_EPS,
    )
    return 1.0 - cosine.mean()


def kgcoop_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    student_text_features: torch.Tensor,
    teacher_text_features: torch.Tensor,
    weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """KgCoOp's objective: CE(student_logits, labels) + W · L_kg, in fp32.

    Args:
        student_logits: (B, C) logits of the learned prompts.
        labels: (B,) class indices.
        student_text_features: (C, D) text features of the learned prompts.
        teacher_text_features: (C, D) text features of the hand-crafted prompts.
        weight: W >= 0 (TRAINER.COOP.W; the official scripts use 8.0).

    Returns:
        (total, cross-entropy, L_kg), each an fp32 scalar.
    """
    if not weight >= 0:
        raise ValueError(f"the KgCoOp weight W must be >= 0, got {weight}")
    xe_loss = cross_entropy_loss(student_logits, labels)
    kg_loss = knowledge_guided_loss(student_text_features, teacher_text_features)
    return xe_loss + weight * kg_loss, xe_loss, kg_loss


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CoOp + KD: (1 − α) · CE(student, labels) + α · T² · KL(p_teacher ‖ p_student), in fp32.

    The official code writes the second term as the cross-entropy to the teacher's soft labels;
    it differs from the KL by the teacher's entropy, a constant, so the gradients are the same.
    α = 0 is CoOp's loss, α = 1 pure distillation towards the zero-shot prediction.

    Args:
        student_logits: (B, C) logits of the learned prompts.
        teacher_logits: (B, C) zero-shot logits of the hand-crafted prompts (no gradient).
        labels: (B,) class indices.
        alpha: α in [0, 1] (LOSS.ALPHA).
        temperature: T > 0 (LOSS.T).

    Returns:
        (total, cross-entropy, T²·KL), each an fp32 scalar.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the distillation weight alpha must lie in [0, 1], got {alpha}")
    xe_loss = cross_entropy_loss(student_logits, labels)
    kl_loss = kl_to_teacher_loss(student_logits, teacher_logits, temperature)
    return (1.0 - alpha) * xe_loss + alpha * kl_loss, xe_loss, kl_loss
