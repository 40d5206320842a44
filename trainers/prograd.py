"""ProGrad (Zhu et al., ICCV 2023) as a Dassl trainer: CoOp's prompt, updated only along
directions that do not conflict with the zero-shot CLIP prediction of the hand-crafted prompt."""

from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .clip_prompt import template_for, zero_shot_text_features
from .coop import CoOp
from .prograd_ops import PROJECTIONS, GradientDiagnostics
from .steps import prograd_gradients

LOSS_NAMES = ("prograd",)


def check_loss_cfg(cfg) -> None:
    """Reject bad LOSS values before anything is built."""
    if cfg.LOSS.NAME not in LOSS_NAMES:
        raise ValueError(f'LOSS.NAME is "{cfg.LOSS.NAME}"; the ProGrad trainer takes "prograd"')
    if not 0.0 <= cfg.LOSS.LAMBDA <= 1.0:
        raise ValueError(
            f"LOSS.LAMBDA is {cfg.LOSS.LAMBDA}; it must lie in [0, 1] (1.0 removes the whole "
            f"conflicting component, 0.0 is plain CoOp)"
        )
    if not cfg.LOSS.T > 0:
        raise ValueError(f"LOSS.T is {cfg.LOSS.T}; the distillation temperature must be > 0")
    if cfg.LOSS.PROJECTION not in PROJECTIONS:
        raise ValueError(
            f'LOSS.PROJECTION is "{cfg.LOSS.PROJECTION}"; use per_tensor (each trainable tensor '
            f"projected on its own, as the official code) or whole (all of them as one vector)"
        )


@TRAINER_REGISTRY.register()
class ProGrad(CoOp):
    """Prompt-aligned Gradient: CoOp's PromptLearner + the projected update."""

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        check_loss_cfg(cfg)

    def teacher_text_features(self, clip_model, classnames: list[str]) -> torch.Tensor:
        template = template_for(self.cfg.DATASET.NAME)
        print(f'Zero-shot teacher prompt: "{template}"')
        return zero_shot_text_features(clip_model, classnames, template, self.device)

    def build_model(self) -> None:
        super().build_model()
        self.diagnostics = GradientDiagnostics()

    def before_epoch(self) -> None:
        self.diagnostics.reset()

    def after_epoch(self) -> None:
        stats = self.diagnostics.summary()
        print(
            f"ProGrad epoch {self.epoch + 1}: conflicting steps {stats['conflict_share']:.1%}, "
            f"mean cos(g_ce, g_kl) {stats['mean_cosine']:+.3f}, "
            f"mean norm removed by the projection {stats['mean_removed_norm']:.3e}"
        )
        for name, value in stats.items():
            self.write_scalar(f"prograd/{name}", value, self.epoch + 1)
        super().after_epoch()

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        result = prograd_gradients(
            self.model, image, label, self.precision, self.trainable_params,
            lambda_=self.cfg.LOSS.LAMBDA, temperature=self.cfg.LOSS.T,
            per_tensor=self.cfg.LOSS.PROJECTION == "per_tensor",
        )  # fmt: skip
        self.diagnostics.add(result.projection, self.precision.gradient_scale())
        self.step(result.gradients)
        self.end_of_step()
        return {
            "xe_loss": result.xe_loss.item(),
            "kl_loss": result.kl_loss.item(),
            "acc": compute_accuracy(result.logits, label)[0].item(),
            "conflict": float(result.projection.conflicted),
        }
