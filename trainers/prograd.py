"""ProGrad (Zhu et al., ICCV 2023) as a Dassl trainer: CoOp's prompt, updated only along
directions that do not conflict with the zero-shot CLIP prediction of the hand-crafted prompt.

`LOSS.NAME kd` turns it into the paper's distillation baseline (CoOp + KD, method "KD" in the
scripts and tables), as the first version of the official code: the same prompt and teacher,
trained on (1 − α) · CE + α · T² · KL(zero-shot ‖ student) without projection.
"""

from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .baseline_steps import distillation_gradients
from .clip_prompt import template_for, zero_shot_text_features
from .coop import CoOp
from .prograd_ops import PROJECTIONS, GradientDiagnostics
from .steps import prograd_gradients

LOSS_NAMES = ("prograd", "kd")


def check_loss_cfg(cfg) -> None:
    """Reject bad LOSS values before anything is built."""
    if cfg.LOSS.NAME not in LOSS_NAMES:
        raise ValueError(
            f'LOSS.NAME is "{cfg.LOSS.NAME}"; the ProGrad trainer takes "prograd" (the projected '
            f'gradient) or "kd" (CoOp + knowledge distillation, LOSS.ALPHA and LOSS.T)'
        )
    alpha = cfg.LOSS.ALPHA
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"LOSS.ALPHA is {alpha!r}; it must lie in [0, 1] (the weight of the KL term of "
            f"LOSS.NAME kd: 0.0 is CoOp's loss, 1.0 pure distillation)"
        )
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
        if self.distills:
            print(
                f"LOSS.NAME kd: CoOp + knowledge distillation, (1 - α) CE + α T² KL with "
                f"α = {self.cfg.LOSS.ALPHA}, T = {self.cfg.LOSS.T} (no projection)"
            )

    @property
    def distills(self) -> bool:
        """Whether this run is CoOp + KD (LOSS.NAME kd) rather than ProGrad."""
        return self.cfg.LOSS.NAME == "kd"

    def before_epoch(self) -> None:
        self.diagnostics.reset()

    def after_epoch(self) -> None:
        if self.distills:  # no projection, nothing to report
            super().after_epoch()
            return
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
        if self.distills:
            return self.distillation_step(batch)
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

    def distillation_step(self, batch: dict) -> dict[str, float]:
        """CoOp + KD: one gradient of (1 − α) CE + α T² KL, no projection."""
        image, label = self.parse_batch_train(batch)
        result = distillation_gradients(
            self.model, image, label, self.precision, self.trainable_params,
            alpha=self.cfg.LOSS.ALPHA, temperature=self.cfg.LOSS.T,
        )  # fmt: skip
        self.step(result.gradients)
        self.end_of_step()
        return {
            "loss": result.loss.item(),
            "xe_loss": result.xe_loss.item(),
            "kl_loss": result.kl_loss.item(),
            "acc": compute_accuracy(result.logits, label)[0].item(),
        }
