"""CoOp (Zhou et al., IJCV 2022) as a Dassl trainer: cfg in, plain values down to clip_prompt."""

from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY

from experiments.declarations import COOP_PROTOCOL_DEFAULTS, ConfigKey, Method, Values

from .backbone import Tokenizer
from .base import PromptTrainer
from .clip_prompt import (
    TEMPLATE_FIX,
    CustomCLIP,
    PromptLearner,
    check_learned_prompts,
    check_text_encoder,
    count_tokens,
    template_context_words,
    template_for,
    template_prompts,
)
from .precision import Precision
from .steps import CoOpStep, coop_gradients

METHOD = Method(
    name="CoOp",
    trainer="CoOp",
    summary="learned context, cross-entropy on the few-shot labels",
    row=20,
    config_folder="CoOp",
    defaults=COOP_PROTOCOL_DEFAULTS,
    config_keys=(
        ConfigKey("TRAINER.COOP.N_CTX", 16, "number of context vectors", Values(minimum=1)),
        ConfigKey("TRAINER.COOP.CSC", False, "class-specific context", Values()),
        # None lets yacs take bool or str.
        ConfigKey(
            "TRAINER.COOP.CTX_INIT",
            None,
            'None/False/"": random context; words: CoOp\'s init (N_CTX ignored); True: the '
            "dataset's hand-crafted template, as the official ProGrad configs",
            Values(types=("NoneType", "bool", "str")),
        ),
        ConfigKey(
            "TRAINER.COOP.PREC",
            "fp16",
            "fp16, fp32, amp, bf16, amp_fp16 or amp_bf16 (docs/backbones.md)",
            Values(choices=("fp16", "fp32", "amp", "bf16", "amp_fp16", "amp_bf16")),
        ),
        ConfigKey(
            "TRAINER.COOP.CLASS_TOKEN_POSITION",
            "end",
            "end, middle or front",
            Values(choices=("end", "middle", "front")),
        ),
    ),
)

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def check_prompt_cfg(cfg) -> None:
    """Reject bad TRAINER.COOP values before anything is built."""
    coop = cfg.TRAINER.COOP
    Precision(coop.PREC, torch.device("cpu"))  # raises on an unknown precision
    if coop.CLASS_TOKEN_POSITION not in CLASS_TOKEN_POSITIONS:
        raise ValueError(
            f'TRAINER.COOP.CLASS_TOKEN_POSITION is "{coop.CLASS_TOKEN_POSITION}"; use one of '
            f"{', '.join(CLASS_TOKEN_POSITIONS)}"
        )
    if not isinstance(coop.N_CTX, int) or coop.N_CTX < 1:
        raise ValueError(f"TRAINER.COOP.N_CTX is {coop.N_CTX!r}; use an integer >= 1")
    if not isinstance(coop.CSC, bool):
        raise ValueError(f"TRAINER.COOP.CSC is {coop.CSC!r}; use True or False")
    if coop.CTX_INIT is not None and not isinstance(coop.CTX_INIT, (bool, str)):
        raise ValueError(
            f"TRAINER.COOP.CTX_INIT is {coop.CTX_INIT!r}; use words (e.g. 'a photo of a'), True "
            f"for the dataset's hand-crafted template, or False/'' for a random context"
        )


def context_init(cfg) -> tuple[int, str | None]:
    """(n_ctx, init_words) from TRAINER.COOP.N_CTX and CTX_INIT.

    CTX_INIT words (CoOp): the context is exactly those words, N_CTX is ignored.
    CTX_INIT True (official ProGrad configs): N_CTX vectors whose last ones are the words of the
    dataset's template before the class name, e.g. "a photo of a".
    CTX_INIT False / "" / None: N_CTX random vectors.
    """
    value = cfg.TRAINER.COOP.CTX_INIT
    if value is True:
        return cfg.TRAINER.COOP.N_CTX, template_context_words(template_for(cfg.DATASET.NAME))
    if isinstance(value, str) and value.strip():
        words = value.replace("_", " ").strip()
        return count_tokens(words), words
    return cfg.TRAINER.COOP.N_CTX, None


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """Context Optimization: learn the prompt's context with cross-entropy on few-shot labels."""

    def check_cfg(self, cfg) -> None:
        check_prompt_cfg(cfg)
        check_text_encoder(cfg.MODEL.TEXT_ENCODER)

    def prompt_context(self, cfg) -> tuple[int, str | None]:
        """(n_ctx, init_words) of the learned context; see `context_init`."""
        return context_init(cfg)

    def teacher_text_features(self, clip_model, classnames: list[str]) -> torch.Tensor | None:
        """Text features of a frozen teacher prompt; CoOp has none."""
        return None

    def teacher_templates(self) -> list[str]:
        """The hand-crafted templates whose prompts the teacher encodes; CoOp has none."""
        return []

    def check_texts(self, tokenizer: Tokenizer, classnames: list[str]) -> None:
        """The learned prompts (context + each class name) and the teacher's prompts fit."""
        n_ctx, init_words = self.prompt_context(self.cfg)
        names = [name.replace("_", " ") for name in classnames]
        check_learned_prompts(tokenizer, names, n_ctx, init_words)
        for template in self.teacher_templates():
            tokenizer.check(template_prompts(template, classnames), TEMPLATE_FIX)

    def precision_mode(self) -> str:
        return self.cfg.TRAINER.COOP.PREC

    def build_custom_clip(self, clip_model, classnames: list[str]) -> CustomCLIP:
        """CLIP + this trainer's prompt learner (+ the teacher's text features, if any)."""
        cfg = self.cfg
        n_ctx, init_words = self.prompt_context(cfg)
        prompt_learner = PromptLearner(
            clip_model,
            classnames,
            n_ctx=n_ctx,
            init_words=init_words,
            csc=cfg.TRAINER.COOP.CSC,
            class_token_position=cfg.TRAINER.COOP.CLASS_TOKEN_POSITION,
        )
        teacher = self.teacher_text_features(clip_model, classnames)
        return CustomCLIP(clip_model, prompt_learner, teacher, cfg.MODEL.TEXT_ENCODER)

    def gradients(self, image: torch.Tensor, label: torch.Tensor) -> CoOpStep:
        return coop_gradients(self.model, image, label, self.precision, self.trainable_params)
