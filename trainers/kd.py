"""CoOp + knowledge distillation (the ProGrad paper's "KD" baseline) as a Dassl trainer.

The same prompt learner and zero-shot teacher as ProGrad, trained on
(1 − α) · CE + α · T² · KL(zero-shot ‖ student) without projection, as the first version of the
official ProGrad code. It runs on ProGrad's configs; `--trainer ProGrad LOSS.NAME kd` (their
spelling) builds this trainer too.
"""

from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY

from experiments.declarations import COOP_PROTOCOL_DEFAULTS, ConfigKey, Method, Values

from .baseline_steps import DistillationStep, distillation_gradients
from .coop import CoOp
from .prograd import ZeroShotTeacher, check_temperature

METHOD = Method(
    name="KD",
    trainer="KD",
    summary="CoOp + distillation from zero-shot CLIP: (1 − α) CE + α T² KL, no projection",
    row=40,
    config_folder="ProGrad",
    defaults=COOP_PROTOCOL_DEFAULTS,
    config_keys=(
        ConfigKey(
            "LOSS.ALPHA",
            0.5,
            "weight α in [0, 1] of the KL term, (1 - α) CE + α T² KL; 0 is CoOp's loss (and the "
            "official code's default, which would make kd plain CoOp)",
            Values(minimum=0, maximum=1),
        ),
    ),
)


def check_kd_cfg(cfg) -> None:
    """Reject bad LOSS.ALPHA / LOSS.T values before anything is built."""
    alpha = cfg.LOSS.ALPHA
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"LOSS.ALPHA is {alpha!r}; it must lie in [0, 1] (the weight of the KL term of "
            f"LOSS.NAME kd: 0.0 is CoOp's loss, 1.0 pure distillation)"
        )
    check_temperature(cfg)


@TRAINER_REGISTRY.register()
class KD(ZeroShotTeacher, CoOp):
    """CoOp's PromptLearner + distillation towards the zero-shot teacher."""

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        check_kd_cfg(cfg)

    def build_model(self) -> None:
        super().build_model()
        print(
            f"LOSS.NAME kd: CoOp + knowledge distillation, (1 - α) CE + α T² KL with "
            f"α = {self.cfg.LOSS.ALPHA}, T = {self.cfg.LOSS.T} (no projection)"
        )

    def gradients(self, image: torch.Tensor, label: torch.Tensor) -> DistillationStep:
        return distillation_gradients(
            self.model, image, label, self.precision, self.trainable_params,
            alpha=self.cfg.LOSS.ALPHA, temperature=self.cfg.LOSS.T,
        )  # fmt: skip
