"""CoCoOp (Zhou et al., CVPR 2022) as a Dassl trainer: CoOp's context, shifted for each image by a
meta-net. cfg in (TRAINER.COCOOP.*), plain values down to cocoop_prompt; the step is CoOp's."""

from __future__ import annotations

from dassl.engine import TRAINER_REGISTRY

from experiments.declarations import (
    COCOOP_PROTOCOL_DEFAULTS,
    ConfigKey,
    Method,
    PromptKeys,
    Values,
)

from .backbone import Tokenizer, openai_tokenizer, tokenizer_for
from .clip_prompt import check_text_encoder, count_tokens
from .cocoop_prompt import CoCoOpCLIP, CoCoOpPromptLearner
from .coop import CoOp
from .precision import PRECISIONS

METHOD = Method(
    name="CoCoOp",
    trainer="CoCoOp",
    summary="CoOp's context shifted per image by a meta-net, cross-entropy (CoOp's step)",
    row=30,
    config_folder="CoCoOp",
    defaults=COCOOP_PROTOCOL_DEFAULTS,
    prompt=PromptKeys("TRAINER.COCOOP", 4, False),  # the c4 of vit_b16_c4_ep10_batch1
    config_keys=(
        ConfigKey(
            "TRAINER.COCOOP.N_CTX",
            16,
            "number of context vectors (when CTX_INIT is empty)",
            Values(minimum=1),
        ),
        # None lets check_cfg, not yacs, refuse other types with a clear message.
        ConfigKey(
            "TRAINER.COCOOP.CTX_INIT",
            None,
            'initialization words (N_CTX then ignored); ""/None: random',
            Values(types=("NoneType", "bool", "str"), note="False: random"),
        ),
        ConfigKey(
            "TRAINER.COCOOP.PREC",
            "fp16",
            "fp16, fp32, amp, bf16, amp_fp16 or amp_bf16 (docs/backbones.md)",
            Values(choices=("fp16", "fp32", "amp", "bf16", "amp_fp16", "amp_bf16")),
        ),
    ),
)


def check_cocoop_cfg(cfg) -> None:
    """Reject bad TRAINER.COCOOP values before anything is built."""
    cocoop = cfg.TRAINER.COCOOP
    if cocoop.PREC not in PRECISIONS:
        raise ValueError(
            f'TRAINER.COCOOP.PREC is "{cocoop.PREC}"; use one of {", ".join(PRECISIONS)} '
            f"(fp16: CLIP's own half precision, as CoCoOp's configs; fp32 on a CPU)"
        )
    n_ctx = cocoop.N_CTX
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
        raise ValueError(
            f"TRAINER.COCOOP.N_CTX is {n_ctx!r}; use an integer >= 1 (CoCoOp's configs use 4, "
            f"8 or 16)"
        )
    words = cocoop.CTX_INIT
    if words is not None and words is not False and not isinstance(words, str):
        raise ValueError(
            f"TRAINER.COCOOP.CTX_INIT is {words!r}; give the words that initialise the context "
            f"(e.g. 'a photo of a' or a_photo_of_a), or '' for N_CTX random vectors"
        )
    if isinstance(words, str) and words.strip() and count_tokens(words.replace("_", " ")) == 0:
        raise ValueError(
            f"TRAINER.COCOOP.CTX_INIT is {words!r}, which has no tokens; give words such as "
            f"'a photo of a', or '' for N_CTX random vectors"
        )


def cocoop_context_init(cfg) -> tuple[int, str | None]:
    """(n_ctx, init_words) from TRAINER.COCOOP.N_CTX and CTX_INIT.

    CTX_INIT words: the context is exactly those words (N_CTX is ignored), as in CoCoOp; the
    context has one vector per BPE token, which is one per word for CoCoOp's "a photo of a".
    CTX_INIT "" / None / False: N_CTX random vectors.
    """
    words = cfg.TRAINER.COCOOP.CTX_INIT
    if isinstance(words, str) and words.strip():
        words = " ".join(words.replace("_", " ").split())
        return count_tokens(words), words
    return cfg.TRAINER.COCOOP.N_CTX, None


def check_prompt_length(
    n_ctx: int, classnames: list[str], key: str, tokenizer: Tokenizer | None = None
) -> None:
    """[SOS] + n_ctx context vectors + the longest class name + "." + [EOS] must fit in the
    model's context length (`tokenizer`'s; default OpenAI CLIP's 77)."""
    tokenizer = tokenizer or openai_tokenizer()
    limit = tokenizer.context_length
    longest = max(classnames, key=lambda name: count_tokens(name.replace("_", " "), tokenizer))
    # context, name, "." and the start/end-of-text tokens
    needed = (
        n_ctx + count_tokens(longest.replace("_", " "), tokenizer) + 1 + tokenizer.special_tokens
    )
    if needed > limit:
        raise ValueError(
            f'{key} gives {n_ctx} context vectors, too many for the class "{longest}": its '
            f"prompt needs {needed} of the {limit} text positions of {tokenizer.name}; use at "
            f"most {n_ctx - (needed - limit)} context vectors (or shorten the class name)"
        )


@TRAINER_REGISTRY.register()
class CoCoOp(CoOp):
    """Conditional Context Optimization: CoOp's context + π(image), π a small meta-net; both are
    learned with cross-entropy on the few-shot labels (CoOp's step, CoCoOp's model)."""

    def check_cfg(self, cfg) -> None:
        check_cocoop_cfg(cfg)
        check_text_encoder(cfg.MODEL.TEXT_ENCODER)

    def precision_mode(self) -> str:
        return self.cfg.TRAINER.COCOOP.PREC

    def prompt_context(self, cfg) -> tuple[int, str | None]:
        """(n_ctx, init_words) of CoCoOp's context; see `cocoop_context_init`."""
        return cocoop_context_init(cfg)

    def build_model(self) -> None:
        n_ctx, init_words = cocoop_context_init(self.cfg)
        key = "TRAINER.COCOOP.CTX_INIT" if init_words else "TRAINER.COCOOP.N_CTX"
        backbone = self.cfg.MODEL.BACKBONE
        tokenizer = tokenizer_for(backbone.NAME, backbone.PATH)
        check_prompt_length(n_ctx, self.dm.dataset.classnames, key, tokenizer)  # before loading
        super().build_model()

    def build_custom_clip(self, clip_model, classnames: list[str]) -> CoCoOpCLIP:
        n_ctx, init_words = cocoop_context_init(self.cfg)
        if init_words and n_ctx != self.cfg.TRAINER.COCOOP.N_CTX:
            print(
                f"Note: TRAINER.COCOOP.N_CTX {self.cfg.TRAINER.COCOOP.N_CTX} is not used: the "
                f'context is the {n_ctx} tokens of TRAINER.COCOOP.CTX_INIT "{init_words}"'
            )
        prompt_learner = CoCoOpPromptLearner(clip_model, classnames, n_ctx, init_words)
        teacher = self.teacher_text_features(clip_model, classnames)
        return CoCoOpCLIP(clip_model, prompt_learner, teacher, self.cfg.MODEL.TEXT_ENCODER)
