"""ProGrad's rule for your own prompt learner: the trainer of docs/extending.md's section
"ProGrad for your own prompt learner", defined here, registered with real Dassl and trained."""

from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
from dassl.engine import TRAINER_REGISTRY  # noqa: E402

from devkit.train_runs import build, snapshot  # noqa: E402
from trainers.clip_prompt import (  # noqa: E402
    CustomCLIP,
    PromptLearner,
    template_for,
    zero_shot_text_features,
)
from trainers.coop import CoOp, context_init  # noqa: E402
from trainers.prograd import check_loss_cfg  # noqa: E402
from trainers.prograd_ops import cross_entropy_loss, kl_to_teacher_loss  # noqa: E402
from trainers.steps import prograd_rule  # noqa: E402

# ---- the manual's example (docs/extending.md), as a user writes it ----


class ShiftedPromptLearner(PromptLearner):
    """CoOp's context plus one learned vector added to every context token."""

    def __init__(self, clip_model, classnames, n_ctx, init_words=None):
        super().__init__(clip_model, classnames, n_ctx, init_words)
        self.shift = nn.Parameter(torch.zeros_like(self.ctx[0]))

    def split(self):
        shared, rest = super().split()  # [SOS][ctx_1..ctx_M], the class positions
        return torch.cat([shared[:1], shared[1:] + self.shift]), rest


@TRAINER_REGISTRY.register()
class ShiftedProGrad(CoOp):
    """ProGrad's update over both trainable tensors of ShiftedPromptLearner (ctx and shift)."""

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_loss_cfg(cfg)  # LOSS.LAMBDA, LOSS.T, LOSS.PROJECTION

    def build_custom_clip(self, clip_model, classnames):
        n_ctx, init_words = context_init(self.cfg)
        learner = ShiftedPromptLearner(clip_model, classnames, n_ctx, init_words)
        template = template_for(self.cfg.DATASET.NAME)
        teacher = zero_shot_text_features(clip_model, classnames, template, self.device)
        return CustomCLIP(clip_model, learner, teacher)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            student, teacher = self.model(image, return_teacher=True)
        xe_loss = cross_entropy_loss(student, label)  # the domain loss
        kl_loss = kl_to_teacher_loss(student, teacher, self.cfg.LOSS.T)  # the general loss
        params, lambda_ = self.trainable_params, self.cfg.LOSS.LAMBDA
        per_tensor = self.cfg.LOSS.PROJECTION == "per_tensor"
        update = prograd_rule(xe_loss, kl_loss, params, self.precision, lambda_, per_tensor)
        self.step(update.gradients)  # skips a non-finite step
        self.end_of_step()
        conflict = float(update.conflicted)
        return {"xe_loss": xe_loss.item(), "kl_loss": kl_loss.item(), "conflict": conflict}


# ---- the tests ----

PROGRAD_YAML = "configs/trainers/ProGrad/rn50.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from devkit.synthetic_data import write_caltech101

    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=4, images_per_class=8)


@pytest.mark.parametrize("projection", ["per_tensor", "whole"])
def test_a_prompt_learner_of_your_own_trains_with_prograds_rule(
    monkeypatch, tmp_path, data_root, tiny_clip_files, projection
):
    """The manual's ShiftedProGrad trains under Dassl: both its tensors (and nothing of CLIP)
    move, conflicting steps are projected, and its checkpoint holds the new tensor."""
    trainer = build(
        monkeypatch, "ShiftedProGrad", PROGRAD_YAML, tmp_path, data_root, tiny_clip_files["RN"],
        "LOSS.PROJECTION", projection, "TEST.NO_TEST", "True",
    )  # fmt: skip
    assert [name for name, _ in trainer.prompt_learner.named_parameters()] == ["ctx", "shift"]
    summaries = []
    original = trainer.forward_backward

    def recording(batch):
        summaries.append(original(batch))
        return summaries[-1]

    trainer.forward_backward = recording
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["prompt_learner.ctx", "prompt_learner.shift"]
    assert any(summary["conflict"] for summary in summaries)
    checkpoint = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-2", weights_only=True)
    assert torch.equal(checkpoint["state_dict"]["shift"], after["prompt_learner.shift"])


def test_with_lambda_zero_your_trainer_takes_the_cross_entropy_step(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """λ=0: the rule hands back the plain cross-entropy gradients (the trainer's own baseline)."""
    trainer = build(monkeypatch, "ShiftedProGrad", PROGRAD_YAML, tmp_path, data_root,
                    tiny_clip_files["RN"], "LOSS.LAMBDA", "0.0")  # fmt: skip
    image, label = trainer.parse_batch_train(next(iter(trainer.train_loader_x)))
    params = trainer.trainable_params
    student, teacher = trainer.model(image, return_teacher=True)
    xe_loss = cross_entropy_loss(student, label)
    kl_loss = kl_to_teacher_loss(student, teacher, 1.0)
    expected = torch.autograd.grad(xe_loss, params, retain_graph=True)
    update = prograd_rule(xe_loss, kl_loss, params, trainer.precision, 0.0)
    assert len(update.gradients) == 2
    for gradient, reference in zip(update.gradients, expected, strict=True):
        assert reference.abs().sum() > 0
        assert torch.equal(gradient, reference)


def test_the_manual_shows_exactly_this_trainer():
    """The manual's example is the code above, so what it shows is what these tests train."""
    root = Path(__file__).resolve().parents[1]
    manual = (root / "docs" / "extending.md").read_text()
    shown = manual[manual.index("class ShiftedPromptLearner") :]
    shown = shown[: shown.index("```")]
    source = Path(__file__).read_text()
    defined = source[source.index("class ShiftedPromptLearner") : source.index("# ---- the tests")]
    assert shown.strip() == defined.strip()
