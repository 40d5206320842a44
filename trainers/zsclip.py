"""Zero-shot CLIP with each dataset's hand-crafted prompt: the zero-shot rows of the tables."""

from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY, TrainerX

from experiments.declarations import Defaults, Method

from .backbone import logit_bias_of, tokenizer_for
from .base import load_clip_for
from .clip_prompt import TEMPLATE_FIX, template_for, template_prompts, zero_shot_text_features
from .coop import check_prompt_cfg
from .data_loading import DataLoadingMixin
from .eval_features import evaluate_with_shared_features
from .frozen_image import FrozenImageEncoder
from .precision import Precision

METHOD = Method(
    name="ZeroshotCLIP",
    trainer="ZeroshotCLIP",
    summary="CLIP's zero-shot classifier with each dataset's hand-crafted prompt (no training)",
    row=0,
    config_folder="CoOp",  # CoOp's configs give the backbone
    defaults={"zeroshot": Defaults("rn50")},
    prompt=None,
)


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(DataLoadingMixin, TrainerX):
    """CLIP's zero-shot classifier; run with --eval-only (there is nothing to train)."""

    def check_cfg(self, cfg) -> None:
        check_prompt_cfg(cfg)

    def build_model(self) -> None:
        cfg = self.cfg
        precision = Precision(cfg.TRAINER.COOP.PREC, self.device)
        template = template_for(cfg.DATASET.NAME)
        tokenizer = tokenizer_for(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH)
        tokenizer.check(template_prompts(template, self.dm.dataset.classnames), TEMPLATE_FIX)
        clip_model = load_clip_for(cfg, precision).to(self.device)
        print(f'Zero-shot prompt: "{template}"')
        self.text_features = zero_shot_text_features(
            clip_model, self.dm.dataset.classnames, template, self.device
        )
        self.clip_model = clip_model
        # CLIP's encode_image, computed as every trainer computes it (the features it shares).
        self.image_encoder = FrozenImageEncoder(clip_model.visual)
        self.weights_dtype = precision.weights_dtype

    @torch.no_grad()
    def classify(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, D) image features -> (B, C) logits against the hand-crafted prompts."""
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        logits = self.clip_model.logit_scale.exp() * image_features @ self.text_features.t()
        bias = logit_bias_of(self.clip_model)  # SigLIP's
        return logits if bias is None else logits + bias

    @torch.no_grad()
    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        return self.classify(self.image_encoder(image))

    def test(self, split: str | None = None):
        """Dassl's evaluation on the split's shared image features (trainers/eval_features.py)."""
        return evaluate_with_shared_features(
            self, split, self.image_encoder, self.weights_dtype, self.classify, super().test
        )
