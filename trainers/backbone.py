"""The backbone seam: where a CLIP model comes from, its tokenizer, a uniform view of its towers.

Everything that touches a CLIP model goes through here: loading by name or file (OpenAI's `clip`
package, the default, or open_clip), the tokenizer of that model (every text checked against its
context length), and :class:`TextTower` / :class:`ImageTower`, the components the prompt modules,
the frozen image encoder, the zero-shot head and a deep-prompt learner (MaPLe) work on.

``MODEL.BACKBONE.NAME``:
    "RN50", "ViT-B/16", ...    OpenAI's weights through OpenAI's `clip` (the default)
    "open_clip:ARCH/TAG"       an open_clip model, e.g. open_clip:ViT-B-16/laion2b_s34b_b88k

An open_clip model's weights are read offline from ``MODEL.BACKBONE.PATH`` or from open_clip's own
cache (the Hugging Face hub cache, or ~/.cache/clip for URL downloads); nothing is downloaded.
ARCH is one of open_clip's model configs, or a config in ``open_clip_config.json`` beside the
weights file (the layout of open_clip's hub repositories; the tests' tiny models use it).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from clip import model as openai_model
from clip.simple_tokenizer import SimpleTokenizer as OpenAITokenizer
from torch import nn

OPEN_CLIP_PREFIX = "open_clip:"
OPEN_CLIP_CONFIG = "open_clip_config.json"  # open_clip's hub layout: {"model_cfg": {...}}
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# Text towers whose blocks TextEncoder's packed computation reproduces exactly.
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_tanh")
TEXT_SHORTENED = 60  # characters of a too-long text quoted in the error


# ----------------------------------------------------------------------------------------------
# Names


@dataclasses.dataclass(frozen=True)
class BackboneName:
    """A parsed ``MODEL.BACKBONE.NAME``.

    Attributes:
        source: "openai" or "open_clip".
        arch: OpenAI's name ("ViT-B/16") or open_clip's model config ("ViT-B-16").
        tag: open_clip's pretrained tag ("laion2b_s34b_b88k"); "" for OpenAI.
    """

    source: str
    arch: str
    tag: str = ""

    @property
    def text(self) -> str:
        """The name as written in the config."""
        if self.source == "openai":
            return self.arch
        return f"{OPEN_CLIP_PREFIX}{self.arch}/{self.tag}"


def parse_backbone_name(name: str) -> BackboneName:
    """``MODEL.BACKBONE.NAME`` -> source, arch, tag; a malformed open_clip name is a ValueError."""
    if not name.startswith(OPEN_CLIP_PREFIX):
        return BackboneName("openai", name)
    body = name[len(OPEN_CLIP_PREFIX) :]
    arch, _, tag = body.partition("/")
    if not arch or not tag:
        raise ValueError(
            f'MODEL.BACKBONE.NAME "{name}" is not an open_clip name; write '
            f"open_clip:ARCH/PRETRAINED_TAG as open_clip lists them, e.g. "
            f"open_clip:ViT-B-16/laion2b_s34b_b88k (python -c 'import open_clip; "
            f"print(open_clip.list_pretrained())' lists them)"
        )
    return BackboneName("open_clip", arch, tag)


def is_openai_backbone(name: str) -> bool:
    """Whether MODEL.BACKBONE.NAME names OpenAI's weights through OpenAI's `clip` package."""
    return parse_backbone_name(name).source == "openai"


# ----------------------------------------------------------------------------------------------
# Tokenizers


class Tokenizer:
    """Texts -> token ids of one model, every text checked against the model's context length.

    Attributes:
        context_length: positions the text tower reads (77 for CLIP, 64 for SigLIP).
        start_token: the id every prompt starts with (CLIP's start-of-text), None if none.
        name: the backbone, for messages.
    """

    def __init__(
        self,
        encode: Callable[[str], list[int]],
        context_length: int,
        start_token: int | None,
        end_token: int,
        name: str,
        decode: Callable[[list[int]], str] | None = None,
        pad_token: int = 0,
    ):
        self._encode = encode
        self._decode = decode
        self.context_length = context_length
        self.start_token = start_token
        self.end_token = end_token
        self.pad_token = pad_token
        self.name = name

    @property
    def special_tokens(self) -> int:
        """Tokens each text gets besides its own: start- and end-of-text."""
        return (self.start_token is not None) + 1

    def encode(self, text: str) -> list[int]:
        """The ids of `text`'s own tokens, without start/end-of-text."""
        return self._encode(text)

    def count(self, text: str) -> int:
        """Number of tokens of `text`, without the start/end-of-text tokens."""
        return len(self._encode(text))

    def decode(self, ids: list[int]) -> str:
        """Text of token ids."""
        if self._decode is None:
            raise ValueError(f"the tokenizer of {self.name} cannot decode")
        return self._decode(ids)

    def check(self, texts: Sequence[str], fix: str = "") -> None:
        """Raise a ValueError naming the first text longer than the context length.

        Args:
            texts: the texts, as they will be tokenized.
            fix: what the user can change (a key, a class name); a generic hint if empty.
        """
        for text in texts:
            count = self.count(text) + self.special_tokens
            if count > self.context_length:
                raise ValueError(too_long_message(text, count, self.context_length, self.name, fix))

    def __call__(self, texts: Sequence[str], fix: str = "") -> torch.Tensor:
        """(len(texts), context_length) int64 ids, padded; a too-long text is a ValueError."""
        self.check(texts, fix)
        result = torch.full((len(texts), self.context_length), self.pad_token, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = ([self.start_token] if self.start_token is not None else []) + self.encode(text)
            ids.append(self.end_token)
            result[row, : len(ids)] = torch.tensor(ids)
        return result


class HFTextTokenizer(Tokenizer):
    """A Hugging Face tokenizer (SigLIP's) through open_clip's HFTokenizer, read from disk only:
    the same ids as open_clip, every text checked against the context length first."""

    def __init__(self, source: str, context_length: int, name: str, text_cfg: dict):
        from open_clip.tokenizer import HFTokenizer

        self.hf = HFTokenizer(
            source,
            context_length=context_length,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            local_files_only=True,
            **text_cfg.get("tokenizer_kwargs", {}),
        )
        self.hf_tokenizer = self.hf.tokenizer
        probe, bare = self.hf_tokenizer("a")["input_ids"], self._encode_bare("a")
        start = probe[0] if probe[: len(bare)] != bare else None
        super().__init__(
            self._encode_bare,
            context_length,
            start,
            probe[-1],
            name,
            decode=self.hf_tokenizer.decode,
            pad_token=self.hf_tokenizer.pad_token_id or 0,
        )
        self._special_count = len(probe) - len(bare)

    def _encode_bare(self, text: str) -> list[int]:
        return self.hf_tokenizer(self.hf.clean_fn(text), add_special_tokens=False)["input_ids"]

    @property
    def special_tokens(self) -> int:
        return self._special_count

    def __call__(self, texts: Sequence[str], fix: str = "") -> torch.Tensor:
        self.check(texts, fix)
        return self.hf(list(texts))


def too_long_message(text: str, count: int, limit: int, model: str, fix: str = "") -> str:
    """The error for a text longer than a model's context length."""
    shown = text if len(text) <= TEXT_SHORTENED else text[: TEXT_SHORTENED - 3] + "..."
    fix = fix or (
        "shorten it (a class name: rename the class in the dataset's class names or split "
        "file; a template or TRAINER.*.CTX_INIT: fewer words; fewer context vectors: "
        "TRAINER.*.N_CTX)"
    )
    return (
        f'the text "{shown}" has {count} tokens (start/end-of-text included), more than the '
        f"{limit} that the text encoder of {model} reads (its context length); {fix}"
    )


@functools.cache
def openai_tokenizer() -> Tokenizer:
    """OpenAI CLIP's BPE tokenizer, 77 positions: ids identical to `clip.tokenize`."""
    bpe = OpenAITokenizer()
    return Tokenizer(
        bpe.encode,
        77,
        bpe.encoder["<|startoftext|>"],
        bpe.encoder["<|endoftext|>"],
        "OpenAI CLIP",
        decode=bpe.decode,
    )


@functools.cache
def open_clip_bpe_tokenizer(context_length: int, name: str) -> Tokenizer:
    """open_clip's CLIP BPE tokenizer (shipped inside open_clip) for `context_length` positions."""
    from open_clip.tokenizer import SimpleTokenizer

    bpe = SimpleTokenizer(context_length=context_length)
    return Tokenizer(
        bpe.encode, context_length, bpe.sot_token_id, bpe.eot_token_id, name, decode=bpe.decode
    )


def tokenizer_for(name: str, path: str = "") -> Tokenizer:
    """The tokenizer of MODEL.BACKBONE.NAME (no weights are read): for length checks up front."""
    parsed = parse_backbone_name(name)
    if parsed.source == "openai":
        return openai_tokenizer()
    file = Path(path).expanduser() if path else None
    if file is not None and file.is_dir():
        file = file / OPEN_CLIP_WEIGHTS[-1]  # the folder's files are looked for beside it
    return open_clip_tokenizer(open_clip_model_config(parsed, file), parsed.text, file)


# Files of a Hugging Face tokenizer saved in a folder (save_pretrained, open_clip's hub repos).
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")


def open_clip_tokenizer(config: dict, name: str, file: Path | None = None) -> Tokenizer:
    """The tokenizer an open_clip model config asks for: CLIP's BPE (shipped inside open_clip),
    or a Hugging Face tokenizer (SigLIP's) from beside the weights file or the hub cache."""
    text_cfg = config.get("text_cfg", {})
    context_length = int(text_cfg.get("context_length", 77))
    if text_cfg.get("hf_model_name"):
        raise ValueError(
            f"{name} has a Hugging Face text tower ({text_cfg['hf_model_name']}), which is not "
            f"supported; supported: CLIP's text transformer (OpenAI, LAION, DataComp, MetaCLIP, "
            f"DFN, EVA02, SigLIP)"
        )
    hub_name = text_cfg.get("hf_tokenizer_name")
    if not hub_name:
        return open_clip_bpe_tokenizer(context_length, name)
    try:
        import transformers  # noqa: F401  (open_clip's HFTokenizer needs it)
    except ImportError:
        raise ValueError(
            f"{name} uses a Hugging Face tokenizer ({hub_name}); install transformers and "
            f"sentencepiece (pip install transformers sentencepiece) to use it"
        ) from None
    beside = file.parent if file is not None else None
    if beside is not None and any((beside / part).is_file() for part in HF_TOKENIZER_FILES):
        return HFTextTokenizer(str(beside), context_length, name, text_cfg)
    try:
        return HFTextTokenizer(hub_name, context_length, name, text_cfg)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"the tokenizer of {name} is not on this machine: looked beside the weights "
            f"({beside or 'MODEL.BACKBONE.PATH not set'}: {', '.join(HF_TOKENIZER_FILES)}) and in "
            f"the Hugging Face cache ({hub_name}; {str(error).splitlines()[0][:200]}). Copy the "
            f"tokenizer files of {hub_name} next to the weights file."
        ) from None


def tokenizer_of(clip_model: nn.Module) -> Tokenizer:
    """The tokenizer a loaded model was given (OpenAI's for a bare OpenAI CLIP)."""
    tokenizer = getattr(clip_model, "backbone_tokenizer", None)
    if tokenizer is not None:
        return tokenizer
    if isinstance(clip_model, openai_model.CLIP):
        return openai_tokenizer()
    return open_clip_bpe_tokenizer(int(clip_model.context_length), type(clip_model).__name__)


# ----------------------------------------------------------------------------------------------
# Towers


def activation_of(block: nn.Module) -> str | None:
    """The MLP activation of a transformer block: one of ACTIVATIONS, None if unknown."""
    mlp = getattr(block, "mlp", None)
    gelu = getattr(mlp, "gelu", None)
    if gelu is None:
        return None
    if type(gelu).__name__ == "QuickGELU":  # clip.model's or open_clip.transformer's
        return "quick_gelu"
    if type(gelu) is nn.GELU:
        return "gelu_tanh" if gelu.approximate == "tanh" else "gelu"
    return None


@dataclasses.dataclass(eq=False)
class TextTower:
    """The text transformer of a CLIP model, whatever built it: its modules, shared (no copy).

    A deep-prompt learner (MaPLe) reaches the blocks through ``blocks`` and runs them with
    ``attention_mask`` (OpenAI's blocks carry their own mask; ``sequence_first`` says so).

    Attributes:
        token_embedding: ids -> (.., D_t).
        positional_embedding: (context_length, D_t).
        transformer: the module holding ``resblocks``.
        ln_final: the last LayerNorm.
        projection: (D_t, D) matrix, an nn.Linear(D_t, D) (SigLIP), or None.
        attention_mask: (L, L) additive causal mask, None for bidirectional attention.
        pooling: where the feature is read: "argmax" (the end-of-text token, the largest id),
            "eos" (the first `eos_id`), "last", "first".
        eos_id: the end-of-text id for "eos" pooling.
        sequence_first: OpenAI's transformer takes (L, N, D_t); open_clip's takes (N, L, D_t).
        context_length: positions of a prompt.
    """

    token_embedding: nn.Embedding
    positional_embedding: nn.Parameter
    transformer: nn.Module
    ln_final: nn.Module
    projection: nn.Parameter | nn.Linear | None
    attention_mask: torch.Tensor | None
    pooling: str
    eos_id: int | None
    sequence_first: bool
    context_length: int

    @property
    def blocks(self) -> nn.ModuleList:
        """The residual attention blocks, in order."""
        return self.transformer.resblocks

    @property
    def causal(self) -> bool:
        """Whether a position attends only to itself and earlier ones."""
        return self.attention_mask is not None

    @property
    def activations(self) -> list[str | None]:
        """The MLP activation of each block (ACTIVATIONS, None where unknown)."""
        return [activation_of(block) for block in self.blocks]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the tower computes in (its blocks' weights)."""
        return self.blocks[0].mlp.c_fc.weight.dtype

    def run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One of `blocks` over (N, L, D_t) hidden states, with the tower's mask and layout: what
        a deep-prompt learner (MaPLe) calls between its prompt insertions."""
        if self.sequence_first:  # OpenAI's blocks: (L, N, D_t), the mask inside the block
            return block(x.permute(1, 0, 2)).permute(1, 0, 2)
        length = x.shape[1]
        mask = None if self.attention_mask is None else self.attention_mask[:length, :length]
        if not getattr(self.transformer, "batch_first", True):
            return block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
        return block(x, attn_mask=mask)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The tower's own transformer over (N, L, D_t) embeddings (+ positions), mask included."""
        if self.sequence_first:
            return self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        length = x.shape[1]
        mask = None if self.attention_mask is None else self.attention_mask[:length, :length]
        return self.transformer(x, attn_mask=mask)

    def pool_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """The position each prompt's feature is read at: (C, L) ids -> (C,)."""
        if self.pooling == "argmax":
            return tokens.argmax(dim=-1)
        if self.pooling == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        if self.pooling == "last":
            return torch.full(tokens.shape[:1], tokens.shape[-1] - 1, device=tokens.device)
        if self.pooling == "first":
            return torch.zeros(tokens.shape[:1], dtype=torch.long, device=tokens.device)
        raise ValueError(f'text pooling "{self.pooling}" is not supported')

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(.., D_t) pooled rows -> (.., D) features."""
        if self.projection is None:
            return x
        if isinstance(self.projection, nn.Linear):
            return self.projection(x)
        return x @ self.projection


def text_tower(clip_model: nn.Module) -> TextTower:
    """The :class:`TextTower` of an OpenAI CLIP, an open_clip CLIP or CustomTextCLIP."""
    if isinstance(clip_model, openai_model.CLIP):
        return TextTower(
            clip_model.token_embedding,
            clip_model.positional_embedding,
            clip_model.transformer,
            clip_model.ln_final,
            clip_model.text_projection,
            clip_model.transformer.resblocks[0].attn_mask,
            "argmax",
            None,
            True,
            clip_model.context_length,
        )
    text = getattr(clip_model, "text", None)
    if text is not None:  # open_clip's CustomTextCLIP (EVA02, SigLIP): the tower is a module
        if not hasattr(text, "token_embedding") or getattr(text, "cls_emb", None) is not None:
            raise ValueError(
                f"the text tower {type(text).__name__} is not supported; supported: CLIP's text "
                f"transformer (OpenAI CLIP and open_clip's TextTransformer)"
            )
        pooling, eos_id, context_length = text.pool_type, text.eos_id, text.context_length
    else:
        text = clip_model
        pooling = clip_model.text_pool_type
        eos_id, context_length = clip_model.text_eos_id, clip_model.context_length
    return TextTower(
        text.token_embedding,
        text.positional_embedding,
        text.transformer,
        text.ln_final,
        text.text_projection,
        text.attn_mask,
        pooling,
        eos_id,
        False,
        int(context_length),
    )


@dataclasses.dataclass(eq=False)
class ImageTower:
    """The image encoder of a CLIP model.

    Attributes:
        visual: the module, (B, 3, H, W) -> (B, D).
        kind: "openai_resnet", "openai_vit" (the fused FrozenImageEncoder paths), "open_clip_vit",
            "open_clip_resnet" or "timm" (each computed by the tower itself).
        resolution: H = W of the images it takes.
    """

    visual: nn.Module
    kind: str
    resolution: int

    @property
    def blocks(self) -> nn.ModuleList | None:
        """The transformer blocks of a ViT (OpenAI's / open_clip's; a timm trunk's), else None."""
        transformer = getattr(self.visual, "transformer", None)
        if transformer is not None:
            return transformer.resblocks
        trunk = getattr(self.visual, "trunk", None)
        return getattr(trunk, "blocks", None)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the tower's weights (the dtype it takes images in)."""
        if self.kind.startswith("openai"):
            return self.visual.conv1.weight.dtype  # as OpenAI's CLIP.dtype
        return next(self.visual.parameters()).dtype


def image_tower(clip_model: nn.Module) -> ImageTower:
    """The :class:`ImageTower` of a CLIP model."""
    visual = clip_model.visual
    if isinstance(visual, openai_model.ModifiedResNet):
        return ImageTower(visual, "openai_resnet", visual.input_resolution)
    if isinstance(visual, openai_model.VisionTransformer):
        return ImageTower(visual, "openai_vit", visual.input_resolution)
    size = getattr(visual, "image_size", None)
    if size is None:
        raise ValueError(f"the image tower {type(visual).__name__} is not supported")
    resolution = size[0] if isinstance(size, (tuple, list)) else int(size)
    name = type(visual).__name__
    kind = {"VisionTransformer": "open_clip_vit", "ModifiedResNet": "open_clip_resnet"}
    return ImageTower(visual, kind.get(name, "timm" if name == "TimmModel" else name), resolution)


def model_dtype(clip_model: nn.Module) -> torch.dtype:
    """The dtype prompts are built in: OpenAI CLIP's `dtype`, else the text blocks' weights."""
    if isinstance(clip_model, openai_model.CLIP):
        return clip_model.dtype
    return text_tower(clip_model).dtype


def embed_dim(clip_model: nn.Module) -> int:
    """D, the width of the joint embedding (the text projection's output)."""
    projection = text_tower(clip_model).projection
    if isinstance(projection, nn.Linear):
        return projection.out_features
    if projection is None:
        return text_tower(clip_model).ln_final.weight.shape[0]
    return projection.shape[1]


def logit_bias_of(clip_model: nn.Module) -> torch.Tensor | None:
    """The logit bias added to the scaled cosine (SigLIP), None for CLIP."""
    return getattr(clip_model, "logit_bias", None)


# ----------------------------------------------------------------------------------------------
# Loading


def load_backbone(name: str, path: str = "") -> nn.Module:
    """The CLIP model of MODEL.BACKBONE.NAME/PATH on the CPU, eval mode, with its tokenizer.

    OpenAI's weights come as OpenAI ships them (fp16); open_clip's in fp32. The model carries
    ``backbone_tokenizer`` (see :func:`tokenizer_of`) and ``backbone_name``.
    """
    parsed = parse_backbone_name(name)
    if parsed.source == "openai":
        from .clip_prompt import load_clip

        model = load_clip(name, path)
        tokenizer = openai_tokenizer()
    else:
        model, tokenizer = load_open_clip(parsed, path)
    model.backbone_tokenizer = tokenizer
    model.backbone_name = parsed.text
    return model


def resolve_backbone_file(name: str, path: str = "") -> Path:
    """The local weights file of MODEL.BACKBONE.NAME/PATH (OpenAI's: downloaded by name if
    needed, as before; open_clip's: PATH or open_clip's cache, never downloaded)."""
    parsed = parse_backbone_name(name)
    if parsed.source == "openai":
        from .clip_prompt import resolve_clip_file

        return resolve_clip_file(name, path)
    return resolve_open_clip_file(parsed, path)


def backbone_fingerprint(name: str, file_sha256: str) -> str:
    """What tells two backbones' outputs apart: the weights file's content hash, with the
    architecture for open_clip (one file can load as GELU or QuickGELU)."""
    if is_openai_backbone(name):
        return file_sha256  # as before: existing feature caches stay valid
    return hashlib.sha256(f"{name}\n{file_sha256}".encode()).hexdigest()


def open_clip_model_config(parsed: BackboneName, file: Path | None) -> dict:
    """The model config of an open_clip ARCH: open_clip's own, else open_clip_config.json beside
    the weights file."""
    import open_clip

    config = open_clip.get_model_config(parsed.arch)
    if config is not None:
        return config
    beside = file.parent / OPEN_CLIP_CONFIG if file is not None else None
    if beside is not None and beside.is_file():
        data = json.loads(beside.read_text())
        if "model_cfg" in data:
            return data["model_cfg"]
        raise ValueError(f'{beside} has no "model_cfg" (open_clip\'s hub layout)')
    known = ", ".join(name for name in open_clip.list_models() if "ViT-B" in name)
    raise ValueError(
        f'open_clip has no model config "{parsed.arch}" (MODEL.BACKBONE.NAME {parsed.text}), '
        f"and there is no {OPEN_CLIP_CONFIG} beside MODEL.BACKBONE.PATH "
        f"({file or 'not set'}). Use one of open_clip.list_models() (e.g. {known}), or put the "
        f"model's {OPEN_CLIP_CONFIG} next to its weights."
    )


def open_clip_cache_candidates(parsed: BackboneName) -> list[Path]:
    """Where open_clip's downloads of ARCH/TAG would be: the HF hub cache, ~/.cache/clip."""
    import open_clip

    pretrained = open_clip.get_pretrained_cfg(parsed.arch, parsed.tag)
    candidates: list[Path] = []
    hub = pretrained.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        if hub.endswith("/"):  # a repository with open_clip's default file names
            repo, filenames = hub[:-1], list(OPEN_CLIP_WEIGHTS)
        else:
            repo, filename = os.path.split(hub)
            filenames = [filename]
        hub_cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub"
        )  # where the message says it looked (the hub's own lookup is try_to_load_from_cache)
        for filename in filenames:
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return [Path(found)]
            candidates.append(
                Path(hub_cache).expanduser() / f"models--{repo.replace('/', '--')}" / filename
            )
    url = pretrained.get("url", "")
    if url:
        candidates.append(Path("~/.cache/clip").expanduser() / os.path.basename(url))
    return candidates


def resolve_open_clip_file(parsed: BackboneName, path: str = "") -> Path:
    """The weights file of an open_clip model: MODEL.BACKBONE.PATH, else open_clip's cache."""
    import open_clip

    if path:
        file = Path(path).expanduser()
        if file.is_dir():
            for name in OPEN_CLIP_WEIGHTS:
                if (file / name).is_file():
                    return file / name
            raise FileNotFoundError(
                f"MODEL.BACKBONE.PATH {file} is a folder without {' or '.join(OPEN_CLIP_WEIGHTS)}"
                f"; give the weights file of {parsed.text}"
            )
        if not file.is_file():
            raise FileNotFoundError(
                f"MODEL.BACKBONE.PATH points to {file}, which does not exist; give the weights "
                f"file of {parsed.text} (open_clip's .safetensors / .bin / .pt checkpoint)."
            )
        return file
    open_clip_model_config(parsed, None)  # an unknown ARCH is named before its tag
    if not open_clip.get_pretrained_cfg(parsed.arch, parsed.tag):
        tags = open_clip.list_pretrained_tags_by_model(parsed.arch)
        raise ValueError(
            f'open_clip has no pretrained weights "{parsed.tag}" for {parsed.arch} '
            f"(MODEL.BACKBONE.NAME {parsed.text}); its tags: {', '.join(tags) or 'none'}. Or set "
            f"MODEL.BACKBONE.PATH to a local weights file."
        )
    candidates = open_clip_cache_candidates(parsed)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates) or "nowhere (no source)"
    raise FileNotFoundError(
        f"the weights of {parsed.text} are not on this machine (looked for {looked}); nothing is "
        f'downloaded here. On a machine with internet run python -c "import open_clip; '
        f"open_clip.create_model('{parsed.arch}', pretrained='{parsed.tag}')\" and copy the "
        f"cached file over, or give it with MODEL.BACKBONE.PATH /path/to/weights."
    )


def load_open_clip(parsed: BackboneName, path: str = "") -> tuple[nn.Module, Tokenizer]:
    """An open_clip model (fp32, eval) built from its config with its weights, and its tokenizer.

    QuickGELU comes from the config ("quick_gelu") or the pretrained tag (OpenAI's and MetaCLIP's
    weights were trained with it, under open_clip's GELU config names).
    """
    import open_clip

    file = resolve_open_clip_file(parsed, path)
    config = dict(open_clip_model_config(parsed, file))
    tokenizer = open_clip_tokenizer(config, parsed.text, file)
    tag_cfg = open_clip.get_pretrained_cfg(parsed.arch, parsed.tag)
    if tag_cfg.get("quick_gelu", False):
        config["quick_gelu"] = True
    custom_text = config.pop("custom_text", False) or "hf_model_name" in config.get("text_cfg", {})
    if "multimodal_cfg" in config:
        raise ValueError(f"{parsed.text} is a CoCa model, which is not supported")
    for key in ("text_cfg", "vision_cfg"):
        config[key] = dict(config[key])
    if "timm_model_name" in config["vision_cfg"]:
        config["vision_cfg"]["timm_model_pretrained"] = False  # never download
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    try:
        model = model_class(**config)
    except RuntimeError as error:  # timm: "Unknown model (...)"
        timm_name = config["vision_cfg"].get("timm_model_name")
        if not timm_name or "Unknown model" not in str(error):
            raise
        import timm

        raise ValueError(
            f"the vision tower of {parsed.text} is timm's {timm_name}, which timm "
            f"{timm.__version__} does not have; install the timm of requirements.txt"
        ) from None
    load_open_clip_weights(model, file, parsed)
    text_tower(model)  # refuses unsupported text towers now, not mid-run
    return model.eval(), tokenizer


def load_open_clip_weights(model: nn.Module, file: Path, parsed: BackboneName) -> None:
    """Weights into an open_clip model: open_clip's load_checkpoint (its conversions), or an
    OpenAI JIT archive read as a state dict."""
    import open_clip

    from .clip_prompt import read_clip_weights

    try:
        if file.suffix in (".safetensors", ".npz", ".npy"):
            open_clip.load_checkpoint(model, str(file))
            return
        state = read_clip_weights(file)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a state dict")
        state = {key.removeprefix("module."): value for key, value in state.items()}
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
        if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
            from open_clip.model import convert_to_custom_text_state_dict

            state = convert_to_custom_text_state_dict(state)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError) as error:
        raise ValueError(
            f"{file} does not hold the weights of {parsed.text} "
            f"({str(error).splitlines()[0][:300]}); check MODEL.BACKBONE.NAME's model config "
            f"against the file"
        ) from None
