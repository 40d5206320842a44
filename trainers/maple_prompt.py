"""MaPLe's prompts (Khattak et al., CVPR 2023): learned prompts in both of CLIP's towers, at the
first J layers, the vision prompts produced from the text prompts by coupling layers.

Explicit arguments, no cfg. Shapes:
    B      images in a batch
    C      classes (n_cls)
    M      prompt tokens per layer (n_ctx)
    J      prompt depth: layers 0 .. J-1 of each tower get prompts
    D_t    text transformer width (ctx_dim)
    D_v    vision transformer width
    D      joint embedding width
    N      vision tokens: patches + class token

The text prompt of class c is [SOS][ctx_1..ctx_M][rest of the init words][CLASS_c][.][EOS] (with
the official "a photo of a" and M = 2: [SOS][ctx ctx][of a][CLASS][.][EOS]); at layers 1 .. J-1
positions 1 .. M are replaced by that layer's text prompt. The image tokens are
[CLS][patches][proj(ctx)], and at layers 1 .. J-1 the last M tokens are replaced by that layer's
coupled prompt F_j(text prompt_j). Only the vision tower's input conversions are CLIP's: every
tensor of the prompt learner is trained, CLIP stays frozen.

As in the official code, the prompts inserted into the towers (the vision input prompts and the
deeper prompts of both towers) pass through fp16 (their `.half()`) in every precision; under
fp32 that rounds them to fp16's precision, so fp32 runs take the official code's steps.

Fast paths, exact: the text tower runs each class only up to its end-of-text token, and the
leading positions every class shares ([SOS], the context and the init words after it) once
(`clip_prompt.TextEncoder`'s scheme, with the deep prompts replacing shared positions); the
vision tower runs batch-first with `scaled_dot_product_attention`, and its last block only for
the class token's query. `ReferenceMaPLeCLIP`'s computation (the official one, all 77
positions, CLIP's own blocks) is the oracle of the tests.

Backbones (`maple_unsupported_reason`): OpenAI CLIP ViTs, and open_clip CLIP-architecture ViTs
through the backbone seam (trainers/backbone.py): a VisionTransformer read at the class token, CLIP
blocks with QuickGELU or GELU (each block's own activation), and a causal text transformer read at
the end-of-text token. ResNets, timm towers (EVA02, SigLIP) and other text towers are refused.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .backbone import activation_of, image_tower, model_dtype, text_tower, tokenizer_of
from .clip_prompt import (
    attend_after_prefix,
    count_tokens,
    merge_heads,
    mlp_forward,
    pack_by_length,
    packed_unsupported_reason,
    scaled,
    split_heads,
    tokenize,
)
from .frozen_image import FrozenImageEncoder, is_plain_open_clip_vit

# The official code casts every prompt it inserts into a tower with `.half()`.
INSERTED_PROMPT_DTYPE = torch.float16
# The official code initialises the context from CTX_INIT only for N_CTX <= 4 (random otherwise).
MAX_WORD_INIT_CTX = 4


def inserted(prompt: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A prompt as the official code inserts it into a tower: through fp16, then the tower's
    dtype (its torch.cat promotes the fp16 prompt to an fp32 tower's dtype)."""
    return prompt.to(INSERTED_PROMPT_DTYPE).to(dtype)


SUPPORTED_BACKBONES = (
    "MaPLe runs on OpenAI CLIP ViTs (ViT-B/16, ViT-B/32, ViT-L/14) and on open_clip "
    "CLIP-architecture ViTs (a VisionTransformer read at the class token, CLIP blocks with "
    "QuickGELU or GELU, a causal text transformer read at the end-of-text token: e.g. "
    "open_clip:ViT-B-16/laion2b_s34b_b88k, MetaCLIP, DFN, DataComp)"
)


def maple_unsupported_reason(clip_model: nn.Module) -> str:
    """Why MaPLe cannot put its prompts into this model's towers ("" if it can)."""
    tower = image_tower(clip_model)
    if tower.kind in ("openai_resnet", "open_clip_resnet"):
        return (
            f"its image encoder is a {type(tower.visual).__name__} (a ResNet), which has no token "
            f"sequence to put prompts in"
        )
    if tower.kind == "timm":
        trunk = getattr(tower.visual, "trunk", None)
        return (
            f"its image tower is timm's {type(trunk or tower.visual).__name__} (a timm trunk, as "
            f"in EVA02 and SigLIP), whose blocks MaPLe cannot put prompts into"
        )
    if tower.kind == "open_clip_vit":
        if not is_plain_open_clip_vit(tower.visual) or not isinstance(
            getattr(tower.visual, "patch_dropout", nn.Identity()), nn.Identity
        ):
            return (
                "its VisionTransformer is not CLIP's layout (class-token pooling with ln_post, "
                "no attention pooler or patch dropout, CLIP blocks without LayerScale, GELU or "
                "QuickGELU)"
            )
    elif tower.kind != "openai_vit":
        return f"its image tower {type(tower.visual).__name__} is not a CLIP ViT"
    try:
        reason = packed_unsupported_reason(clip_model)
    except ValueError as error:  # text_tower's refusal of a tower it cannot read
        return str(error)
    if reason:
        return reason
    if tokenizer_of(clip_model).start_token is None:
        return "its prompts have no start-of-text token for the context to follow"
    return ""


def check_maple_backbone(clip_model: nn.Module) -> None:
    """A ValueError naming the backbone, why MaPLe cannot run on it, and what it runs on."""
    reason = maple_unsupported_reason(clip_model)
    if reason:
        name = getattr(clip_model, "backbone_name", type(clip_model).__name__)
        head = "MaPLe needs a vision transformer backbone and" if "ResNet" in reason else "MaPLe"
        raise ValueError(
            f"{head} cannot run on {name}: {reason}. {SUPPORTED_BACKBONES}. Set "
            f"MODEL.BACKBONE.NAME to one of those."
        )


def vision_width(clip_model: nn.Module) -> int:
    """D_v of a ViT CLIP; any other backbone is refused (`check_maple_backbone`)."""
    check_maple_backbone(clip_model)
    return clip_model.visual.transformer.width


def check_depth(clip_model: nn.Module, depth: int) -> None:
    """PROMPT_DEPTH J must be >= 1 and fit in both towers."""
    text_layers = len(text_tower(clip_model).blocks)
    layers = min(text_layers, len(image_tower(clip_model).blocks))
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= layers:
        raise ValueError(
            f"TRAINER.MAPLE.PROMPT_DEPTH is {depth!r}; use an integer from 1 (prompts at the "
            f"input only) to {layers} (every layer of this backbone's towers; the official "
            f"configs use 9, and 3 for cross-dataset transfer)"
        )


class MaPLePrompts(NamedTuple):
    """The prompts of one forward pass, as the official `MultiModalPromptLearner.forward`."""

    text_context: torch.Tensor  # (M, D_t) the context at the text input
    vision_input: torch.Tensor  # (M, D_v) proj(ctx), appended to the image tokens
    deep_text: list[torch.Tensor]  # J-1 x (M, D_t), layers 1 .. J-1
    deep_vision: list[torch.Tensor]  # J-1 x (M, D_v), F_j(deep_text[j])


class MaPLePromptLearner(nn.Module):
    """MaPLe's multi-modal prompt learner (the official `MultiModalPromptLearner`).

    Trainable: `ctx` (M, D_t), `proj` (D_t -> D_v), `compound_prompts_text` (J-1 x (M, D_t)) and
    `compound_prompt_projections` (J-1 x Linear(D_t, D_v)), with the official names, dtypes and
    initialisation order, so checkpoints load both ways under the key prefix "prompt_learner.".
    The token buffers are rebuilt from the class names and not saved.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        n_ctx: int,
        init_words: str | None,
        depth: int,
    ):
        """Build the prompts.

        Args:
            clip_model: a ViT CLIP, whose token embedding gives the fixed tokens and the initial
                context, and whose dtype `ctx` and `proj` take (fp16 under PREC fp16).
            classnames: class names; "_" is read as a space.
            n_ctx: M.
            init_words: the context is the embedding of their first M tokens, and the rest of
                them stay in the prompt as fixed tokens (official); None, or M > 4: N(0, 0.02²).
            depth: J, the number of layers with prompts in each tower.
        """
        super().__init__()
        d_vision = vision_width(clip_model)
        check_depth(clip_model, depth)
        tower, tokenizer = text_tower(clip_model), tokenizer_of(clip_model)
        dtype = model_dtype(clip_model)
        device = tower.token_embedding.weight.device
        ctx_dim = tower.ln_final.weight.shape[0]
        if init_words and n_ctx <= MAX_WORD_INIT_CTX:
            init_words = " ".join(init_words.replace("_", " ").split())
            if count_tokens(init_words, tokenizer) < n_ctx:
                raise ValueError(
                    f'TRAINER.MAPLE.CTX_INIT "{init_words}" has '
                    f"{count_tokens(init_words, tokenizer)} "
                    f"tokens but TRAINER.MAPLE.N_CTX is {n_ctx}; the context is the first N_CTX "
                    f'tokens of the words: give more words (e.g. "a photo of a") or a smaller '
                    f"N_CTX"
                )
            with torch.no_grad():
                embedding = tower.token_embedding(tokenize([init_words], tokenizer).to(device))
            ctx_vectors = embedding[0, 1 : 1 + n_ctx].type(dtype).cpu()
            prompt_prefix = init_words
        else:
            if init_words:
                print(f"Note: N_CTX {n_ctx} > {MAX_WORD_INIT_CTX}: random context (official)")
            ctx_vectors = torch.empty(n_ctx, ctx_dim, dtype=dtype)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print("MaPLe design: Multi-modal Prompt Learning")
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of MaPLe context words (tokens): {n_ctx}; prompt depth {depth}")
        # Created in the official order, so a seed gives the official initial values.
        self.proj = nn.Linear(ctx_dim, d_vision).to(dtype)
        self.ctx = nn.Parameter(ctx_vectors)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.empty(n_ctx, ctx_dim)) for _ in range(depth - 1)]
        )
        for prompt in self.compound_prompts_text:
            nn.init.normal_(prompt, std=0.02)
        # One initial layer, cloned: every coupling function starts from the same weights.
        coupling = nn.Linear(ctx_dim, d_vision)
        self.compound_prompt_projections = nn.ModuleList(
            [copy.deepcopy(coupling) for _ in range(depth - 1)]
        )

        names = [name.replace("_", " ") for name in classnames]
        texts = [f"{prompt_prefix} {name}." for name in names]
        tokenized = tokenize(texts, tokenizer).to(device)
        with torch.no_grad():
            embedding = tower.token_embedding(tokenized).type(dtype)
        self.register_buffer("token_prefix", embedding[:, :1], persistent=False)  # (C, 1, D_t)
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :], persistent=False)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)  # (C, 77)
        # Where each prompt's feature is read (its end-of-text token): (C,).
        self.register_buffer("eot", tower.pool_positions(tokenized), persistent=False)
        # Leading positions every prompt shares: [SOS], the context and the init words after it,
        # up to the first token that differs between classes (and before any end-of-text token).
        same = (tokenized == tokenized[:1]).all(dim=0).int().cumprod(dim=0).sum()
        self.n_shared = int(min(max(int(same), 1 + n_ctx), self.eot.min()))
        self.n_cls = len(classnames)
        self.n_ctx = n_ctx
        self.depth = depth

    def prompts(self) -> MaPLePrompts:
        """This step's prompts of both towers."""
        deep_text = list(self.compound_prompts_text)
        deep_vision = [
            coupling(prompt)
            for coupling, prompt in zip(self.compound_prompt_projections, deep_text, strict=True)
        ]
        return MaPLePrompts(self.ctx, self.proj(self.ctx), deep_text, deep_vision)

    def split(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The text prompts as the (P, D_t) positions every class shares and (C, 77 - P, D_t)."""
        extra = self.n_shared - 1 - self.n_ctx  # init words after the context, the same for all
        shared = torch.cat([self.token_prefix[0], context, self.token_suffix[0, :extra]])
        return shared, self.token_suffix[:, extra:]

    def forward(self) -> torch.Tensor:
        """Every text prompt in full, as the official code builds them: (C, 77, D_t)."""
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


class MaPLeTextEncoder(nn.Module):
    """CLIP's text tower with MaPLe's deep prompts, packed as `clip_prompt.TextEncoder`.

    Each class runs only up to its end-of-text token, and the P shared leading positions once;
    the deep prompts replace shared positions 1 .. M, so they stay shared.
    """

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.tower = tower = text_tower(clip_model)
        self.resblocks = tower.blocks
        self.positional_embedding = tower.positional_embedding
        self.ln_final = tower.ln_final
        self.text_projection = tower.projection
        self.activations = tower.activations
        projection = tower.projection
        self.dtype = projection.dtype if isinstance(projection, nn.Parameter) else tower.dtype

    def forward(
        self,
        shared: torch.Tensor,
        rest: torch.Tensor,
        eot: torch.Tensor,
        deep_prompts: list[torch.Tensor],
    ) -> torch.Tensor:
        """Text features.

        Args:
            shared: (P, D_t) embeddings of the positions every class shares, context included.
            rest: (C, 77 - P, D_t) each class's later positions.
            eot: (C,) each class's end-of-text position (where its feature is read).
            deep_prompts: J-1 x (M, D_t), replacing positions 1 .. M at layers 1 .. J-1.

        Returns:
            (C, D) unnormalised text features.
        """
        eot = eot.to(rest.device)
        n_shared = shared.shape[0]
        dtype = self.dtype
        position = self.positional_embedding.type(dtype)
        prefix = shared.type(dtype) + position[:n_shared]  # (P, D_t)
        packing = pack_by_length((eot - n_shared + 1).tolist())
        x = torch.cat(
            [
                (
                    rest[members, :length].type(dtype) + position[n_shared : n_shared + length]
                ).flatten(0, 1)
                for length, members in packing.groups
            ]
        )  # (N, D_t) packed rows
        last = len(self.resblocks) - 1
        for index, block in enumerate(self.resblocks):
            if 1 <= index <= len(deep_prompts):
                prompt = inserted(deep_prompts[index - 1], dtype)
                prefix = torch.cat([prefix[:1], prompt, prefix[1 + prompt.shape[0] :]])
            attention, activation = block.attn, self.activations[index]
            scale_attention = getattr(block, "ls_1", None)  # open_clip's LayerScale (or Identity)
            scale_mlp = getattr(block, "ls_2", None)
            q_prefix, k_prefix, v_prefix = split_heads(
                F.linear(block.ln_1(prefix), attention.in_proj_weight, attention.in_proj_bias),
                attention.num_heads,
            )  # 3 x (H, P, d)
            qkv = F.linear(block.ln_1(x), attention.in_proj_weight, attention.in_proj_bias)
            attended = []
            for (length, members), group_qkv in zip(
                packing.groups, qkv.split(packing.sizes), strict=True
            ):
                q, k, v = split_heads(group_qkv.view(len(members), length, -1), attention.num_heads)
                if index == last:  # only the end-of-text rows feed the features
                    q = q[..., -1:, :]
                attended.append(attend_after_prefix(q, k, v, k_prefix, v_prefix))
            if index == last:
                x = x[packing.ends]  # (C, D_t), in group order
            x = x + scaled(scale_attention, attention.out_proj(torch.cat(attended)))
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
        x = x[torch.argsort(torch.tensor(packing.order, device=x.device))]  # class order
        return self.tower.project(self.ln_final(x).type(dtype))


class MaPLeImageEncoder(nn.Module):
    """CLIP's vision transformer with MaPLe's prompts, batch-first, attention by SDPA."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        vision_width(clip_model)  # refuses a ResNet, a timm tower
        self.visual = clip_model.visual
        self.activations = [activation_of(block) for block in self.visual.transformer.resblocks]
        # open_clip's transformer is batch-first; OpenAI's (and an old open_clip's) is not
        self.batch_first = getattr(self.visual.transformer, "batch_first", False)

    def forward(
        self, image: torch.Tensor, input_prompt: torch.Tensor, deep_prompts: list[torch.Tensor]
    ) -> torch.Tensor:
        """(B, 3, H, W) images, (M, D_v) input prompt, J-1 x (M, D_v) -> (B, D) features."""
        visual = self.visual
        dtype = visual.conv1.weight.dtype
        x = visual.conv1(image.type(dtype)).flatten(2).transpose(1, 2)  # (B, N - 1, D_v)
        batch = x.shape[0]
        cls = visual.class_embedding.to(dtype).expand(batch, 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(dtype)
        # Expanded before the cast, as the official code: each image's gradient is rounded.
        prompt = inserted(input_prompt.expand(batch, -1, -1), dtype)
        x = visual.ln_pre(torch.cat([x, prompt], dim=1))  # (B, N + M, D_v)
        n_ctx = input_prompt.shape[0]
        last = len(visual.transformer.resblocks) - 1
        for index, block in enumerate(visual.transformer.resblocks):
            if 1 <= index <= len(deep_prompts):
                prompt = inserted(deep_prompts[index - 1].expand(batch, -1, -1), dtype)
                x = torch.cat([x[:, :-n_ctx], prompt], dim=1)
            # The features are read at the class token: in the last block only its query,
            # attention output and MLP are needed (every token's keys and values still are).
            queries = 1 if index == last else None
            x = x[:, : queries or x.shape[1]] + self_attention(block.attn, block.ln_1(x), queries)
            x = x + mlp_forward(block.mlp, block.ln_2(x), self.activations[index])
        features = visual.ln_post(x[:, 0])
        return features @ visual.proj if visual.proj is not None else features


def self_attention(
    attention: nn.MultiheadAttention, x: torch.Tensor, queries: int | None = None
) -> torch.Tensor:
    """nn.MultiheadAttention(x, x, x) without a mask, batch-first: (B, S, E) -> (B, S, E); with
    `queries`, only the first `queries` tokens' outputs: (B, queries, E)."""
    q, k, v = split_heads(
        F.linear(x, attention.in_proj_weight, attention.in_proj_bias), attention.num_heads
    )  # 3 x (H, B, S, d)
    if queries is not None:
        q = q[..., :queries, :]
    out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))
    return attention.out_proj(merge_heads(out.transpose(0, 1)))


class MaPLeCLIP(nn.Module):
    """Frozen CLIP + a MaPLePromptLearner (+ the zero-shot teacher's text features, optional).

    The teacher (ProGradMaPLe) reads the frozen, un-prompted image features: MaPLe's prompted
    ones are trained, so it needs its own pass of the image encoder (without autograd).
    """

    def __init__(
        self,
        clip_model: nn.Module,
        prompt_learner: MaPLePromptLearner,
        teacher_text_features: torch.Tensor | None = None,
    ):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.text_encoder = MaPLeTextEncoder(clip_model)
        self.image_encoder = MaPLeImageEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = model_dtype(clip_model)
        self.frozen_image_encoder = None
        if teacher_text_features is not None:
            self.frozen_image_encoder = FrozenImageEncoder(clip_model.visual)
            self.register_buffer("teacher_text_features", teacher_text_features.type(self.dtype))
        self._fixed_text_features: torch.Tensor | None = None

    def text_features(self, prompts: MaPLePrompts) -> torch.Tensor:
        """L2-normalised text features of the learned prompts: (C, D)."""
        if self._fixed_text_features is not None and not torch.is_grad_enabled():
            return self._fixed_text_features
        learner = self.prompt_learner
        shared, rest = learner.split(prompts.text_context)
        features = self.text_encoder(shared, rest, learner.eot, prompts.deep_text)
        return features / features.norm(dim=-1, keepdim=True)

    def image_features(self, image: torch.Tensor, prompts: MaPLePrompts) -> torch.Tensor:
        """L2-normalised prompted image features: (B, 3, H, W) -> (B, D)."""
        features = self.image_encoder(image, prompts.vision_input, prompts.deep_vision)
        return features / features.norm(dim=-1, keepdim=True)

    @contextlib.contextmanager
    def fixed_prompts(self) -> Iterator[None]:
        """Within: without autograd, the text features are computed once, not per batch."""
        with torch.no_grad():
            self._fixed_text_features = self.text_features(self.prompt_learner.prompts())
        try:
            yield
        finally:
            self._fixed_text_features = None

    def teacher_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Zero-shot CLIP's logits with the hand-crafted prompt on un-prompted features: (B, C)."""
        if self.frozen_image_encoder is None:
            raise ValueError("this MaPLeCLIP was built without teacher text features")
        with torch.no_grad():
            features = self.frozen_image_encoder(image)
            features = features / features.norm(dim=-1, keepdim=True)
            return self.logit_scale.exp() * features @ self.teacher_text_features.t()

    def forward(
        self, image: torch.Tensor, return_teacher: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Student logits (B, C); with `return_teacher`, also the teacher's logits (B, C)."""
        prompts = self.prompt_learner.prompts()
        text_features = self.text_features(prompts)
        image_features = self.image_features(image, prompts)
        student = self.logit_scale.exp() * image_features @ text_features.t()
        if not return_teacher:
            return student
        return student, self.teacher_logits(image)


class ReferenceMaPLeCLIP(MaPLeCLIP):
    """The official computation: every class over all 77 positions and both towers through
    CLIP's own blocks (nn.MultiheadAttention, sequence-first). The oracle of the fast paths, and
    the "straightforward step" of benchmarks/bench_maple.py."""

    def text_features(self, prompts: MaPLePrompts) -> torch.Tensor:
        if self._fixed_text_features is not None and not torch.is_grad_enabled():
            return self._fixed_text_features
        encoder, learner = self.text_encoder, self.prompt_learner
        dtype = encoder.dtype
        n_cls = learner.n_cls
        context = prompts.text_context.unsqueeze(0).expand(n_cls, -1, -1)
        x = torch.cat([learner.token_prefix, context, learner.token_suffix], dim=1).type(dtype)
        x = x + encoder.positional_embedding.type(dtype)  # (C, 77, D_t)
        if encoder.tower.sequence_first:  # OpenAI's blocks, as the official code
            x = x.permute(1, 0, 2)  # (77, C, D_t)
        for index, block in enumerate(encoder.resblocks):
            if 1 <= index <= len(prompts.deep_text):
                prompt = prompts.deep_text[index - 1]
                if encoder.tower.sequence_first:
                    prompt = inserted(prompt.unsqueeze(1).expand(-1, n_cls, -1), dtype)
                    x = torch.cat([x[:1], prompt, x[1 + prompt.shape[0] :]])
                else:
                    prompt = inserted(prompt.unsqueeze(0).expand(n_cls, -1, -1), dtype)
                    x = torch.cat([x[:, :1], prompt, x[:, 1 + prompt.shape[1] :]], dim=1)
            x = block(x) if encoder.tower.sequence_first else encoder.tower.run_block(block, x)
        if encoder.tower.sequence_first:
            x = x.permute(1, 0, 2)
        x = encoder.ln_final(x).type(dtype)
        features = encoder.tower.project(x[torch.arange(n_cls), learner.eot])
        return features / features.norm(dim=-1, keepdim=True)

    def image_features(self, image: torch.Tensor, prompts: MaPLePrompts) -> torch.Tensor:
        visual = self.image_encoder.visual
        dtype = visual.conv1.weight.dtype
        x = visual.conv1(image.type(dtype)).flatten(2).transpose(1, 2)
        batch = x.shape[0]
        cls = visual.class_embedding.to(dtype) + torch.zeros(batch, 1, x.shape[-1], dtype=dtype)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(dtype)
        prompt = inserted(prompts.vision_input.expand(batch, -1, -1), dtype)
        x = visual.ln_pre(torch.cat([x, prompt], dim=1)).permute(1, 0, 2)  # (N + M, B, D_v)
        n_ctx = prompts.vision_input.shape[0]
        batch_first = self.image_encoder.batch_first  # open_clip's blocks take (B, N + M, D_v)
        for index, block in enumerate(visual.transformer.resblocks):
            if 1 <= index <= len(prompts.deep_vision):
                deep = prompts.deep_vision[index - 1].unsqueeze(1).expand(-1, batch, -1)
                x = torch.cat([x[:-n_ctx], inserted(deep, dtype)])
            x = block(x.transpose(0, 1)).transpose(0, 1) if batch_first else block(x)
        features = visual.ln_post(x[0])
        features = features @ visual.proj if visual.proj is not None else features
        return features / features.norm(dim=-1, keepdim=True)
