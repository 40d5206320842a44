"""ProGrad (Zhu et al., ICCV 2023) as a Dassl trainer: CoOp's prompt, updated only along
directions that do not conflict with the zero-shot CLIP prediction of the hand-crafted prompt.

`--trainer ProGrad LOSS.NAME kd` (the official configs' spelling of the paper's distillation
baseline) builds the KD trainer of trainers/kd.py.
"""

from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY

from experiments.declarations import (
    COOP_PROTOCOL_DEFAULTS,
    ConfigKey,
    Method,
    Values,
    paper_lambda,
)

from .clip_prompt import template_for, zero_shot_text_features
from .coop import CoOp
from .prograd_ops import PROJECTIONS, GradientDiagnostics
from .steps import ProGradStep, prograd_gradients

METHOD = Method(
    name="ProGrad",
    trainer="ProGrad",
    summary="CoOp's prompt; the CE gradient projected off the zero-shot KL gradient on conflict",
    row=70,
    config_folder="ProGrad",
    defaults=COOP_PROTOCOL_DEFAULTS,
    lambda_rule=paper_lambda,
    config_keys=(
        ConfigKey(
            "LOSS.NAME",
            "prograd",
            'ProGrad trainer: "prograd"; "vertical_grad" (ablation: project at every step, '
            'conflict or not); or "kd" (the KD trainer)',
            Values(choices=("prograd", "vertical_grad", "kd")),
        ),
        ConfigKey(
            "LOSS.T",
            1.0,
            "distillation temperature of the KL term (scaled by T^2)",
            Values(above=0),
        ),
        ConfigKey(
            "LOSS.LAMBDA",
            1.0,
            "projection strength in [0, 1]; 0 is CoOp's update",
            Values(minimum=0, maximum=1),
        ),
        ConfigKey(
            "LOSS.PROJECTION",
            "per_tensor",
            "per_tensor: each trainable tensor projected on its own (official code); whole: as "
            "one vector",
            Values(choices=("per_tensor", "whole")),
        ),
    ),
)
LOSS_NAMES = ("prograd", "vertical_grad", "kd")
# The paper's "always project" ablation (the first version of the official code's update).
ALWAYS_PROJECT = "vertical_grad"


def check_temperature(cfg) -> None:
    """Reject a bad LOSS.T before anything is built."""
    if not cfg.LOSS.T > 0:
        raise ValueError(f"LOSS.T is {cfg.LOSS.T}; the distillation temperature must be > 0")


def check_loss_cfg(cfg) -> None:
    """Reject bad LOSS values of ProGrad's update before anything is built."""
    if cfg.LOSS.NAME not in LOSS_NAMES:
        raise ValueError(
            f'LOSS.NAME is "{cfg.LOSS.NAME}"; the ProGrad trainer takes "prograd" (the projected '
            f'gradient), "vertical_grad" (the ablation that projects at every step) or "kd" '
            f"(CoOp + knowledge distillation, LOSS.ALPHA and LOSS.T)"
        )
    if not 0.0 <= cfg.LOSS.LAMBDA <= 1.0:
        raise ValueError(
            f"LOSS.LAMBDA is {cfg.LOSS.LAMBDA}; it must lie in [0, 1] (1.0 removes the whole "
            f"conflicting component, 0.0 is plain CoOp)"
        )
    check_temperature(cfg)
    if cfg.LOSS.PROJECTION not in PROJECTIONS:
        raise ValueError(
            f'LOSS.PROJECTION is "{cfg.LOSS.PROJECTION}"; use per_tensor (each trainable tensor '
            f"projected on its own, as the official code) or whole (all of them as one vector)"
        )


class ZeroShotTeacher:
    """The teacher of ProGrad and KD: zero-shot CLIP with the dataset's hand-crafted prompt."""

    def teacher_templates(self) -> list[str]:
        return [template_for(self.cfg.DATASET.NAME)]

    def teacher_text_features(self, clip_model, classnames: list[str]) -> torch.Tensor:
        template = template_for(self.cfg.DATASET.NAME)
        print(f'Zero-shot teacher prompt: "{template}"')
        return zero_shot_text_features(clip_model, classnames, template, self.device)


@TRAINER_REGISTRY.register()
class ProGrad(ZeroShotTeacher, CoOp):
    """Prompt-aligned Gradient: CoOp's PromptLearner + the projected update."""

    def __new__(cls, cfg, *args, **kwargs):
        # The official configs run CoOp + KD as `--trainer ProGrad LOSS.NAME kd`: build the KD
        # trainer for them (not a ProGrad, so Python leaves its __init__ to us).
        if cls is ProGrad and cfg.LOSS.NAME == "kd":
            from .kd import KD

            trainer = object.__new__(KD)
            trainer.__init__(cfg, *args, **kwargs)
            return trainer
        return super().__new__(cls)

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        check_loss_cfg(cfg)
        if cfg.LOSS.NAME == "kd":
            raise ValueError(
                f"LOSS.NAME kd is CoOp + KD, which has CoOp's prompt learner; "
                f'{type(self).__name__} takes LOSS.NAME "prograd" (run --trainer KD for the '
                f"distillation baseline)"
            )

    def build_model(self) -> None:
        super().build_model()
        self.diagnostics = GradientDiagnostics()
        if self.cfg.LOSS.NAME == ALWAYS_PROJECT:
            print(
                "LOSS.NAME vertical_grad: the ablation that removes the component of g_ce along "
                "g_kl at every step, conflict or not"
            )

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

    def gradients(self, image: torch.Tensor, label: torch.Tensor) -> ProGradStep:
        return prograd_gradients(
            self.model, image, label, self.precision, self.trainable_params,
            lambda_=self.cfg.LOSS.LAMBDA, temperature=self.cfg.LOSS.T,
            per_tensor=self.cfg.LOSS.PROJECTION == "per_tensor",
            always=self.cfg.LOSS.NAME == ALWAYS_PROJECT,
        )  # fmt: skip

    def after_step(self, step: ProGradStep) -> None:
        self.diagnostics.add(step.projection, self.precision.gradient_scale())

    def summary(self, step: ProGradStep, label: torch.Tensor) -> dict[str, float]:
        return {**super().summary(step, label), "conflict": float(step.projection.conflicted)}
