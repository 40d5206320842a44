"""OpenAI CLIP checkpoint reading, the hand-crafted templates (read from the dataset
declarations), and the prompt modules (explicit arguments, no cfg). Models come through the
backbone seam (trainers/backbone.py: OpenAI CLIP or open_clip); the modules here read a model's
text tower, tokenizer and dtype through it.

Shape glossary:
    B      images in a batch
    C      classes (n_cls)
    M      learnable context tokens (n_ctx)
    L      token positions the text encoder runs over (<= 77, see TextEncoder)
    D_t    text transformer width (= token embedding width, ctx_dim)
    D      joint embedding width (CLIP's embed_dim)
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import os
import urllib.error
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch
from clip import clip as openai_clip
from clip.model import CLIP, build_model
from torch import nn
from torch.nn import functional as F

from experiments import catalog
from experiments.declarations import DEFAULT_TEMPLATE, Templates

from .backbone import (
    Tokenizer,
    activation_of,
    logit_bias_of,
    model_dtype,
    openai_tokenizer,
    text_tower,
    tokenizer_of,
)
from .frozen_image import FrozenImageEncoder

# The kinds of hand-crafted prompt a dataset declares (experiments.declarations.Templates).
TEMPLATE_KINDS = tuple(field.name for field in dataclasses.fields(Templates))


def template_for(dataset_name: str, kind: str = "prograd") -> str:
    """The hand-crafted template of a dataset, as its module declares it (``DATASET.templates``).

    Args:
        dataset_name: the Dassl registry name (DATASET.NAME, e.g. "OxfordPets"); a dataset that
            declares none (e.g. a user's own) gets DEFAULT_TEMPLATE, "a photo of a {}.".
        kind: "prograd" (ProGrad's teacher, the zero-shot rows, CTX_INIT True), "coop" (CoOp's
            zero-shot templates) or "kgcoop" (KgCoOp's teacher).
    """
    if kind not in TEMPLATE_KINDS:
        raise ValueError(
            f"template kind {kind!r} is not known; use one of {', '.join(TEMPLATE_KINDS)}"
        )
    dataset = catalog.dataset_by_registry_name(dataset_name)
    return DEFAULT_TEMPLATE if dataset is None else getattr(dataset.templates, kind)


def template_context_words(template: str) -> str:
    """The words of a template before its class name: "a photo of a {}." -> "a photo of a"."""
    if not template.endswith("{}."):
        raise ValueError(
            f'template "{template}" must end with "{{}}." to initialise the context from it'
        )
    return template[: -len("{}.")].strip()


def tokenize(texts: list[str], tokenizer: Tokenizer | None = None, fix: str = "") -> torch.Tensor:
    """Token ids padded to the context length: (len(texts), L) int64.

    Args:
        texts: the texts; one longer than the context length is a ValueError naming it.
        tokenizer: the model's (`backbone.tokenizer_of`); default OpenAI CLIP's BPE, 77 positions.
        fix: what to change when a text is too long, for the error.
    """
    return (tokenizer or openai_tokenizer())(texts, fix)


def count_tokens(text: str, tokenizer: Tokenizer | None = None) -> int:
    """Number of tokens of `text`, without the start/end-of-text tokens (default: CLIP's BPE)."""
    return (tokenizer or openai_tokenizer()).count(text)


def default_clip_cache() -> Path:
    """Where backbones downloaded by name are kept: $CLIP_CACHE, else ~/.cache/clip."""
    return Path(os.environ.get("CLIP_CACHE", Path.home() / ".cache" / "clip")).expanduser()


def resolve_clip_file(
    backbone_name: str, path: str = "", download_root: Path | None = None
) -> Path:
    """The local file holding a backbone's weights, downloading it by name when needed.

    Args:
        backbone_name: an OpenAI CLIP name ("RN50", "ViT-B/16", ...); ignored when `path` is given.
        path: a local JIT archive or state dict (MODEL.BACKBONE.PATH), for offline machines.
        download_root: the download cache; default :func:`default_clip_cache`.
    """
    if path:
        file = Path(path).expanduser()
        if file.is_dir():
            raise ValueError(
                f"MODEL.BACKBONE.PATH points to {file}, which is a folder; give the path of an "
                f"OpenAI CLIP checkpoint file (e.g. {file / 'RN50.pt'})."
            )
        if not file.is_file():
            raise FileNotFoundError(
                f"MODEL.BACKBONE.PATH points to {file}, which does not exist. Give the path of an "
                f"OpenAI CLIP checkpoint (the .pt JIT archive, or a state dict saved with "
                f"torch.save), or set MODEL.BACKBONE.PATH '' to load MODEL.BACKBONE.NAME by name."
            )
        return file
    if backbone_name not in openai_clip._MODELS:
        raise ValueError(
            f'MODEL.BACKBONE.NAME "{backbone_name}" is not an OpenAI CLIP model; known names: '
            f"{', '.join(openai_clip._MODELS)}. For other weights set MODEL.BACKBONE.PATH to a "
            f"local checkpoint file."
        )
    root = Path(download_root) if download_root else default_clip_cache()
    url = openai_clip._MODELS[backbone_name]
    cached = root / os.path.basename(url)
    try:
        return Path(openai_clip._download(url, str(root)))
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        state = "is damaged (its SHA256 is not OpenAI's)" if cached.exists() else "is not there"
        raise FileNotFoundError(
            f'Could not get the weights of CLIP "{backbone_name}": {cached} {state} and the '
            f"download from {url} failed ({error}). On a machine with internet, download that "
            f"file and copy it to {cached} (or set CLIP_CACHE), or pass it directly with "
            f"MODEL.BACKBONE.PATH /path/to/{os.path.basename(url)}."
        ) from error


def uncompressed(file: Path) -> Path | io.BytesIO:
    """`file`, or its decompressed bytes when it is gzip-compressed (e.g. the shipped tiny CLIP)."""
    with open(file, "rb") as handle:
        if handle.read(2) != b"\x1f\x8b":  # gzip's magic number
            return file
    with gzip.open(file, "rb") as handle:
        return io.BytesIO(handle.read())


def load_clip(backbone_name: str, path: str = "", download_root: Path | None = None) -> CLIP:
    """OpenAI CLIP on the CPU, in eval mode, with OpenAI's fp16 weights (call .float() for fp32).

    The checkpoint may be a JIT archive (the official .pt files) or a plain state dict; either way
    the architecture is inferred from the tensor shapes by OpenAI's `build_model`.
    """
    file = resolve_clip_file(backbone_name, path, download_root)
    state_dict = read_clip_weights(file)
    if isinstance(state_dict, dict) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict):
        raise ValueError(
            f"{file} holds a {type(state_dict).__name__}, not CLIP's weights. Give a CLIP .pt "
            f"archive or a state dict with OpenAI's parameter names."
        )
    try:
        return build_model(dict(state_dict))
    except (KeyError, AssertionError, RuntimeError, IndexError, TypeError, ValueError) as error:
        prompt = " (it holds a learned prompt, for --model-dir)" if "ctx" in state_dict else ""
        raise ValueError(
            f"{file} is not an OpenAI CLIP checkpoint{prompt} (build_model failed: {error!r}). "
            f"Give a CLIP .pt archive or a state dict with OpenAI's parameter names."
        ) from error


def read_clip_weights(file: Path) -> object:
    """What a CLIP checkpoint file holds: OpenAI's JIT archive, or a file written by torch.save.

    A file that is neither (damaged, cut short, another kind of file) raises a ValueError naming
    it and saying how to get a good copy.
    """
    try:
        with warnings.catch_warnings():  # torch deprecates jit.load; OpenAI ships JIT archives
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(file), map_location="cpu").eval().state_dict()
    except RuntimeError:
        pass
    try:
        return torch.load(uncompressed(file), map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling a damaged or foreign file raises about anything
        raise ValueError(
            f"{file} cannot be read as a CLIP checkpoint: it is neither a TorchScript archive "
            f"(OpenAI's .pt) nor a state dict saved with torch.save ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). It may be damaged, e.g. by an "
            f"interrupted download or copy: get the file again (delete a damaged copy in "
            f"{default_clip_cache()} to have it downloaded again)."
        ) from None


def eot_positions(tokenized_prompts: torch.Tensor) -> torch.Tensor:
    """Index of the end-of-text token of each prompt (it has the largest id): (C,)."""
    return tokenized_prompts.argmax(dim=-1)


class TextEncoder(nn.Module):
    """CLIP's text transformer applied to prompt embeddings (not token ids).

    CLIP's text attention is causal and the feature is read at the end-of-text token, which
    allows two exact shortcuts (same features, logits and gradients as all 77 positions). Built
    only for towers where that holds (`packed_unsupported_reason`); each block's own activation
    (QuickGELU, GELU, tanh-GELU) and LayerScale are applied.

    * Each prompt runs only up to its own end-of-text token: later positions cannot change it.
    * The leading positions every prompt shares (the SOS token; with CoOp's generic context before
      the class name, the whole [SOS][ctx_1..ctx_M] block) see only each other, so their hidden
      states are the same for every class: they are computed once (P positions), and each class
      runs over its own positions only, attending to the shared keys and values.

    With one prefix per image (CoCoOp's [SOS][ctx + π(image)], shape (B, P, D_t)), each image's
    prefix is computed once and each (image, class) pair runs over the class's own positions only;
    until the first attention those rows do not depend on the image, so the first layer's
    projections of them are computed once for all images.
    """

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        tower = text_tower(clip_model)
        reason = packed_unsupported_reason(clip_model)
        if reason:
            raise ValueError(f"the packed text encoder is not exact for this model: {reason}")
        self.resblocks = tower.blocks
        self.positional_embedding = tower.positional_embedding
        self.ln_final = tower.ln_final
        self.text_projection = tower.projection
        self.activations = tower.activations
        self.pool_positions = tower.pool_positions
        self.dtype = tower.dtype

    def forward(
        self,
        prompts: torch.Tensor,
        tokenized_prompts: torch.Tensor,
        shared_prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text features.

        Args:
            prompts: (C, 77, D_t) token embeddings, learned context included; with
                `shared_prefix`, (C, 77 - P, D_t): the positions after the shared ones.
            tokenized_prompts: (C, 77) token ids, used to find each end-of-text position.
            shared_prefix: (P, D_t) embeddings of the first P positions, the same for every
                class (`PromptLearner.split()`); or (B, P, D_t), one such prefix per image
                (`CoCoOpPromptLearner.split()`); None shares position 0 (the SOS token).

        Returns:
            (C, D) unnormalised text features; (B, C, D) with a prefix per image.
        """
        if shared_prefix is None:
            if not torch.equal(prompts[:, 0], prompts[:1, 0].expand(prompts.shape[0], -1)):
                raise ValueError(
                    "the prompt embeddings differ at position 0, where every CLIP prompt holds "
                    "the start-of-text token; pass the shared leading positions as shared_prefix"
                )
            shared_prefix, prompts = prompts[0, :1], prompts[:, 1:]
        eot = self.pool_positions(tokenized_prompts).to(prompts.device)
        n_shared = shared_prefix.shape[-2]
        if int(eot.min()) < n_shared:
            raise ValueError(
                f"the {n_shared} shared prompt positions include an end-of-text token; share "
                f"fewer positions"
            )
        dtype = self.dtype
        position = self.positional_embedding.type(dtype)
        prefix = shared_prefix.type(dtype) + position[:n_shared]  # ([B,] P, D_t)
        batch = prefix.shape[:-2]  # () or (B,)
        packing = pack_by_length((eot - n_shared + 1).tolist())
        groups = packing.groups
        x = torch.cat(
            [
                (
                    prompts[members, :length].type(dtype) + position[n_shared : n_shared + length]
                ).flatten(0, 1)
                for length, members in groups
            ]
        )  # (N, D_t); ([B,] N, D_t) after the first attention
        last = len(self.resblocks) - 1
        for index, block in enumerate(self.resblocks):
            attention, activation = block.attn, self.activations[index]
            scale_attention = getattr(block, "ls_1", None)  # open_clip's LayerScale (or Identity)
            scale_mlp = getattr(block, "ls_2", None)
            q_prefix, k_prefix, v_prefix = split_heads(
                F.linear(block.ln_1(prefix), attention.in_proj_weight, attention.in_proj_bias),
                attention.num_heads,
            )  # 3 x (H, [B,] P, d)
            qkv = F.linear(block.ln_1(x), attention.in_proj_weight, attention.in_proj_bias)
            if qkv.dim() < prefix.dim():  # per-image prefixes, first layer: the same for all
                qkv = qkv.expand(*batch, -1, -1)
            attended = []
            # split, not slicing: its backward concatenates instead of zero-filling per group
            for (length, members), group_qkv in zip(
                groups, qkv.split(packing.sizes, dim=-2), strict=True
            ):
                q, k, v = split_heads(
                    group_qkv.view(*batch, len(members), length, -1), attention.num_heads
                )  # 3 x (H, [B,] C_g, S_g, d)
                if index == last:  # only the end-of-text rows feed the features
                    q = q[..., -1:, :]
                attended.append(attend_after_prefix(q, k, v, k_prefix, v_prefix))
            if index == last:
                x = x[..., packing.ends, :]  # ([B,] C, D_t), in group order
            x = x + scaled(scale_attention, attention.out_proj(torch.cat(attended, dim=-2)))
            x = x + scaled(scale_mlp, mlp_forward(block.mlp, block.ln_2(x), activation))
            if index < last:
                out_prefix = F.scaled_dot_product_attention(
                    q_prefix, k_prefix, v_prefix, is_causal=True
                )
                prefix = prefix + scaled(
                    scale_attention, attention.out_proj(merge_heads(out_prefix))
                )
                prefix = prefix + scaled(
                    scale_mlp, mlp_forward(block.mlp, block.ln_2(prefix), activation)
                )
        x = x[..., torch.argsort(torch.tensor(packing.order, device=x.device)), :]  # class order
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(self.ln_final(x).type(dtype))
        return self.ln_final(x).type(dtype) @ self.text_projection


class ReferenceTextEncoder(nn.Module):
    """CLIP's plain text computation over every position: the oracle `TextEncoder` is tested on.

    As CLIP's `encode_text` (and CoOp's TextEncoder), from embeddings: prompts + positional
    embedding -> CLIP's own transformer, causal mask included -> ln_final -> the end-of-text row
    @ text_projection. Same arguments and results as `TextEncoder`, without its shortcuts, so
    either serves CustomCLIP (MODEL.TEXT_ENCODER reference selects this one for a run).
    """

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.tower = tower = text_tower(clip_model)
        self.transformer = tower.transformer
        self.positional_embedding = tower.positional_embedding
        self.ln_final = tower.ln_final
        self.text_projection = tower.projection

    def forward(
        self,
        prompts: torch.Tensor,
        tokenized_prompts: torch.Tensor,
        shared_prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text features; the arguments and shapes of `TextEncoder.forward`.

        Args:
            prompts: (C, L, D_t) token embeddings; with `shared_prefix`, (C, L - P, D_t).
            tokenized_prompts: (C, 77) token ids, used to find each end-of-text position.
            shared_prefix: (P, D_t) or, one per image, (B, P, D_t) leading positions, put back
                in front of every prompt; None: `prompts` are whole.

        Returns:
            (C, D) unnormalised text features; (B, C, D) with a prefix per image.
        """
        if shared_prefix is not None:
            batch = shared_prefix.shape[:-2]  # () or (B,)
            prefix = shared_prefix.unsqueeze(-3).expand(*batch, len(prompts), -1, -1)
            prompts = torch.cat([prefix, prompts.expand(*batch, -1, -1, -1)], dim=-2)
        batch = prompts.shape[:-3]
        dtype = self.tower.dtype
        x = prompts.flatten(0, -3).type(dtype)  # (N, L, D_t), N = [B *] C
        x = x + self.positional_embedding[: x.shape[1]].type(dtype)
        x = self.tower.run(x)  # the tower's own blocks and mask (OpenAI's: sequence-first)
        x = self.ln_final(x).type(dtype)
        pooled = self.tower.pool_positions(tokenized_prompts).to(x.device).repeat(batch.numel())
        features = self.tower.project(x[torch.arange(len(x), device=x.device), pooled])
        return features.view(*batch, len(tokenized_prompts), -1)


# MODEL.TEXT_ENCODER: the text encoder of the learned prompts in a run.
TEXT_ENCODERS = {"packed": TextEncoder, "reference": ReferenceTextEncoder}


def check_text_encoder(name: str) -> None:
    """Reject a MODEL.TEXT_ENCODER that is not one of TEXT_ENCODERS."""
    if name not in TEXT_ENCODERS:
        raise ValueError(
            f'MODEL.TEXT_ENCODER is "{name}"; use packed (the fast exact encoder, the default) '
            f"or reference (CLIP's plain computation over all 77 positions, slower)"
        )


def build_text_encoder(
    clip_model: nn.Module, name: str = "packed", quiet: bool = False
) -> nn.Module:
    """The text encoder called `name` in TEXT_ENCODERS, over `clip_model`'s text transformer.

    "packed" on a text tower where its shortcuts are not exact (bidirectional attention, pooling
    at the last or first token, blocks of another kind) gives the reference computation, and
    says so.
    """
    check_text_encoder(name)
    if name == "packed":
        reason = packed_unsupported_reason(clip_model)
        if reason:
            if not quiet:
                print(f"Text encoder: reference (the packed one is not exact here: {reason})")
            return ReferenceTextEncoder(clip_model)
    elif not quiet:
        print(f"Text encoder: {name} ({TEXT_ENCODERS[name].__name__})")
    return TEXT_ENCODERS[name](clip_model)


# The block layout TextEncoder reproduces: CLIP's residual attention block (OpenAI's, open_clip's).
_PACKABLE_BLOCK_PARTS = {"ln_1", "attn", "ln_2", "mlp", "ls_1", "ls_2"}


def packed_unsupported_reason(clip_model: nn.Module) -> str:
    """Why TextEncoder's packed computation would not be exact for this text tower ("" if it is).

    Exact when attention is causal (later positions cannot change earlier ones), the feature is
    read at the end-of-text token, and every block is CLIP's: pre-LayerNorm, one fused-QKV
    nn.MultiheadAttention, c_fc -> (Quick)GELU -> c_proj, optional LayerScale.
    """
    tower = text_tower(clip_model)
    if not tower.causal:
        return "its text attention is bidirectional"
    if tower.pooling not in ("argmax", "eos"):
        return f'its text feature is read at the "{tower.pooling}" token'
    for index, block in enumerate(tower.blocks):
        parts = {name for name, _ in block.named_children()}
        attention = getattr(block, "attn", None)
        if (
            parts - _PACKABLE_BLOCK_PARTS
            or not isinstance(attention, nn.MultiheadAttention)
            or attention.in_proj_weight is None
            or attention.bias_k is not None
            or set(dict(block.mlp.named_children())) != {"c_fc", "gelu", "c_proj"}
        ):
            return f"text block {index} ({type(block).__name__}) is not CLIP's block layout"
        if activation_of(block) is None:
            return f"text block {index} has the activation {type(block.mlp.gelu).__name__}"
    return ""


def scaled(layer_scale: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """A block's LayerScale (open_clip's ls_1/ls_2) applied to a residual branch, if it has one."""
    if layer_scale is None or isinstance(layer_scale, nn.Identity):
        return x
    return layer_scale(x)


def mlp_forward(mlp: nn.Module, x: torch.Tensor, activation: str) -> torch.Tensor:
    """A CLIP block's MLP c_proj(act(c_fc(x))) with its activation ("quick_gelu", "gelu",
    "gelu_tanh"), the activation computed with fewer temporaries."""
    if activation == "quick_gelu":
        return quick_gelu_mlp(mlp, x)
    hidden = F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias)
    approximate = "tanh" if activation == "gelu_tanh" else "none"
    return mlp.c_proj(F.gelu(hidden, approximate=approximate))


def quick_gelu_mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CLIP's MLP c_proj(QuickGELU(c_fc(x))), as QuickGELU(y) = y·σ(1.702y) = SiLU(1.702y) / 1.702.

    SiLU's fused kernels (and the in-place scalings) allocate fewer N x 4D_t temporaries than
    QuickGELU's three elementwise steps, forward and backward.
    """
    hidden = F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias).mul_(1.702)
    return mlp.c_proj(F.silu(hidden).div_(1.702))


class Packing(NamedTuple):
    """How `TextEncoder` packs each class's own positions into one (N, D_t) tensor.

    Classes of one length form a group; the per-token layers run on all the packed rows at once,
    the attention on each group viewed as (C_g, S_g, D_t).
    """

    groups: list[tuple[int, list[int]]]  # (S_g, the classes of that length), shortest first
    sizes: list[int]  # packed rows of each group, C_g * S_g
    ends: list[int]  # row of each class's last position, in group order
    order: list[int]  # the classes in group order


def pack_by_length(lengths: list[int]) -> Packing:
    """The packing of classes with `lengths` own positions each (up to their end-of-text token)."""
    groups = [
        (length, [c for c, own in enumerate(lengths) if own == length])
        for length in sorted(set(lengths))
    ]
    sizes = [len(members) * length for length, members in groups]
    ends, start = [], 0
    for (length, members), size in zip(groups, sizes, strict=True):
        ends.extend(start + (i + 1) * length - 1 for i in range(len(members)))
        start += size
    return Packing(groups, sizes, ends, [c for _, members in groups for c in members])


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., S, 3 D_t) in-projection output -> queries, keys, values, each (H, ..., S, d)."""
    *batch, length, width = qkv.shape
    qkv = qkv.view(*batch, length, 3, heads, width // (3 * heads))
    return qkv.permute(-3, -2, *range(len(batch)), -4, -1).unbind(0)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(H, ..., S, d) -> (..., S, H d)."""
    return x.permute(*range(1, x.dim() - 1), 0, x.dim() - 1).flatten(-2)


def attend_after_prefix(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_prefix: torch.Tensor,
    v_prefix: torch.Tensor,
) -> torch.Tensor:
    """Causal attention of each class's positions over [shared prefix; its own positions].

    Args:
        q: (H, [B,] C, Q, d) queries of the last Q of each class's S positions.
        k, v: (H, [B,] C, S, d) keys and values of each class's positions.
        k_prefix, v_prefix: (H, [B,] P, d) keys and values of the shared positions (seen by all
            classes; with the optional batch dimension B, one prefix per image).

    Returns:
        ([B,] C * Q, H d) attention outputs, before the output projection.
    """
    heads, *batch, n_cls, n_queries, head_width = q.shape
    n_shared, length = k_prefix.shape[-2], k.shape[-2]
    q = q * head_width**-0.5
    # Scores against the shared keys as one (H, C*Q, d) x (H, d, P) product: no per-class copies.
    flat_q = q.reshape(heads, *batch, n_cls * n_queries, head_width)
    scores_shared = flat_q @ k_prefix.transpose(-1, -2)  # (H, [B,] C*Q, P)
    scores_own = q @ k.transpose(-1, -2)  # (H, [B,] C, Q, S)
    # Query i (of the last Q) sits at position S - Q + i and must not see later positions.
    future = torch.ones(n_queries, length, dtype=torch.bool, device=q.device).triu(
        length - n_queries + 1
    )
    scores_own = scores_own.masked_fill(future, float("-inf"))
    scores_shared = scores_shared.view(heads, *batch, n_cls, n_queries, n_shared)
    scores = torch.cat([scores_shared, scores_own], -1)
    probs_shared, probs_own = (
        scores.float().softmax(dim=-1).type_as(v).split([n_shared, length], dim=-1)
    )
    shared_part = probs_shared.reshape(heads, *batch, n_cls * n_queries, n_shared) @ v_prefix
    out = shared_part.view(heads, *batch, n_cls, n_queries, head_width) + probs_own @ v
    return merge_heads(out).reshape(*batch, n_cls * n_queries, heads * head_width)


def template_prompts(template: str, classnames: list[str]) -> list[str]:
    """The hand-crafted prompt of each class: "a photo of a {}." -> "a photo of a dog."."""
    return [template.format(name.replace("_", " ")) for name in classnames]


TEMPLATE_FIX = (
    "shorten the class name (the dataset's class names or split file) or the template, or use "
    "a backbone with a longer context"
)


@torch.no_grad()
def zero_shot_text_features(
    clip_model: nn.Module,
    classnames: list[str],
    template: str,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """L2-normalised text features of the hand-crafted prompt for each class: (C, D).

    This is the zero-shot classifier (and ProGrad's teacher); it never changes, so it is computed
    once. Equal to the model's `encode_text`; with the packed encoder, the words before the class
    name are encoded once.
    """
    prompts = template_prompts(template, classnames)
    tokens = tokenize(prompts, tokenizer_of(clip_model), TEMPLATE_FIX).to(device)
    tower = text_tower(clip_model)
    embeddings = tower.token_embedding(tokens).type(model_dtype(clip_model))
    encoder = build_text_encoder(clip_model, "packed", quiet=True)
    if not isinstance(encoder, TextEncoder):
        features = encoder(embeddings, tokens)
        return features / features.norm(dim=-1, keepdim=True)
    # Leading tokens common to every prompt, stopping before the first end-of-text token.
    common = (tokens == tokens[:1]).all(dim=0).int().cumprod(dim=0).sum()
    shared = int(min(common, tower.pool_positions(tokens).min()))
    features = encoder(embeddings[:, shared:], tokens, embeddings[0, :shared])
    return features / features.norm(dim=-1, keepdim=True)


def check_learned_prompts(
    tokenizer: Tokenizer, names: list[str], n_ctx: int, init_words: str | None = None
) -> None:
    """Every class's learned prompt, its initial context words, fits the context length.

    Raises:
        ValueError: naming the text, its token count, the limit and what to change.
    """
    if init_words:
        tokenizer.check(
            [init_words.replace("_", " ")],
            "use fewer context words (TRAINER.COOP.CTX_INIT / TRAINER.COCOOP.CTX_INIT)",
        )
    n_init = tokenizer.count(init_words.replace("_", " ")) if init_words else 0
    fix = (
        f"the prompt holds {max(n_ctx, n_init)} context vectors and the class name: shorten the "
        f"class name (the dataset's class names or split file) or use fewer context vectors "
        f"(TRAINER.COOP.N_CTX / TRAINER.COCOOP.N_CTX, CTX_INIT)"
    )
    padding = " ".join(["X"] * max(n_ctx - n_init, 0))
    words = " ".join(part for part in (padding, (init_words or "").replace("_", " ")) if part)
    tokenizer.check([f"{words} {name}." for name in names], fix)


class PromptLearner(nn.Module):
    """CoOp's learnable context: [SOS][ctx_1..ctx_M][CLASS][.][EOS] (or class in the middle/front).

    `ctx` is the only trainable tensor: (M, D_t) shared by all classes, or (C, M, D_t) with
    class-specific context (CSC). The token embeddings around it are fixed buffers that are
    rebuilt from the class names, so a checkpoint's `token_prefix`/`token_suffix` are ignored.
    """

    def __init__(
        self,
        clip_model: CLIP,
        classnames: list[str],
        n_ctx: int,
        init_words: str | None = None,
        csc: bool = False,
        class_token_position: str = "end",
    ):
        """Build the context.

        Args:
            clip_model: CLIP whose token embedding gives the fixed tokens and the initial context.
            classnames: class names; "_" is read as a space.
            n_ctx: M, the number of context vectors.
            init_words: initialise the last tokens of the context with the embeddings of these
                words (the first M - #tokens vectors are zero, as in the official ProGrad code);
                None draws N(0, 0.02²) vectors, as CoOp.
            csc: one context per class.
            class_token_position: "end", "middle" or "front".
        """
        super().__init__()
        if class_token_position not in ("end", "middle", "front"):
            raise ValueError(
                f'TRAINER.COOP.CLASS_TOKEN_POSITION must be "end", "middle" or "front", got '
                f'"{class_token_position}"'
            )
        if n_ctx < 1:
            raise ValueError(f"TRAINER.COOP.N_CTX must be >= 1, got {n_ctx}")
        n_cls = len(classnames)
        dtype = model_dtype(clip_model)
        tower = text_tower(clip_model)
        token_embedding = tower.token_embedding
        device = token_embedding.weight.device
        ctx_dim = tower.ln_final.weight.shape[0]
        tokenizer = tokenizer_of(clip_model)
        # Positions before the context: CLIP's start-of-text token; none for SigLIP's tokenizer.
        n_prefix = 0 if tokenizer.start_token is None else 1
        names = [name.replace("_", " ") for name in classnames]
        check_learned_prompts(tokenizer, names, n_ctx, init_words)

        if init_words:
            init_words = init_words.replace("_", " ")
            n_init = count_tokens(init_words, tokenizer)
            if n_init > n_ctx:
                raise ValueError(
                    f'the initial context "{init_words}" has {n_init} tokens but '
                    f"TRAINER.COOP.N_CTX is {n_ctx}; raise N_CTX to at least {n_init}"
                )
            with torch.no_grad():
                embedding = token_embedding(tokenize([init_words], tokenizer).to(device))
            embedding = embedding.type(dtype).cpu()
            ctx_vectors = torch.zeros(n_ctx, ctx_dim, dtype=dtype)
            ctx_vectors[n_ctx - n_init :] = embedding[0, n_prefix : n_prefix + n_init]
            if csc:
                ctx_vectors = ctx_vectors.unsqueeze(0).repeat(n_cls, 1, 1)
            prompt_prefix = " ".join(["X"] * (n_ctx - n_init) + [init_words])
        else:
            shape = (n_cls, n_ctx, ctx_dim) if csc else (n_ctx, ctx_dim)
            ctx_vectors = torch.empty(*shape, dtype=dtype)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print(f'Initial context: "{prompt_prefix}" ({"class-specific" if csc else "generic"})')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx_vectors)

        tokenized = tokenize([f"{prompt_prefix} {name}." for name in names], tokenizer).to(device)
        with torch.no_grad():
            embedding = token_embedding(tokenized).type(dtype)
        # Saved by Dassl's save_model (CoOp's checkpoint format) but never loaded: they depend on
        # the class names of the run that uses them.
        self.register_buffer("token_prefix", embedding[:, :n_prefix, :])  # (C, 1, D_t) SOS
        self.register_buffer("token_suffix", embedding[:, n_prefix + n_ctx :, :])  # CLASS.EOS
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)  # (C, 77)
        self.n_cls = n_cls
        self.n_ctx = n_ctx
        self.n_prefix = n_prefix
        self.name_lens = [count_tokens(name, tokenizer) for name in names]
        self.class_token_position = class_token_position

    def split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompts as (P, D_t) leading positions shared by every class and (C, 77 - P, D_t).

        With a generic context before the class name, [SOS][ctx_1..ctx_M] is shared (P = 1 + M);
        otherwise the SOS token only (P = 1). `TextEncoder` computes the shared positions once.
        """
        if self.class_token_position == "end" and self.ctx.dim() == 2:
            return torch.cat([self.token_prefix[0], self.ctx]), self.token_suffix
        prompts = self()
        return prompts[0, : self.n_prefix], prompts[:, self.n_prefix :]

    def forward(self) -> torch.Tensor:
        """Prompt embeddings of every class: (C, 77, D_t)."""
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.class_token_position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)

        half = self.n_ctx // 2
        prompts = []
        for i, name_len in enumerate(self.name_lens):
            class_tokens, rest = suffix[i, :name_len], suffix[i, name_len:]
            if self.class_token_position == "middle":
                parts = [prefix[i], ctx[i, :half], class_tokens, ctx[i, half:], rest]
            else:  # front
                parts = [prefix[i], class_tokens, ctx[i], rest]
            prompts.append(torch.cat(parts, dim=0))
        return torch.stack(prompts)


class CustomCLIP(nn.Module):
    """Frozen CLIP + a PromptLearner, optionally with the zero-shot teacher's text features.

    One CLIP copy serves the student (learned prompt) and the teacher (hand-crafted prompt): the
    image features of a batch are computed once and shared by both sets of logits.
    """

    def __init__(
        self,
        clip_model: CLIP,
        prompt_learner: PromptLearner,
        teacher_text_features: torch.Tensor | None = None,
        text_encoder: str = "packed",
    ):
        """Wrap CLIP's encoders around the prompts.

        Args:
            clip_model: the frozen CLIP; its weights are shared, not copied.
            prompt_learner: the learned prompts.
            teacher_text_features: (C, D) L2-normalised text features of the hand-crafted prompts.
            text_encoder: "packed" (`TextEncoder`) or "reference" (`ReferenceTextEncoder`).
        """
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = FrozenImageEncoder(clip_model.visual)  # shares CLIP's weights
        self.text_encoder = build_text_encoder(clip_model, text_encoder)
        self.logit_scale = clip_model.logit_scale
        # SigLIP's logit bias; a constant shift of every logit (CLIP has none).
        self.logit_bias = logit_bias_of(clip_model)
        self.dtype = model_dtype(clip_model)
        if teacher_text_features is not None:
            self.register_buffer("teacher_text_features", teacher_text_features.type(self.dtype))
        else:
            self.teacher_text_features = None
        self._fixed_text_features: torch.Tensor | None = None

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features: (B, 3, H, W) -> (B, D). No autograd graph (frozen)."""
        features = self.image_encoder(image)
        return features / features.norm(dim=-1, keepdim=True)

    @contextlib.contextmanager
    def fixed_prompts(self) -> Iterator[None]:
        """Within: without autograd, the prompts' text features are computed once, not per batch.

        For evaluation, where the prompt does not change between batches (CoOp's code encodes
        every class's prompt again for every test batch). With autograd on, they are recomputed.
        """
        with torch.no_grad():
            self._fixed_text_features = self.text_features()
        try:
            yield
        finally:
            self._fixed_text_features = None

    def text_features(self) -> torch.Tensor:
        """L2-normalised text features of the learned prompts: (C, D)."""
        if self._fixed_text_features is not None and not torch.is_grad_enabled():
            return self._fixed_text_features
        shared, rest = self.prompt_learner.split()
        features = self.text_encoder(rest, self.prompt_learner.tokenized_prompts, shared)
        return features / features.norm(dim=-1, keepdim=True)

    def forward(
        self, image: torch.Tensor, return_teacher: bool = False, return_text_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Student logits (B, C); with `return_teacher`, also the teacher's logits (B, C).

        With `return_text_features` (KgCoOp): (logits, the learned prompts' text features (C, D),
        the teacher's text features (C, D)), both L2-normalised. Returned from forward, not read
        from attributes, so that they also come back under nn.DataParallel.
        """
        image_features = self.encode_image(image)
        logit_scale = self.logit_scale.exp()
        text_features = self.text_features()
        student = logit_scale * image_features @ text_features.t()
        if self.logit_bias is not None:
            student = student + self.logit_bias
        if return_text_features:
            if self.teacher_text_features is None:
                raise ValueError("this CustomCLIP was built without teacher text features")
            return student, text_features, self.teacher_text_features
        if not return_teacher:
            return student
        if self.teacher_text_features is None:
            raise ValueError("this CustomCLIP was built without teacher text features")
        teacher = logit_scale * image_features @ self.teacher_text_features.t()
        if self.logit_bias is not None:
            teacher = teacher + self.logit_bias
        return student, teacher.detach()
