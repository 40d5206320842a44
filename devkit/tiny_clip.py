"""A tiny random CLIP written in OpenAI's checkpoint format, for tests and the offline demo.

OpenAI's `build_model` infers the whole architecture from tensor shapes, so a state dict of a
small `clip.model.CLIP` loads through exactly the code path of the real RN50 / ViT-B/16 files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from clip.model import CLIP, convert_weights

IMAGE_SIZE = 32  # both tiny variants take 32x32 images (set INPUT.SIZE "(32, 32)")
# Class names of 1 to 7 BPE tokens, so the classes stop at different end-of-text positions.
CLASSNAMES = [
    "face",
    "leopard",
    "motor_bike",
    "water lilly",
    "great crested grebe bird",
    "a",
    "dalmatian spotted coach dog breed",
]


def build_tiny_clip(
    arch: str = "RN", seed: int = 0, text_heads: int = 1, text_layers: int = 2
) -> CLIP:
    """A small CLIP ("RN": modified ResNet, "ViT": vision transformer) with random weights."""
    torch.manual_seed(seed)
    if arch == "RN":
        vision = {"vision_layers": (1, 1, 1, 1), "vision_width": 8, "vision_patch_size": None}
    elif arch == "ViT":
        vision = {"vision_layers": 2, "vision_width": 64, "vision_patch_size": 16}
    else:
        raise ValueError(f'arch must be "RN" or "ViT", got "{arch}"')
    model = CLIP(
        embed_dim=32,
        image_resolution=IMAGE_SIZE,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=text_heads,
        transformer_layers=text_layers,
        **vision,
    )
    convert_weights(model)  # OpenAI's checkpoints hold fp16 weights
    return model.eval()


def write_tiny_clip(path: Path, arch: str = "RN", seed: int = 0) -> Path:
    """Save a tiny CLIP's state dict (OpenAI's parameter names) to `path` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_tiny_clip(arch, seed).state_dict(), path)
    return path


# The widths of OpenAI's released backbones, as `clip.model.build_model` reads them from the
# checkpoints (heads follow from the widths: width // 64), for shape tests at real widths.
REAL_WIDTHS: dict[str, dict] = {
    "RN50": {"embed_dim": 1024, "image_resolution": 224, "vision_width": 64, "text_width": 512},
    "RN101": {"embed_dim": 512, "image_resolution": 224, "vision_width": 64, "text_width": 512},
    "RN50x4": {"embed_dim": 640, "image_resolution": 288, "vision_width": 80, "text_width": 640},
    "ViT-B/32": {"embed_dim": 512, "image_resolution": 224, "vision_width": 768, "patch": 32,
                 "text_width": 512},
    "ViT-B/16": {"embed_dim": 512, "image_resolution": 224, "vision_width": 768, "patch": 16,
                 "text_width": 512},
    "ViT-L/14": {"embed_dim": 768, "image_resolution": 224, "vision_width": 1024, "patch": 14,
                 "text_width": 768},
}  # fmt: skip


def build_clip_with_real_widths(backbone: str, layers: int = 1, seed: int = 0) -> CLIP:
    """An fp32 CLIP with `backbone`'s real widths, heads and resolution but `layers` deep
    (per ResNet stage / per transformer), random weights."""
    widths = REAL_WIDTHS[backbone]
    torch.manual_seed(seed)
    patch = widths.get("patch")
    return CLIP(
        embed_dim=widths["embed_dim"],
        image_resolution=widths["image_resolution"],
        vision_layers=layers if patch else (layers,) * 4,
        vision_width=widths["vision_width"],
        vision_patch_size=patch,
        context_length=77,
        vocab_size=49408,
        transformer_width=widths["text_width"],
        transformer_heads=widths["text_width"] // 64,
        transformer_layers=layers,
    ).eval()


def build_maple_width_clip(layers: int = 3, seed: int = 0) -> CLIP:
    """A ViT CLIP with ViT-B/16's tower widths (text 512, vision 768, heads width // 64) but 32x32
    images and `layers` layers, OpenAI's fp16 weights. The official MaPLe code hard-codes those
    widths in its prompt learner, so parity runs (devkit/maple_parity.py) need them."""
    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=64,
        image_resolution=IMAGE_SIZE,
        vision_layers=layers,
        vision_width=768,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=layers,
    )
    convert_weights(model)
    return model.eval()
