"""A tiny random CLIP written in OpenAI's checkpoint format, for tests and the offline demo.

OpenAI's `build_model` infers the whole architecture from tensor shapes, so a state dict of a
small `clip.model.CLIP` loads through exactly the code path of the real RN50 / ViT-B/16 files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from clip.model import CLIP, convert_weights

IMAGE_SIZE = 32  # both tiny variants take 32x32 images (set INPUT.SIZE "(32, 32)")


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
