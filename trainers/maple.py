"""MaPLe (Khattak et al., CVPR 2023) as a Dassl trainer: prompts in both towers of a ViT CLIP, at
the first PROMPT_DEPTH layers, the vision prompts coupled to the text prompts. cfg in
(TRAINER.MAPLE.*), plain values down to maple_prompt; the step is CoOp's cross-entropy.

Checkpoints are the official code's: ``MultiModalPromptLearner/model.pth.tar-N``, keys
``prompt_learner.*`` (theirs also hold the frozen CLIP, which is not read here; ours hold the
prompt learner only, which theirs loads with ``strict=False``).
"""

from __future__ import annotations

from dassl.engine import TRAINER_REGISTRY
from torch import nn

from experiments.declarations import (
    MAPLE_PROMPT,
    MAPLE_PROTOCOL_DEFAULTS,
    ConfigKey,
    Method,
    Values,
)

from .clip_prompt import check_text_encoder, count_tokens
from .cocoop import check_prompt_length
from .coop import CoOp
from .maple_prompt import MaPLeCLIP, MaPLePromptLearner, ReferenceMaPLeCLIP
from .precision import PRECISIONS

METHOD = Method(
    name="MaPLe",
    trainer="MaPLe",
    summary="prompts in both towers at the first J layers, vision prompts coupled to the text "
    "ones, cross-entropy",
    row=35,
    config_folder="MaPLe",
    defaults=MAPLE_PROTOCOL_DEFAULTS,
    prompt=MAPLE_PROMPT,
    model_name="MultiModalPromptLearner",
    config_keys=(
        ConfigKey(
            "TRAINER.MAPLE.N_CTX", 2, "prompt tokens per layer, in each tower", Values(minimum=1)
        ),
        ConfigKey(
            "TRAINER.MAPLE.CTX_INIT",
            "a photo of a",
            "words whose first N_CTX tokens start the text context (the rest stay fixed in the "
            'prompt); ""/None, or N_CTX > 4: random',
            Values(types=("NoneType", "str")),
        ),
        ConfigKey(
            "TRAINER.MAPLE.PREC",
            "fp16",
            "fp16, fp32 or amp",
            Values(choices=("fp16", "fp32", "amp")),
        ),
        ConfigKey(
            "TRAINER.MAPLE.PROMPT_DEPTH",
            9,
            "J: layers with prompts in each tower (1: input only)",
            Values(minimum=1),
        ),
    ),
)
# MODEL.TEXT_ENCODER: packed (fast, exact) or reference (the official computation, all 77
# positions, CLIP's own blocks; bit for bit the official steps, see docs/methods.md).
MAPLE_MODELS = {"packed": MaPLeCLIP, "reference": ReferenceMaPLeCLIP}
CHECKPOINT_PREFIX = "prompt_learner."  # the official checkpoints' keys: the whole CustomCLIP's


def check_maple_cfg(cfg) -> None:
    """Reject bad TRAINER.MAPLE values and non-ViT backbones before anything is built."""
    maple = cfg.TRAINER.MAPLE
    if maple.PREC not in PRECISIONS:
        raise ValueError(
            f'TRAINER.MAPLE.PREC is "{maple.PREC}"; use one of {", ".join(PRECISIONS)} '
            f"(fp16: CLIP's own half precision, as MaPLe's configs; fp32 on a CPU)"
        )
    n_ctx = maple.N_CTX
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
        raise ValueError(f"TRAINER.MAPLE.N_CTX is {n_ctx!r}; use an integer >= 1 (MaPLe: 2)")
    depth = maple.PROMPT_DEPTH
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(
            f"TRAINER.MAPLE.PROMPT_DEPTH is {depth!r}; use an integer >= 1 (1: prompts at the "
            f"input only; the official configs use 9, and 3 for cross-dataset transfer)"
        )
    words = maple.CTX_INIT
    if words is not None and words is not False and not isinstance(words, str):
        raise ValueError(
            f"TRAINER.MAPLE.CTX_INIT is {words!r}; give words (e.g. 'a photo of a') or '' for "
            f"N_CTX random vectors"
        )
    if isinstance(words, str) and words.strip() and count_tokens(words.replace("_", " ")) == 0:
        raise ValueError(f"TRAINER.MAPLE.CTX_INIT is {words!r}, which has no tokens")
    backbone = cfg.MODEL.BACKBONE.NAME
    # open_clip backbones: checked once built (maple_prompt.check_maple_backbone)
    if backbone.startswith("RN") and not cfg.MODEL.BACKBONE.PATH:
        raise ValueError(
            f'MODEL.BACKBONE.NAME is "{backbone}", a ResNet; MaPLe prompts the tokens of a '
            f"vision transformer. Use ViT-B/16 (MaPLe's configs), ViT-B/32 or ViT-L/14."
        )


def maple_prompt_words(cfg) -> str | None:
    """TRAINER.MAPLE.CTX_INIT as words, or None for a random context."""
    words = cfg.TRAINER.MAPLE.CTX_INIT
    if isinstance(words, str) and words.strip():
        return " ".join(words.replace("_", " ").split())
    return None


class MaPLeCheckpoint(nn.Module):
    """What MaPLe's checkpoints hold: the prompt learner, under the official key prefix."""

    def __init__(self, prompt_learner: MaPLePromptLearner):
        super().__init__()
        self.prompt_learner = prompt_learner


@TRAINER_REGISTRY.register()
class MaPLe(CoOp):
    """Multi-modal Prompt Learning: cross-entropy on the few-shot labels, over every tensor of
    the prompt learner (context, deep text prompts, coupling layers): CoOp's step, MaPLe's
    model."""

    checkpoint_name = "MultiModalPromptLearner"

    def check_cfg(self, cfg) -> None:
        check_maple_cfg(cfg)
        check_text_encoder(cfg.MODEL.TEXT_ENCODER)

    def precision_mode(self) -> str:
        return self.cfg.TRAINER.MAPLE.PREC

    def build_model(self) -> None:
        n_ctx, words = self.cfg.TRAINER.MAPLE.N_CTX, maple_prompt_words(self.cfg)
        if words and n_ctx <= 4:  # the prompt holds all the init words
            n_ctx = max(n_ctx, count_tokens(words))
        check_prompt_length(n_ctx, self.dm.dataset.classnames, "TRAINER.MAPLE.N_CTX")
        super().build_model()

    def build_custom_clip(self, clip_model, classnames: list[str]) -> MaPLeCLIP:
        maple = self.cfg.TRAINER.MAPLE
        learner = MaPLePromptLearner(
            clip_model, classnames, maple.N_CTX, maple_prompt_words(self.cfg), maple.PROMPT_DEPTH
        )
        teacher = self.teacher_text_features(clip_model, classnames)
        if self.cfg.MODEL.TEXT_ENCODER != "packed":
            print(f"MaPLe model: {self.cfg.MODEL.TEXT_ENCODER} (the official computation)")
        return MAPLE_MODELS[self.cfg.MODEL.TEXT_ENCODER](clip_model, learner, teacher)

    def checkpoint_module(self) -> nn.Module:
        return MaPLeCheckpoint(self.model.prompt_learner)

    def checkpoint_state(self, state_dict: dict, path: str) -> dict:
        """The prompt learner's tensors of a MaPLe checkpoint (ours or the official code's); the
        token buffers and the frozen CLIP the official checkpoints also hold are not read."""
        kept = {
            key: value
            for key, value in state_dict.items()
            if key.startswith(CHECKPOINT_PREFIX)
            and key.rsplit(".", 1)[-1] not in ("token_prefix", "token_suffix")
        }
        if not kept and state_dict:
            raise ValueError(
                f"{path} holds no '{CHECKPOINT_PREFIX}*' tensors, so it is not a MaPLe "
                f"checkpoint (<run>/MultiModalPromptLearner/model.pth.tar-N); its keys start "
                f"{sorted(state_dict)[:4]}"
            )
        frozen = [key for key in state_dict if not key.startswith(CHECKPOINT_PREFIX)]
        if frozen:
            print(f"Note: {path} also holds {len(frozen)} frozen CLIP tensors, not read")
        return kept
