"""CoOp (Zhou et al., IJCV 2022) as a Dassl trainer: cfg in, plain values down to clip_prompt."""

from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_optimizer
from torch import nn

from .clip_prompt import (
    CustomCLIP,
    PromptLearner,
    check_text_encoder,
    count_tokens,
    load_clip,
    template_context_words,
    template_for,
)
from .dassl_compat import (
    CheckpointMixin,
    build_lr_scheduler,
    checkpoint_state_dict,
    load_checkpoint,
    load_state_checked,
)
from .data_loading import DataLoadingMixin
from .precision import Precision
from .steps import coop_gradients

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


def load_clip_for(cfg, precision: Precision):
    """CLIP from MODEL.BACKBONE.NAME/PATH in the dtype of TRAINER.COOP.PREC, checked against
    INPUT.SIZE."""
    print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
    clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH)
    if precision.weights_fp32:
        clip_model.float()
    resolution = clip_model.visual.input_resolution
    if tuple(cfg.INPUT.SIZE) != (resolution, resolution):
        raise ValueError(
            f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the CLIP backbone "
            f"({cfg.MODEL.BACKBONE.PATH or cfg.MODEL.BACKBONE.NAME}) takes {resolution}x"
            f"{resolution} images; set INPUT.SIZE ({resolution}, {resolution})"
        )
    return clip_model


@TRAINER_REGISTRY.register()
class CoOp(CheckpointMixin, DataLoadingMixin, TrainerX):
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

    def precision_mode(self) -> str:
        """The PREC value of this trainer's config block."""
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

    def build_model(self) -> None:
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        self.precision = Precision(self.precision_mode(), self.device)
        # On the training device from the start: the teacher's text features of 1000 classes are
        # then computed there too.
        clip_model = load_clip_for(cfg, self.precision).to(self.device)

        self.model = self.build_custom_clip(clip_model, classnames)
        prompt_learner = self.model.prompt_learner
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.startswith("prompt_learner."))
        if cfg.MODEL.INIT_WEIGHTS:
            path = cfg.MODEL.INIT_WEIGHTS
            state = checkpoint_state_dict(load_checkpoint(path), path)
            load_state_checked(prompt_learner, state, cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)

        self.prompt_learner = self.model.prompt_learner
        self.trainable_params = [p for p in self.prompt_learner.parameters() if p.requires_grad]
        self.optim = build_optimizer(self.prompt_learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", self.prompt_learner, self.optim, self.sched)
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
        """Dassl's evaluation, with the prompts' text features computed once instead of per batch.

        (Under DataParallel each replica encodes them itself, as before.)
        """
        if isinstance(self.model, nn.DataParallel):
            return super().test(split)
        with self.model.fixed_prompts():
            return super().test(split)

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

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        result = coop_gradients(self.model, image, label, self.precision, self.trainable_params)
        self.step(result.gradients)
        self.end_of_step()
        return {"loss": result.loss.item(), "acc": compute_accuracy(result.logits, label)[0].item()}
