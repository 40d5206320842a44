"""CLIP's frozen image encoder, computed faster with the same outputs (no autograd graph).

Prompt tuning never differentiates through the image encoder, so its forward pass can run as an
inference: under `torch.inference_mode`, with in-place activations, and in the memory layouts the
CPU/GPU kernels are fastest in. The weights are CLIP's own parameters, read on every call (one
CLIP copy in memory); nothing is cached between calls.

ModifiedResNet (RN50, RN101, ...):
    channels_last activations (oneDNN on the CPU and cuDNN on the GPU run NHWC convolutions
    without layout reorders), each BatchNorm folded into the convolution before it (eval-mode
    BatchNorm is an affine map per channel, so conv→BN is one convolution with rescaled weights
    and a bias; the rescaled weights are computed per call, about 1% of the FLOPs), ReLU and the
    residual sum in place.
VisionTransformer (ViT-B/16, ...):
    batch-first blocks with one QKV projection and `scaled_dot_product_attention` (instead of
    nn.MultiheadAttention's sequence-first path and its layout copies), QuickGELU and the residual
    sums in place, and in the last block only the class token's query, attention output and MLP,
    since the encoder's output is read at the class token alone.
    open_clip's VisionTransformer of the same layout (class-token pooling, no attention pooler,
    no LayerScale; GELU or QuickGELU, each block's own) takes the same path.
Any other tower (open_clip's ModifiedResNet and other ViT layouts, timm trunks such as EVA02 and
SigLIP's): the tower's own forward, under `torch.inference_mode` (exact by construction).

Shape glossary:
    B      images in a batch
    H, W   image height and width (CLIP's input resolution)
    D      joint embedding width (CLIP's embed_dim)
    N      tokens of the vision transformer (patches + class token)
    E      vision transformer width
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from clip.model import Bottleneck, ModifiedResNet, ResidualAttentionBlock, VisionTransformer
from torch import nn


class FrozenImageEncoder(nn.Module):
    """`visual(image)` of a frozen CLIP image encoder, computed without an autograd graph.

    The encoder is always evaluated as in eval mode (BatchNorm with its running statistics),
    whatever `train()` is called with: it is frozen, and CoOp keeps CLIP in eval mode throughout.
    """

    def __init__(self, visual: nn.Module):
        """Wrap a CLIP image encoder, sharing its parameters (no copy).

        Args:
            visual: `clip_model.visual`: OpenAI's `ModifiedResNet` or `VisionTransformer` (the
                fused paths), or any other image tower (its own forward).
        """
        super().__init__()
        if not isinstance(visual, nn.Module) or next(visual.parameters(), None) is None:
            raise ValueError(
                f"FrozenImageEncoder takes a CLIP image tower (clip_model.visual), got "
                f"{type(visual).__name__}"
            )
        self.visual = visual.eval()
        self.vit = isinstance(visual, VisionTransformer) or is_plain_open_clip_vit(visual)
        self.fused = self.vit or isinstance(visual, ModifiedResNet)

    def train(self, mode: bool = True) -> FrozenImageEncoder:
        """Stay in eval mode: a frozen encoder never uses batch statistics."""
        return super().train(False)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the encoder's weights (CLIP's dtype)."""
        if self.fused:
            return self.visual.conv1.weight.dtype
        return next(self.visual.parameters()).dtype

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image features, equal to `visual(image)` up to floating-point rounding.

        Args:
            image: (B, 3, H, W), cast to the encoder's weight dtype as CLIP.encode_image does.

        Returns:
            (B, D) unnormalised features: an ordinary tensor without autograd history, usable in
            the autograd graph of the text side.
        """
        with torch.inference_mode():
            image = image.type(self.dtype)
            if isinstance(self.visual, ModifiedResNet):
                features = _resnet_forward(self.visual, image)
            elif self.vit:
                features = _vit_forward(self.visual, image)
            else:
                features = self.visual(image)
        # Inference tensors cannot be saved for backward (the logits' matmul saves its inputs);
        # a clone made outside inference mode is an ordinary tensor. (B, D) costs nothing.
        return features.clone()


def _conv_bn(
    x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu: bool = True
) -> torch.Tensor:
    """relu(bn(conv(x))) in eval mode as one convolution whose weights carry the BN affine map.

    BN(y) = (y − μ) / sqrt(σ² + ε) · γ + β = s · y + (β − μ · s) with s = γ / sqrt(σ² + ε), and
    s · conv(x, W) = conv(x, s · W), so the BN pass over the activations disappears.
    """
    scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)  # (C_out,)
    weight = (conv.weight.float() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
    weight = weight.contiguous(memory_format=torch.channels_last)
    bias = (bn.bias.float() - bn.running_mean.float() * scale).to(conv.weight.dtype)
    y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return F.relu_(y) if relu else y


def _bottleneck_forward(block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
    """clip.model.Bottleneck.forward with folded BatchNorms and in-place ReLU/residual sum."""
    out = _conv_bn(x, block.conv1, block.bn1)
    out = _conv_bn(out, block.conv2, block.bn2)
    out = block.avgpool(out)
    out = _conv_bn(out, block.conv3, block.bn3, relu=False)
    if block.downsample is not None:
        # downsample = Sequential(AvgPool2d "-1", Conv2d "0", BatchNorm2d "1")
        pool, conv, bn = block.downsample
        identity = _conv_bn(pool(x), conv, bn, relu=False)
    else:
        identity = x
    return F.relu_(out.add_(identity))


def _resnet_forward(visual: ModifiedResNet, image: torch.Tensor) -> torch.Tensor:
    """ModifiedResNet.forward in channels_last with folded BatchNorms: (B, 3, H, W) -> (B, D)."""
    x = image.contiguous(memory_format=torch.channels_last)
    x = _conv_bn(x, visual.conv1, visual.bn1)
    x = _conv_bn(x, visual.conv2, visual.bn2)
    x = _conv_bn(x, visual.conv3, visual.bn3)
    x = visual.avgpool(x)
    for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        for block in layer:
            x = _bottleneck_forward(block, x)
    # The attention pool reads the (B, C, H/32, W/32) map flattened; its cost is its GEMMs.
    return visual.attnpool(x.contiguous())


def _attention(
    block: ResidualAttentionBlock, x: torch.Tensor, query_count: int | None = None
) -> torch.Tensor:
    """nn.MultiheadAttention(x, x, x) of a CLIP block, batch-first, without a mask.

    Args:
        block: the residual attention block whose `attn` weights are used.
        x: (B, N, E) normalised tokens.
        query_count: attend only from the first `query_count` tokens (all when None).

    Returns:
        (B, N or query_count, E) attention outputs after the output projection.
    """
    attn = block.attn
    batch, tokens, width = x.shape
    heads = attn.num_heads
    head_dim = width // heads
    if query_count is None:
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # (B, N, 3E)
        q, k, v = qkv.view(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        query_count = tokens
    else:
        weight_q, weight_kv = attn.in_proj_weight.split([width, 2 * width])
        bias_q, bias_kv = attn.in_proj_bias.split([width, 2 * width])
        q = F.linear(x[:, :query_count], weight_q, bias_q)
        q = q.view(batch, query_count, heads, head_dim).transpose(1, 2)
        kv = F.linear(x, weight_kv, bias_kv).view(batch, tokens, 2, heads, head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N_q, head_dim)
    out = out.transpose(1, 2).reshape(batch, query_count, width)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


_PLAIN_BLOCK_PARTS = {"ln_1", "attn", "ln_2", "mlp", "ls_1", "ls_2"}


def is_plain_open_clip_vit(visual: nn.Module) -> bool:
    """Whether `visual` is open_clip's VisionTransformer in OpenAI's layout, which `_vit_forward`
    computes exactly: class-token pooling with ln_post before it, learned positions, no
    attention pooler, CLIP blocks without LayerScale, GELU or QuickGELU."""
    from .backbone import activation_of

    if type(visual).__name__ != "VisionTransformer" or not type(visual).__module__.startswith(
        "open_clip"
    ):
        return False
    if (
        getattr(visual, "attn_pool", None) is not None
        or getattr(visual, "pool_type", None) != "tok"
        or getattr(visual, "final_ln_after_pool", True)
        or not isinstance(getattr(visual, "positional_embedding", None), nn.Parameter)
    ):
        return False
    for block in visual.transformer.resblocks:
        parts = {name for name, _ in block.named_children()}
        if parts - _PLAIN_BLOCK_PARTS or activation_of(block) not in ("quick_gelu", "gelu"):
            return False
        if not all(
            isinstance(getattr(block, ls, nn.Identity()), nn.Identity) for ls in ("ls_1", "ls_2")
        ):
            return False
        if set(dict(block.mlp.named_children())) != {"c_fc", "gelu", "c_proj"}:
            return False
    return True


def _mlp(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """CLIP's c_fc → QuickGELU → c_proj, the GELU computed in place (same ops, same rounding);
    a GELU block (open_clip's) with its GELU."""
    if isinstance(block.mlp.gelu, nn.GELU):
        return block.mlp.c_proj(F.gelu(block.mlp.c_fc(x), approximate=block.mlp.gelu.approximate))
    hidden = block.mlp.c_fc(x)
    gate = torch.sigmoid(1.702 * hidden)
    return block.mlp.c_proj(hidden.mul_(gate))


def _vit_forward(visual: VisionTransformer, image: torch.Tensor) -> torch.Tensor:
    """VisionTransformer.forward, batch-first: (B, 3, H, W) -> (B, D)."""
    x = visual.conv1(image)  # (B, E, grid, grid)
    x = x.flatten(2).transpose(1, 2)  # (B, N - 1, E)
    class_token = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([class_token, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)  # (B, N, E)
    *blocks, last = visual.transformer.resblocks
    for block in blocks:
        x = x + _attention(block, block.ln_1(x))
        x = x + _mlp(block, block.ln_2(x))
    # Only the class token is read after the last block: its keys and values need every token,
    # its query, attention output and MLP only the class token.
    cls = x[:, :1] + _attention(last, last.ln_1(x), query_count=1)  # (B, 1, E)
    cls = cls + _mlp(last, last.ln_2(cls))
    features = visual.ln_post(cls[:, 0])
    return features @ visual.proj if visual.proj is not None else features
