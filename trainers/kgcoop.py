"""KgCoOp (Yao et al., CVPR 2023) as a Dassl trainer: CoOp's prompt, trained with cross-entropy
plus W · (1 − mean cos) between the learned and the hand-crafted prompts' text features.

As the official code (htyao89/KgCoOp, trainers/kgcoop.py):
- the hand-crafted prompts are KgCoOp's (`KGCOOP_TEMPLATES`), their text features computed once;
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
from dassl.metrics import compute_accuracy

from .baseline_steps import kgcoop_gradients
from .clip_prompt import KGCOOP_TEMPLATES, count_tokens, template_for, zero_shot_text_features
from .coop import CoOp, context_init

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

    def teacher_text_features(self, clip_model, classnames: list[str]) -> torch.Tensor:
        template = template_for(self.cfg.DATASET.NAME, KGCOOP_TEMPLATES)
        print(f'KgCoOp hand-crafted prompt: "{template}" (W = {self.cfg.TRAINER.COOP.W})')
        return zero_shot_text_features(clip_model, classnames, template, self.device)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        result = kgcoop_gradients(
            self.model, image, label, self.precision, self.trainable_params,
            weight=self.cfg.TRAINER.COOP.W,
        )  # fmt: skip
        self.step(result.gradients)
        self.end_of_step()
        return {
            "loss": result.loss.item(),
            "xe_loss": result.xe_loss.item(),
            "kg_loss": result.kg_loss.item(),
            "acc": compute_accuracy(result.logits, label)[0].item(),
        }
