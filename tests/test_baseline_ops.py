"""KgCoOp's and CoOp + KD's losses against hand computations (pure torch, no Dassl)."""

import math

import pytest
import torch

from trainers.baseline_ops import distillation_loss, kgcoop_loss, knowledge_guided_loss
from trainers.prograd_ops import cross_entropy_loss


def test_knowledge_guided_loss_matches_hand_computation():
    """1 − mean_c cos(w_c, w_c^clip) on 2-D vectors: cosines 1, 0 and −1/√2, by hand."""
    student = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    expected = 1.0 - (1.0 + 0.0 - 1.0 / math.sqrt(2.0)) / 3.0
    assert knowledge_guided_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_knowledge_guided_loss_is_zero_for_the_hand_crafted_features_at_any_scale():
    """The learned prompts reproducing the hand-crafted features (any scale): no penalty."""
    teacher = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    assert knowledge_guided_loss(3.0 * teacher, teacher).abs() < 1e-6


def test_knowledge_guided_gradient_matches_the_closed_form():
    """∂L_kg/∂w_c = −(1/C) (t̂_c − cos_c ŵ_c) / |w_c|, with ŵ, t̂ the unit vectors."""
    torch.manual_seed(0)
    student = torch.randn(4, 6, requires_grad=True)
    teacher = torch.randn(4, 6)
    knowledge_guided_loss(student, teacher).backward()
    w = student.detach()
    w_hat = w / w.norm(dim=-1, keepdim=True)
    t_hat = teacher / teacher.norm(dim=-1, keepdim=True)
    cosine = (w_hat * t_hat).sum(-1, keepdim=True)
    expected = -(t_hat - cosine * w_hat) / w.norm(dim=-1, keepdim=True) / 4
    torch.testing.assert_close(student.grad, expected)


def test_knowledge_guided_loss_does_not_backpropagate_into_the_teacher():
    """The hand-crafted features are fixed: they get no gradient."""
    teacher = torch.randn(3, 4, requires_grad=True)
    knowledge_guided_loss(torch.randn(3, 4, requires_grad=True), teacher).backward()
    assert teacher.grad is None


def test_kgcoop_loss_is_cross_entropy_plus_weighted_regulariser():
    """CE + W · L_kg, with CE by hand: −log softmax(logits)[label] averaged over the batch."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    hand_ce = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(1 / (1 + math.exp(1)))) / 2
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # cosines 1 and 0: L_kg = 0.5
    total, xe_loss, kg_loss = kgcoop_loss(logits, labels, student, teacher, weight=8.0)
    assert xe_loss.item() == pytest.approx(hand_ce, rel=1e-6)
    assert kg_loss.item() == pytest.approx(0.5, rel=1e-6)
    assert total.item() == pytest.approx(hand_ce + 8.0 * 0.5, rel=1e-6)


def test_kgcoop_with_weight_zero_is_cross_entropy():
    """W = 0 leaves CoOp's loss, bit for bit."""
    logits, labels = torch.randn(3, 5), torch.tensor([0, 4, 2])
    total, _, _ = kgcoop_loss(logits, labels, torch.randn(5, 7), torch.randn(5, 7), weight=0.0)
    assert torch.equal(total, cross_entropy_loss(logits, labels))


def test_kgcoop_rejects_a_negative_weight_and_mismatched_features():
    """W < 0 and features of different shapes are ValueErrors naming the value / shapes."""
    with pytest.raises(ValueError, match="W must be >= 0, got -1"):
        kgcoop_loss(torch.zeros(1, 2), torch.tensor([0]), torch.ones(2, 3), torch.ones(2, 3), -1)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(3, 3\)"):
        knowledge_guided_loss(torch.ones(2, 3), torch.ones(3, 3))


def test_distillation_loss_matches_hand_computation():
    """(1 − α) CE + α T² KL(p_t ‖ p_s) with α = 0.25, T = 2, each term by hand."""
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    teacher = torch.tensor([[0.0, 1.0, 0.0], [2.0, -1.0, 0.0]])
    labels = torch.tensor([2, 0])
    alpha, temperature = 0.25, 2.0
    p_s = torch.softmax(student / temperature, -1)
    p_t = torch.softmax(teacher / temperature, -1)
    hand_kl = temperature**2 * (p_t * (p_t.log() - p_s.log())).sum(-1).mean()
    log_p = torch.log_softmax(student, -1)
    hand_ce = -(log_p[0, 2] + log_p[1, 0]) / 2
    total, xe_loss, kl_loss = distillation_loss(student, teacher, labels, alpha, temperature)
    torch.testing.assert_close(xe_loss, hand_ce)
    torch.testing.assert_close(kl_loss, hand_kl)
    torch.testing.assert_close(total, 0.75 * hand_ce + 0.25 * hand_kl)


def test_distillation_gradient_equals_the_official_cross_entropy_form():
    """The official code's −Σ p_t log p_s · T² has the same gradient as our KL form."""
    torch.manual_seed(2)
    student = torch.randn(4, 6, requires_grad=True)
    teacher, labels = torch.randn(4, 6), torch.randint(6, (4,))
    alpha, temperature = 0.3, 1.5
    distillation_loss(student, teacher, labels, alpha, temperature)[0].backward()
    ours = student.grad.clone()
    student.grad = None
    p_t = torch.softmax(teacher / temperature, -1)
    soft = -(p_t * torch.log_softmax(student / temperature, -1)).sum(1).mean() * temperature**2
    official = (1 - alpha) * torch.nn.functional.cross_entropy(student, labels) + alpha * soft
    official.backward()
    torch.testing.assert_close(ours, student.grad)


def test_distillation_with_alpha_zero_is_cross_entropy_and_with_one_is_kl():
    """α = 0 gives CE bit for bit (CoOp); α = 1 gives the KL term alone."""
    student, teacher, labels = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([1, 0, 3])
    total, xe_loss, _ = distillation_loss(student, teacher, labels, 0.0, 1.0)
    assert torch.equal(total, xe_loss)
    total, _, kl_loss = distillation_loss(student, teacher, labels, 1.0, 1.0)
    assert torch.equal(total, kl_loss)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_distillation_rejects_alpha_outside_the_unit_interval(alpha):
    """α outside [0, 1] is a ValueError with the value."""
    with pytest.raises(ValueError, match=f"got {alpha}"):
        distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0]), alpha, 1.0)


def test_losses_are_fp32_for_fp16_inputs():
    """Both losses are computed in fp32 whatever the inputs' dtype."""
    logits, labels = torch.randn(2, 3).half(), torch.tensor([0, 2])
    features = torch.randn(3, 4).half()
    assert kgcoop_loss(logits, labels, features, features, 8.0)[0].dtype == torch.float32
    assert distillation_loss(logits, logits, labels, 0.5, 1.0)[0].dtype == torch.float32
