"""KgCoOp (Yao et al., CVPR 2023) as a Dassl trainer: CoOp's prompt, trained with cross-entropy
plus W · (1 − mean cos) between the learned and the hand-crafted prompts' text features.

As the official code (htyao89/KgCoOp, trainers/kgcoop.py):
- the hand-crafted prompts are KgCoOp's (`templates.kgcoop`), their text features computed once;
- `TRAINER.COOP.CTX_INIT True` starts the context from "a photo of a" (4 vectors, whatever
  N_CTX and the dataset), where ProGrad's configs start from the dataset's template;
- the checkpoint is CoOp's (`prompt_learner/model.pth.tar-N`, key `ctx`): the official
  checkpoints load here (their unused `bias_vectors` and `meta_net` are ignored) and ours there.
One difference: the official code encodes the hand-crafted prompts with a second CLIP in fp16
whatever TRAINER.COOP.PREC says; here they are encoded once by the run's CLIP, in its precision.
Over two train.py epochs in fp32 (tools/kgcoop_parity.py --whole-run, tiny RN CLIP) that fp16
teacher is the whole difference: with W = 8 the context updates differ by 2e-3 of their size,
with W = 0 (teacher unused) or their teacher in fp32 by 3e-6 (learning rates, batches and
checkpoints identical).
"""

from __future__ import annotations

import math

import torch
from dassl.engine import TRAINER_REGISTRY

from experiments.declarations import ConfigKey, Defaults, FixedEpochs, Method, PromptKeys, Values

from .baseline_steps import KgCoOpStep, kgcoop_gradients
from .clip_prompt import count_tokens, template_for, zero_shot_text_features
from .coop import CoOp, context_init

METHOD = Method(
    name="KgCoOp",
    trainer="KgCoOp",
    summary="CoOp + W · (1 − cos) to the hand-crafted prompt's text features",
    row=50,
    config_folder="KgCoOp",
    defaults={  # KgCoOp's official scripts
        # few-shot (no official script): KgCoOp's official RN50 config and its 100 epochs at any
        # shots, so that KgCoOp sits in the RN50 few-shot comparison with CoOp and ProGrad.
        "fewshot": Defaults("rn50_ep100", epochs=FixedEpochs(100)),
        "base2new": Defaults("vit_b16_ep100_ctxv1", shots=16, epochs=FixedEpochs(100)),
        "xd": Defaults("vit_b16_ep100_ctxv1", shots=4),
    },
    # KgCoOp's official W 8.0 and N_CTX 4 (CTX_INIT True: "a photo of a").
    fixed_opts=("TRAINER.COOP.W", "8.0"),
    prompt=PromptKeys("TRAINER.COOP", 4, True),
    config_keys=(
        ConfigKey(
            "TRAINER.COOP.W",
            1.0,
            "KgCoOp: weight W >= 0 of 1 - mean cos(learned, hand-crafted text features); the "
            "official default (their scripts pass 8.0)",
            Values(minimum=0),
        ),
    ),
)

# The official code's initial context for any true CTX_INIT.
KGCOOP_INIT_WORDS = "a photo of a"


def check_kgcoop_cfg(cfg) -> None:
    """Reject a bad TRAINER.COOP.W before anything is built."""
    weight = cfg.TRAINER.COOP.W
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise ValueError(f"TRAINER.COOP.W is {weight!r}; use a number >= 0, e.g. 8.0")
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(
            f"TRAINER.COOP.W is {weight}; KgCoOp's weight must be a finite number >= 0 (0 is "
            f"plain CoOp; the official scripts use 8.0)"
        )


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    """Knowledge-guided Context Optimization: CoOp's PromptLearner + the KgCoOp regulariser."""

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        check_kgcoop_cfg(cfg)

    def prompt_context(self, cfg) -> tuple[int, str | None]:
        """CTX_INIT True: "a photo of a" (4 vectors), as the official code; else CoOp's rule."""
        if cfg.TRAINER.COOP.CTX_INIT is True:
            return count_tokens(KGCOOP_INIT_WORDS), KGCOOP_INIT_WORDS
        return context_init(cfg)

    def teacher_templates(self) -> list[str]:
        return [template_for(self.cfg.DATASET.NAME, "kgcoop")]

    def teacher_text_features(self, clip_model, classnames: list[str]) -> torch.Tensor:
        template = template_for(self.cfg.DATASET.NAME, "kgcoop")
        print(f'KgCoOp hand-crafted prompt: "{template}" (W = {self.cfg.TRAINER.COOP.W})')
        return zero_shot_text_features(clip_model, classnames, template, self.device)

    def gradients(self, image: torch.Tensor, label: torch.Tensor) -> KgCoOpStep:
        return kgcoop_gradients(
            self.model, image, label, self.precision, self.trainable_params,
            weight=self.cfg.TRAINER.COOP.W,
        )  # fmt: skip
