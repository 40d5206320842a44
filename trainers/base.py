"""The training-step skeleton every prompt-tuning method shares, as a Dassl trainer.

A method subclasses :class:`PromptTrainer` and supplies its model (``build_custom_clip``) and its
gradients (``gradients``: one call of a pure step function of trainers/steps.py or
trainers/baseline_steps.py). The skeleton does the rest, the same for every method:

    parse batch -> gradients -> apply (non-finite ones skipped) -> hook -> LR tick -> summary

Building (CLIP in the run's precision, the prompt learner trainable and nothing else, optimizer,
scheduler, Dassl's ``register_model``), evaluation with the prompts' text features computed
once, and exact resume are here too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_optimizer
from torch import nn

from .backbone import Tokenizer, image_tower, load_backbone, tokenizer_for
from .dassl_compat import (
    CheckpointMixin,
    build_lr_scheduler,
    checkpoint_state_dict,
    load_checkpoint,
    load_state_checked,
)
from .data_loading import DataLoadingMixin
from .eval_features import evaluate_with_shared_features, features_as_images
from .frozen_image import FrozenImageEncoder
from .precision import Precision

# Within shared_clip_models(): (name, path, fp32 weights) -> the CLIP loaded for them.
_shared_clip: dict[tuple[str, str, bool], Any] | None = None


@contextlib.contextmanager
def shared_clip_models() -> Iterator[None]:
    """Within: :func:`load_clip_for` gives every run of this process the CLIP it loaded before
    for the same backbone and weight dtype (tools/evaluate_many.py: many evaluations, one load).
    CLIP is frozen, so the runs share it as the student and teacher of one run do."""
    global _shared_clip
    previous, _shared_clip = _shared_clip, {}
    try:
        yield
    finally:
        _shared_clip = previous


def load_clip_for(cfg, precision: Precision):
    """CLIP from MODEL.BACKBONE.NAME/PATH (through the backbone seam) in the dtype of the run's
    precision, checked against INPUT.SIZE."""
    print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
    key = (cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, precision.weights_dtype)
    if _shared_clip is not None and key in _shared_clip:
        clip_model = _shared_clip[key]
    else:
        clip_model = load_backbone(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH)
        precision.cast_weights(clip_model)
        if _shared_clip is not None:
            _shared_clip[key] = clip_model
    resolution = image_tower(clip_model).resolution
    if tuple(cfg.INPUT.SIZE) != (resolution, resolution):
        raise ValueError(
            f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the CLIP backbone "
            f"({cfg.MODEL.BACKBONE.PATH or cfg.MODEL.BACKBONE.NAME}) takes {resolution}x"
            f"{resolution} images; set INPUT.SIZE ({resolution}, {resolution})"
        )
    return clip_model


class PromptTrainer(CheckpointMixin, DataLoadingMixin, TrainerX):
    """Dassl trainer of a prompt learner on a frozen CLIP; a method supplies model and gradients.

    The checkpoint is CoOp's: ``prompt_learner/model.pth.tar-N``.
    """

    # ------------------------------------------------------------------------------------------
    # What a method supplies

    def precision_mode(self) -> str:
        """The PREC value of the method's config block (fp16, fp32 or amp)."""
        raise NotImplementedError

    def build_custom_clip(self, clip_model, classnames: list[str]) -> nn.Module:
        """CLIP + the method's prompt learner (a ``prompt_learner`` attribute)."""
        raise NotImplementedError

    def check_texts(self, tokenizer: Tokenizer, classnames: list[str]) -> None:
        """Raise a ValueError if a text the method will tokenize (prompts, templates, context
        words) is longer than the model's context length; called before CLIP is loaded."""

    def gradients(self, image: torch.Tensor, label: torch.Tensor) -> Any:
        """One step's gradients: a step tuple with ``logits``, ``gradients`` and its losses
        (fields named ``*loss``, in the order the log shows them)."""
        raise NotImplementedError

    # The folder its checkpoints are filed under: <run>/<checkpoint_name>/model.pth.tar-N.
    checkpoint_name = "prompt_learner"

    def checkpoint_module(self) -> nn.Module:
        """What the checkpoints hold (CoOp's format: the prompt learner itself)."""
        return self.model.prompt_learner

    def after_step(self, step: Any) -> None:
        """Called after each applied (or skipped) update, e.g. for diagnostics."""

    def summary(self, step: Any, label: torch.Tensor) -> dict[str, float]:
        """The figures of one step for Dassl's log: its losses, then the batch accuracy."""
        figures = {name: getattr(step, name).item() for name in step._fields if "loss" in name}
        figures["acc"] = compute_accuracy(step.logits, label)[0].item()
        return figures

    # ------------------------------------------------------------------------------------------
    # The skeleton

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        step = self.gradients(image, label)
        self.step(step.gradients)
        self.after_step(step)
        self.end_of_step()
        return self.summary(step, label)

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def step(self, gradients: list[torch.Tensor]) -> None:
        """Apply the update; a non-finite one is skipped, logged and counted."""
        if not self.precision.step(self.optim, self.trainable_params, gradients):
            self.skipped_steps += 1
            print(
                f"Skipped a step with a non-finite gradient (epoch {self.epoch + 1}, batch "
                f"{self.batch_idx + 1}; {self.skipped_steps} skipped so far)"
            )

    def end_of_step(self) -> None:
        """The epoch's learning-rate tick comes after its last batch, as in CoOp."""
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()

    # ------------------------------------------------------------------------------------------
    # Building, evaluation, resume

    def build_model(self) -> None:
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        self.precision = Precision(self.precision_mode(), self.device)
        self.check_texts(
            tokenizer_for(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH), classnames
        )
        # On the training device from the start: the teacher's text features of 1000 classes are
        # then computed there too.
        clip_model = load_clip_for(cfg, self.precision).to(self.device)

        self.model = self.build_custom_clip(clip_model, classnames)
        checkpoint_module = self.checkpoint_module()
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.startswith("prompt_learner."))
        if cfg.MODEL.INIT_WEIGHTS:
            path = cfg.MODEL.INIT_WEIGHTS
            state = self.checkpoint_state(checkpoint_state_dict(load_checkpoint(path), path), path)
            load_state_checked(checkpoint_module, state, cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)

        self.prompt_learner = self.model.prompt_learner
        self.trainable_params = [p for p in self.prompt_learner.parameters() if p.requires_grad]
        self.optim = build_optimizer(self.prompt_learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.checkpoint_name, checkpoint_module, self.optim, self.sched)
        self.skipped_steps = 0

        device_count = torch.cuda.device_count() if self.device.type == "cuda" else 0
        if device_count > 1:
            print(f"Multiple GPUs detected (n_gpus={device_count}), use all of them!")
            self.model = nn.DataParallel(self.model)

    def after_epoch(self) -> None:
        super().after_epoch()
        if self.epoch + 1 < self.max_epoch:
            self.save_resume_state()

    def extra_state(self) -> dict:
        scaler = self.precision.scaler
        return {"scaler": scaler.state_dict()} if scaler is not None else {}

    def restore_extra_state(self, state: dict) -> None:
        if self.precision.scaler is not None and "scaler" in state:
            self.precision.scaler.load_state_dict(state["scaler"])

    def test(self, split: str | None = None):
        """Dassl's evaluation, with the prompts' text features computed once instead of per batch,
        and the split's image features read from the shared feature cache (computed once for
        every method and seed; trainers/eval_features.py) where the image encoder is frozen.

        (Under DataParallel each replica encodes them itself, as before.)
        """
        if isinstance(self.model, nn.DataParallel):
            return super().test(split)
        encoder = getattr(self.model, "image_encoder", None)
        with self.model.fixed_prompts():
            if not isinstance(encoder, FrozenImageEncoder):  # image features depend on a prompt
                return super().test(split)

            def classify(image_features: torch.Tensor) -> torch.Tensor:
                with features_as_images(self.model):
                    return self.model(image_features)

            return evaluate_with_shared_features(
                self, split, encoder, self.precision.weights_dtype, classify, super().test
            )
