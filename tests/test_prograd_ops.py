"""Properties of ProGrad's loss terms and gradient projection (pure torch, no Dassl)."""

import math

import pytest
import torch

from trainers.prograd_ops import (
    cross_entropy_loss,
    kl_to_teacher_loss,
    project_conflicting_gradient,
    project_parameter_gradients,
)


def test_aligned_gradients_are_unchanged():
    """g_ce·g_kl >= 0 leaves g_ce exactly as it is."""
    g_ce = torch.tensor([1.0, 2.0, -0.5])
    g_kl = torch.tensor([0.5, 1.0, 3.0])  # dot = 0.5 + 2 - 1.5 = 1.0 > 0
    result = project_conflicting_gradient(g_ce, g_kl, lambda_=1.0)
    assert not result.conflicted
    assert torch.equal(result.gradient, g_ce)
    assert result.removed_norm == 0.0


def test_conflicting_gradient_with_lambda_one_ends_orthogonal_to_kl():
    """With λ=1 a conflicting g_ce loses its whole component along g_kl."""
    torch.manual_seed(0)
    g_kl = torch.randn(64)
    g_ce = -2.0 * g_kl + torch.randn(64)
    result = project_conflicting_gradient(g_ce, g_kl, lambda_=1.0)
    assert result.conflicted
    assert torch.dot(result.gradient, g_kl).abs() < 1e-4 * g_ce.norm() * g_kl.norm()
    expected = g_ce - torch.dot(g_ce, g_kl) / torch.dot(g_kl, g_kl) * g_kl
    torch.testing.assert_close(result.gradient, expected)
    assert result.cosine < 0
    assert result.removed_norm == pytest.approx((g_ce - expected).norm().item(), rel=1e-5)


def test_partial_lambda_matches_paper_formula():
    """g = g_ce − λ·(g_ce·g_kl/|g_kl|²)·g_kl, checked by hand on 2-D vectors."""
    g_ce = torch.tensor([1.0, -1.0])
    g_kl = torch.tensor([0.0, 2.0])  # dot = -2, |g_kl|² = 4 -> coefficient -0.5
    result = project_conflicting_gradient(g_ce, g_kl, lambda_=0.5)
    torch.testing.assert_close(result.gradient, torch.tensor([1.0, -0.5]))
    assert result.cosine == pytest.approx(-1 / math.sqrt(2))


def test_lambda_zero_leaves_ce_gradient_unchanged():
    """λ=0 returns g_ce bit for bit, even when the gradients conflict."""
    torch.manual_seed(1)
    g_kl = torch.randn(100)
    g_ce = -g_kl + 0.1 * torch.randn(100)
    result = project_conflicting_gradient(g_ce, g_kl, lambda_=0.0)
    assert result.conflicted
    assert torch.equal(result.gradient, g_ce)


def test_zero_kl_gradient_is_safe():
    """|g_kl| = 0 gives g_ce back, no NaN."""
    g_ce = torch.tensor([1.0, 2.0])
    result = project_conflicting_gradient(g_ce, torch.zeros(2), lambda_=1.0)
    assert torch.equal(result.gradient, g_ce)
    assert not result.conflicted and result.cosine == 0.0


def test_fp16_inputs_are_projected_in_fp32():
    """fp16 gradients whose dot product overflows fp16 are still projected exactly in fp32."""
    g_kl = torch.full((1000,), 30.0, dtype=torch.float16)  # |g_kl|² = 900000 > fp16 max
    g_ce = torch.full((1000,), -20.0, dtype=torch.float16)
    assert not torch.isfinite(torch.dot(g_kl, g_kl))  # what fp16 arithmetic would give
    result = project_conflicting_gradient(g_ce, g_kl, lambda_=1.0)
    assert result.gradient.dtype == torch.float32
    assert torch.isfinite(result.gradient).all()
    torch.testing.assert_close(result.gradient, torch.zeros(1000), atol=1e-4, rtol=0)


def test_non_finite_gradient_gives_non_finite_update():
    """An inf/NaN in either gradient makes the result non-finite, so the step is skipped."""
    g = torch.ones(3)
    bad = torch.tensor([1.0, float("inf"), 0.0])
    assert not torch.isfinite(project_conflicting_gradient(bad, g, 1.0).gradient).all()
    assert not torch.isfinite(project_conflicting_gradient(g, bad, 1.0).gradient).all()


def test_shape_mismatch_is_rejected():
    """g_ce and g_kl of different shapes raise a ValueError naming both shapes."""
    with pytest.raises(ValueError, match=r"\(3,\) and \(4,\)"):
        project_conflicting_gradient(torch.ones(3), torch.ones(4), 1.0)


def test_kl_value_and_gradient_match_hand_computation():
    """KL·T² and its gradient w.r.t. the student logits agree with the closed form, T = 2."""
    temperature = 2.0
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 1.0, 0.0], [2.0, -1.0, 0.0]])
    p_t = torch.softmax(teacher / temperature, dim=-1)
    p_s = torch.softmax(student.detach() / temperature, dim=-1)
    expected = (p_t * (p_t.log() - p_s.log())).sum(-1).mean() * temperature**2
    loss = kl_to_teacher_loss(student, teacher, temperature)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    # d/ds [T² · KL(p_t || softmax(s/T))] / B = T · (p_s − p_t) / B
    torch.testing.assert_close(student.grad, temperature * (p_s - p_t) / student.shape[0])


def test_kl_is_zero_when_student_equals_teacher():
    """The KL term vanishes when the prompt predicts what the hand-crafted prompt predicts."""
    logits = torch.randn(4, 5)
    assert kl_to_teacher_loss(logits, logits, 1.5).abs() < 1e-6


def test_kl_does_not_backpropagate_into_the_teacher():
    """The teacher's logits get no gradient."""
    teacher = torch.randn(2, 3, requires_grad=True)
    kl_to_teacher_loss(torch.randn(2, 3, requires_grad=True), teacher, 1.0).backward()
    assert teacher.grad is None


def test_losses_are_fp32_for_fp16_logits():
    """Both loss terms are computed in fp32 whatever the logits' dtype."""
    student = torch.randn(2, 3).half()
    assert cross_entropy_loss(student, torch.tensor([0, 2])).dtype == torch.float32
    assert kl_to_teacher_loss(student, torch.randn(2, 3).half(), 1.0).dtype == torch.float32


def test_non_positive_temperature_is_rejected():
    """T <= 0 raises a ValueError with the value."""
    with pytest.raises(ValueError, match="got 0"):
        kl_to_teacher_loss(torch.zeros(1, 2), torch.zeros(1, 2), 0)


def test_diagnostics_average_conflicts_cosines_and_removed_norms():
    """Per-epoch share of conflicts, mean cosine and mean removed norm, by hand; scale undone."""
    from trainers.prograd_ops import GradientDiagnostics

    diagnostics = GradientDiagnostics()
    aligned = project_conflicting_gradient(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), 1.0)
    conflicting = project_conflicting_gradient(
        torch.tensor([-2.0, 2.0]), torch.tensor([1.0, 0.0]), 1.0
    )  # cos = -1/sqrt(2), removes (-2, 0): norm 2
    diagnostics.add(aligned, gradient_scale=4.0)
    diagnostics.add(conflicting, gradient_scale=4.0)
    diagnostics.add(project_conflicting_gradient(torch.tensor([float("nan")]), torch.ones(1), 1.0))
    summary = diagnostics.summary()
    assert summary["conflict_share"] == 0.5
    assert summary["mean_cosine"] == pytest.approx((1 - 1 / math.sqrt(2)) / 2)
    assert summary["mean_removed_norm"] == pytest.approx((0 + 2 / 4) / 2)


# ProGrad's rule over several parameter tensors (LOSS.PROJECTION per_tensor / whole).


def several_tensors(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """g_ce, g_kl for a (4, 8) context and a (3,) bias: the context conflicts, the bias agrees
    strongly enough that the whole vectors do not conflict."""
    generator = torch.Generator().manual_seed(seed)
    kl_ctx = torch.randn(4, 8, generator=generator)
    ce_ctx = -0.5 * kl_ctx + 0.1 * torch.randn(4, 8, generator=generator)
    kl_bias = torch.tensor([5.0, -3.0, 4.0])
    ce_bias = 2.0 * kl_bias
    return [ce_ctx, ce_bias], [kl_ctx, kl_bias]


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.flatten(), b.flatten()))


@pytest.mark.parametrize("per_tensor", [True, False])
def test_one_tensor_projections_coincide_with_the_flat_rule(per_tensor):
    """CoOp's single context: both readings give project_conflicting_gradient, bit for bit."""
    torch.manual_seed(2)
    g_kl = torch.randn(16, 8)
    g_ce = -g_kl + 0.5 * torch.randn(16, 8)
    flat = project_conflicting_gradient(g_ce.flatten(), g_kl.flatten(), 0.8)
    result = project_parameter_gradients([g_ce], [g_kl], 0.8, per_tensor=per_tensor)
    assert result.conflicted and flat.conflicted
    assert torch.equal(result.gradients[0], flat.gradient.view(16, 8))
    assert (result.cosine, result.removed_norm) == (flat.cosine, flat.removed_norm)


def test_whole_vector_projection_with_lambda_one_ends_orthogonal_to_all_of_g_kl():
    """per_tensor=False, λ=1, conflicting whole vectors: Σ_p g_p·g_kl,p = 0."""
    torch.manual_seed(3)
    g_kl = [torch.randn(4, 8), torch.randn(3)]
    g_ce = [-g + 0.3 * torch.randn_like(g) for g in g_kl]
    result = project_parameter_gradients(g_ce, g_kl, 1.0, per_tensor=False)
    assert result.conflicted and result.cosine < 0
    total = sum(dot(g, k) for g, k in zip(result.gradients, g_kl, strict=True))
    scale = math.sqrt(sum(dot(g, g) for g in g_ce) * sum(dot(k, k) for k in g_kl))
    assert abs(total) < 1e-5 * scale
    assert [g.shape for g in result.gradients] == [g.shape for g in g_ce]


def test_per_tensor_projection_with_lambda_one_leaves_no_tensor_conflicting():
    """per_tensor=True, λ=1: the conflicting tensor ends orthogonal to its g_kl, the other is
    unchanged, so the whole update does not conflict either."""
    g_ce, g_kl = several_tensors(seed=4)
    assert dot(g_ce[0], g_kl[0]) < 0 < dot(g_ce[1], g_kl[1])
    result = project_parameter_gradients(g_ce, g_kl, 1.0, per_tensor=True)
    assert result.conflicted
    assert abs(dot(result.gradients[0], g_kl[0])) < 1e-5 * g_ce[0].norm() * g_kl[0].norm()
    assert torch.equal(result.gradients[1], g_ce[1])
    assert sum(dot(g, k) for g, k in zip(result.gradients, g_kl, strict=True)) >= 0
    removed = (g_ce[0] - result.gradients[0]).norm()
    assert result.removed_norm == pytest.approx(float(removed), rel=1e-5)


def test_the_two_readings_differ_when_one_tensor_conflicts_and_the_whole_does_not():
    """Several tensors: per tensor projects the conflicting context; the whole vector, whose dot
    product is positive, is left as it is."""
    g_ce, g_kl = several_tensors(seed=5)
    assert sum(dot(c, k) for c, k in zip(g_ce, g_kl, strict=True)) > 0
    whole = project_parameter_gradients(g_ce, g_kl, 1.0, per_tensor=False)
    per_tensor = project_parameter_gradients(g_ce, g_kl, 1.0, per_tensor=True)
    assert not whole.conflicted and per_tensor.conflicted
    assert all(torch.equal(g, c) for g, c in zip(whole.gradients, g_ce, strict=True))
    assert not torch.equal(per_tensor.gradients[0], g_ce[0])
    assert whole.cosine == pytest.approx(per_tensor.cosine, rel=1e-5) and whole.cosine > 0


@pytest.mark.parametrize("per_tensor", [True, False])
def test_lambda_zero_leaves_every_tensor_unchanged(per_tensor):
    """λ=0 returns each g_ce bit for bit, conflicting or not, in both readings."""
    g_ce, g_kl = several_tensors(seed=6)
    g_ce[1] = -g_ce[1]  # every tensor conflicts now
    result = project_parameter_gradients(g_ce, g_kl, 0.0, per_tensor=per_tensor)
    assert result.conflicted
    assert all(torch.equal(g, c) for g, c in zip(result.gradients, g_ce, strict=True))


@pytest.mark.parametrize("per_tensor", [True, False])
def test_a_non_finite_tensor_makes_the_update_non_finite(per_tensor):
    """inf/NaN in any tensor: a non-finite update (the step is skipped) and a NaN cosine."""
    g_ce, g_kl = several_tensors(seed=7)
    g_kl[1] = torch.tensor([1.0, float("nan"), 0.0])
    result = project_parameter_gradients(g_ce, g_kl, 1.0, per_tensor=per_tensor)
    assert not all(bool(torch.isfinite(g).all()) for g in result.gradients)
    assert math.isnan(result.cosine)


def test_mismatched_gradient_lists_are_rejected():
    """One g_ce and one g_kl per parameter, else a ValueError with both counts."""
    with pytest.raises(ValueError, match="2 g_ce tensors and 1 g_kl"):
        project_parameter_gradients([torch.ones(2), torch.ones(2)], [torch.ones(2)], 1.0)


# LOSS.NAME vertical_grad: the "always project" ablation


def _official_vertical_grad(g_ce: torch.Tensor, g_kl: torch.Tensor, lambda_: float):
    """The update of the first official code's vertical_grad_backward_and_update, per tensor."""
    unit = g_kl / torch.linalg.norm(g_kl)
    return g_ce - lambda_ * torch.dot(g_ce.flatten(), unit.flatten()) * unit


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_always_project_removes_the_general_component_whatever_the_sign(sign):
    """always=True with λ=1 ends orthogonal to g_kl whether the gradients agree or conflict."""
    torch.manual_seed(1)
    g_kl = torch.randn(32)
    g_ce = sign * 2.0 * g_kl + torch.randn(32)
    result = project_conflicting_gradient(g_ce, g_kl, lambda_=1.0, always=True)
    assert result.conflicted == (sign < 0)
    assert torch.dot(result.gradient, g_kl).abs() < 1e-4 * g_ce.norm() * g_kl.norm()
    assert result.removed_norm > 0
    torch.testing.assert_close(result.gradient, _official_vertical_grad(g_ce, g_kl, 1.0))


def test_always_project_equals_prograd_on_conflict_and_differs_on_agreement():
    """On conflict both rules give the same update; on agreement only always=True changes g_ce."""
    torch.manual_seed(2)
    g_kl = torch.randn(16)
    conflicting = -g_kl + 0.1 * torch.randn(16)
    agreeing = g_kl + 0.1 * torch.randn(16)
    for lambda_ in (0.25, 0.8):
        torch.testing.assert_close(
            project_conflicting_gradient(conflicting, g_kl, lambda_, always=True).gradient,
            project_conflicting_gradient(conflicting, g_kl, lambda_).gradient,
        )
        projected = project_conflicting_gradient(agreeing, g_kl, lambda_, always=True).gradient
        torch.testing.assert_close(projected, _official_vertical_grad(agreeing, g_kl, lambda_))
        assert not torch.allclose(projected, agreeing)


@pytest.mark.parametrize("per_tensor", [True, False])
def test_always_project_per_parameter_with_lambda_zero_is_the_identity(per_tensor):
    """λ=0 leaves every tensor unchanged also when projecting at every step."""
    torch.manual_seed(3)
    g_ce = [torch.randn(4, 8), torch.randn(5)]
    g_kl = [g.clone() for g in g_ce]  # agreeing: vertical_grad would remove all of it at λ=1
    result = project_parameter_gradients(g_ce, g_kl, 0.0, per_tensor, always=True)
    for got, expected in zip(result.gradients, g_ce, strict=True):
        torch.testing.assert_close(got, expected)
    removed = project_parameter_gradients(g_ce, g_kl, 1.0, per_tensor, always=True)
    for got in removed.gradients:
        assert got.abs().max() < 1e-5
