"""CoCoOp's prompt (Zhou et al., CVPR 2022): CoOp's context, shifted for each image by a meta-net.

Explicit arguments, no cfg. Shapes as in `clip_prompt` (B images, C classes, M context tokens,
D_t text width, D joint embedding width), plus:
    D_v    image feature width the meta-net reads (CLIP's visual.output_dim, = D)

The prompt of class c for image x is [SOS][ctx_1 + π(x) .. ctx_M + π(x)][CLASS_c][.][EOS], with
π the meta-net. Its first 1 + M positions are the same for every class of one image, so
`TextEncoder` computes them once per image and each (image, class) only over the class's own
positions (CoCoOp's code runs all 77 positions for every image x class prompt).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import nn

from .backbone import embed_dim, model_dtype, text_tower
from .clip_prompt import CustomCLIP, PromptLearner

# The meta-net's hidden width is vis_dim // 16, as in CoCoOp.
META_NET_REDUCTION = 16
# Without autograd (evaluation), the images of a batch go through the text encoder in chunks of
# at most this many (image, class) rows per pass: a 100-image test batch of ImageNet's 1000
# classes is 100 x 1000 prompts, too many to hold at once.
TEXT_ROWS_PER_PASS = 32768


def build_meta_net(vis_dim: int, ctx_dim: int) -> nn.Sequential:
    """CoCoOp's meta-net π: Linear(D_v, D_v // 16) -> ReLU -> Linear(D_v // 16, D_t).

    The module names (linear1, relu, linear2) are CoCoOp's, so checkpoints load both ways.
    """
    hidden = vis_dim // META_NET_REDUCTION
    if hidden < 1:
        raise ValueError(
            f"the image features have {vis_dim} dimensions; CoCoOp's meta-net needs at least "
            f"{META_NET_REDUCTION} (its hidden layer has {vis_dim} // {META_NET_REDUCTION} units)"
        )
    return nn.Sequential(
        OrderedDict(
            [
                ("linear1", nn.Linear(vis_dim, hidden)),
                ("relu", nn.ReLU(inplace=True)),
                ("linear2", nn.Linear(hidden, ctx_dim)),
            ]
        )
    )


class CoCoOpPromptLearner(PromptLearner):
    """CoOp's generic context (class name at the end) plus CoCoOp's meta-net.

    Trainable: `ctx` (M, D_t) and `meta_net` (its two linear layers). The state dict has CoCoOp's
    keys: ctx, meta_net.linear{1,2}.{weight,bias}, token_prefix, token_suffix. Unlike
    `PromptLearner`, the prompts depend on the image: `split` and `forward` take its features.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: list[str],
        n_ctx: int,
        init_words: str | None = None,
    ):
        """Build the context and the meta-net.

        Args:
            clip_model: CLIP whose token embedding gives the fixed tokens and the initial context,
                and whose dtype the meta-net takes (fp16 under PREC fp16, as CoCoOp).
            classnames: class names; "_" is read as a space.
            n_ctx: M, the number of context vectors.
            init_words: initialise the context with the embeddings of these words (then M must
                be their number of tokens); None draws N(0, 0.02²) vectors.
        """
        super().__init__(clip_model, classnames, n_ctx, init_words)
        tower = text_tower(clip_model)
        ctx_dim = tower.ln_final.weight.shape[0]
        # Drawn after the context, as in CoCoOp (same RNG order).
        dtype = model_dtype(clip_model)
        self.meta_net = build_meta_net(embed_dim(clip_model), ctx_dim).to(dtype)
        shared = self.n_prefix + n_ctx
        # (image, class) rows the text encoder computes per image: each class's own positions.
        self.rows_per_image = int((tower.pool_positions(self.tokenized_prompts) - shared + 1).sum())

    def context(self, image_features: torch.Tensor) -> torch.Tensor:
        """ctx + π(image): (B, D_v) image features -> (B, M, D_t)."""
        shift = self.meta_net(image_features)  # (B, D_t)
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)

    def split(self, image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image, the positions its prompts share, [SOS][ctx + π(image)]: (B, 1 + M, D_t);
        and the class positions, the same for every image: (C, 77 - 1 - M, D_t)."""
        context = self.context(image_features)
        sos = self.token_prefix[0].expand(context.shape[0], -1, -1)  # (B, 1, D_t)
        return torch.cat([sos, context], dim=1), self.token_suffix

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Every prompt in full, as CoCoOp builds them: (B, C, 77, D_t)."""
        prefix, suffix = self.split(image_features)
        n_images = prefix.shape[0]
        return torch.cat(
            [
                prefix.unsqueeze(1).expand(-1, self.n_cls, -1, -1),
                suffix.unsqueeze(0).expand(n_images, -1, -1, -1),
            ],
            dim=2,
        )


class CoCoOpCLIP(CustomCLIP):
    """Frozen CLIP + a CoCoOpPromptLearner (+ the zero-shot teacher's text features, optional).

    Each image gets its own prompts, so its own text features: (B, C, D) per batch.
    """

    prompt_learner: CoCoOpPromptLearner

    def __init__(
        self,
        clip_model: nn.Module,
        prompt_learner: CoCoOpPromptLearner,
        teacher_text_features: torch.Tensor | None = None,
        text_encoder: str = "packed",
    ):
        """As `CustomCLIP`; the text encoder gets one prefix per image."""
        super().__init__(clip_model, prompt_learner, teacher_text_features, text_encoder)

    @contextlib.contextmanager
    def fixed_prompts(self) -> Iterator[None]:
        """Nothing to compute once: the prompts depend on each image."""
        yield

    def text_features(self, image_features: torch.Tensor) -> torch.Tensor:
        """L2-normalised text features of each image's prompts: (B, D_v) -> (B, C, D).

        Without autograd the images go in chunks (TEXT_ROWS_PER_PASS), so evaluation of many
        classes holds a bounded number of rows; with autograd every row is kept for the backward
        pass anyway, so the batch goes in one pass.
        """
        chunk = len(image_features)
        if not torch.is_grad_enabled():
            chunk = max(1, TEXT_ROWS_PER_PASS // self.prompt_learner.rows_per_image)
        tokenized = self.prompt_learner.tokenized_prompts
        features = []
        for images in image_features.split(chunk):
            prefix, rest = self.prompt_learner.split(images)
            features.append(self.text_encoder(rest, tokenized, prefix))
        features = torch.cat(features)
        return features / features.norm(dim=-1, keepdim=True)

    def forward(
        self, image: torch.Tensor, return_teacher: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Student logits (B, C); with `return_teacher`, also the teacher's logits (B, C)."""
        image_features = self.encode_image(image)
        logit_scale = self.logit_scale.exp()
        text_features = self.text_features(image_features)  # (B, C, D)
        student = logit_scale * (text_features @ image_features.unsqueeze(-1)).squeeze(-1)
        if self.logit_bias is not None:
            student = student + self.logit_bias
        if not return_teacher:
            return student
        if self.teacher_text_features is None:
            raise ValueError("this CoCoOpCLIP was built without teacher text features")
        teacher = logit_scale * image_features @ self.teacher_text_features.t()
        if self.logit_bias is not None:
            teacher = teacher + self.logit_bias
        return student, teacher.detach()
