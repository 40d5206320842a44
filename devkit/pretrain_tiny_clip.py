"""Pretrain the tiny CLIP of the TinyWorld demo: OpenAI's CLIP architecture, trained from scratch.

Usage (from anywhere):
    python tools/pretrain_tiny_clip.py [--output assets/tiny_clip_tinyworld.pt.gz]
                                       [--steps 1200] [--seed 0]

The model is OpenAI's own ``clip.model.CLIP`` (ViT: 32x32 images, 8x8 patches, 4 layers of
width 128; text: 2 layers of width 128, 2 heads; joint embedding 128; 7.6 M parameters). It is
trained with CLIP's symmetric contrastive loss on image-caption pairs of the TinyWorld
*pretraining* domain (``datasets/tinyworld_world.py``), drawn afresh at every step, for a fixed
number of steps from a fixed seed (never a time budget: a run on a busy machine must learn as
much as one on an idle machine). A caption may describe several images of a batch (the same
coloured shape); all of them count as its matches.

The checkpoint is a state dict in OpenAI's format (parameter names and fp16 values, which
``clip.model.build_model`` rebuilds), with the token-embedding rows of words TinyWorld never
uses set to zero (they were never trained) and gzip-compressed: about 2 MiB instead of 14.5.
``trainers.clip_prompt.load_clip`` reads it through ``MODEL.BACKBONE.PATH`` like OpenAI's files.

At the end the script loads the file it wrote, as the trainers do, and prints its zero-shot
accuracy ("a photo of a {colour} {shape}.", 64 classes) on held-out images of both domains.
"""

from __future__ import annotations

import argparse
import gzip
import io
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

REPO_ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # clip's own import
os.environ.setdefault("OUTDATED_IGNORE", "1")  # datasets/ imports Dassl, which imports wilds

from clip.model import CLIP  # noqa: E402

from datasets import tinyworld_world as world  # noqa: E402
from experiments.atomic import write_bytes  # noqa: E402
from experiments.cli import any_int, non_negative_int, positive_float, positive_int  # noqa: E402
from trainers.clip_prompt import (  # noqa: E402
    TextEncoder,
    load_clip,
    tokenize,
    zero_shot_text_features,
)
from trainers.inputs import check_writable_folder  # noqa: E402

SHIPPED = REPO_ROOT / "assets" / "tiny_clip_tinyworld.pt.gz"
# CLIP's image normalisation (the tiny configs' INPUT.PIXEL_MEAN / PIXEL_STD).
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
ARCHITECTURE = {
    "embed_dim": 128,
    "image_resolution": world.IMAGE_SIZE,
    "vision_layers": 4,
    "vision_width": 128,
    "vision_patch_size": 8,
    "context_length": 77,
    "vocab_size": 49408,
    "transformer_width": 128,
    "transformer_heads": 2,  # = width // 64, what build_model infers when it rebuilds the model
    "transformer_layers": 2,
}
EVAL_SEED = 7  # held-out images for the final zero-shot figures
EVAL_IMAGES_PER_CLASS = 16


def normalise(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> CLIP's normalised input."""
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def encode_texts(model: CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """Unnormalised text features (N, D) of token ids (N, 77), with autograd.

    The project's TextEncoder: each caption runs only up to its end-of-text token (exactly CLIP's
    `encode_text`), which makes the text side about three times cheaper here.
    """
    embeddings = model.token_embedding(tokens)
    return TextEncoder(model)(embeddings[:, 1:], tokens, embeddings[0, :1])


def match_targets(objects: world.Objects, names_size: torch.Tensor) -> torch.Tensor:
    """Which caption describes which image: (N images, N captions) float, the diagonal set.

    A caption matches every image of its colour and shape, and of its size when it names one.
    """
    same = (objects.colour[:, None] == objects.colour[None, :]) & (
        objects.shape[:, None] == objects.shape[None, :]
    )
    size_ok = (objects.size[:, None] == objects.size[None, :]) | ~names_size[None, :]
    return (same & size_ok).float()


def contrastive_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy, with every matching pair as a target.

    Args:
        logits: (N images, N captions) scaled cosine similarities.
        targets: (N, N) 1 where caption j describes image i.
    """
    image_to_text = targets / targets.sum(dim=1, keepdim=True)
    text_to_image = (targets / targets.sum(dim=0, keepdim=True)).t()
    return (F.cross_entropy(logits, image_to_text) + F.cross_entropy(logits.t(), text_to_image)) / 2


def learning_rate(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def build_optimizer(model: CLIP, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; as in CLIP, no weight decay on gains, biases, embeddings and the logit scale."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        matrix = param.ndim >= 2 and "embedding" not in name
        (decay if matrix else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def pretrain(
    steps: int, seed: int, batch_size: int = 256, lr: float = 1e-3, log_every: int = 50
) -> CLIP:
    """Train a tiny CLIP from scratch on TinyWorld's pretraining domain (fp32 weights)."""
    torch.manual_seed(seed)
    model = CLIP(**ARCHITECTURE)
    model.train()
    optimizer = build_optimizer(model, lr, weight_decay=0.1)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(batch_size)
    start = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr)
        objects = world.random_objects(batch_size, generator)
        images = normalise(world.render(objects, "pretrain", generator))
        texts, names_size = world.captions(objects, generator)
        tokens = tokenize(texts)
        # The math attention kernel: torch's CPU flash-attention backward is several times slower
        # on this many short sequences (17 image tokens).
        with torch.autocast("cpu", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.MATH):
            image_features = model.encode_image(images)
            text_features = encode_texts(model, tokens)
        image_features = F.normalize(image_features.float(), dim=-1)
        text_features = F.normalize(text_features.float(), dim=-1)
        logits = model.logit_scale.exp() * image_features @ text_features.t()
        loss = contrastive_loss(logits, match_targets(objects, names_size))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the temperature
        if (step + 1) % log_every == 0 or step + 1 == steps:
            accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
            elapsed = time.perf_counter() - start
            print(
                f"step {step + 1}/{steps}  loss {loss.item():.3f}  batch image->caption top-1 "
                f"{accuracy:.1%}  logit scale {model.logit_scale.exp().item():.1f}  "
                f"{elapsed / (step + 1):.2f} s/step",
                flush=True,
            )
    return model.eval()


def used_token_ids() -> torch.Tensor:
    """Token ids that TinyWorld's captions, class names and prompts use (SOS/EOT included)."""
    return torch.unique(tokenize(world.vocabulary_texts()))


def compact_state_dict(model: CLIP) -> dict[str, torch.Tensor]:
    """OpenAI-format state dict, fp16, with the rows of tokens TinyWorld never uses zeroed."""
    state = {name: tensor.detach().half().clone() for name, tensor in model.state_dict().items()}
    keep = torch.zeros(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    keep[used_token_ids()] = True
    state["token_embedding.weight"][~keep] = 0
    return state


def save_checkpoint(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write `state` gzip-compressed to `path`, atomically (experiments/atomic.py)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    # mtime=0: the same weights give the same bytes.
    packed = gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0)
    write_bytes(path, packed, "the pretrained tiny CLIP")


@torch.no_grad()
def zero_shot_accuracy(
    clip_model: CLIP, images: torch.Tensor, labels: torch.Tensor, classnames: list[str]
) -> float:
    """Top-1 accuracy (%) of CLIP's zero-shot classifier with TinyWorld's prompt.

    Args:
        clip_model: any dtype; run on the CPU in fp32.
        images: (N, 3, 32, 32) in [0, 1].
        labels: (N,) indices into `classnames`.
        classnames: the candidate classes.
    """
    clip_model = clip_model.float().eval()
    text_features = zero_shot_text_features(clip_model, classnames, world.TEMPLATE)
    image_features = F.normalize(clip_model.encode_image(normalise(images)), dim=-1)
    predictions = (image_features @ text_features.t()).argmax(dim=1)
    return 100.0 * (predictions == labels).float().mean().item()


def held_out_images(domain: str, per_class: int = EVAL_IMAGES_PER_CLASS):
    """(images, labels) of every class, drawn with a seed no training run uses."""
    images = [world.class_images(c, per_class, domain, EVAL_SEED) for c in range(64)]
    labels = torch.arange(len(world.CLASSNAMES)).repeat_interleave(per_class)
    return torch.cat(images), labels


def report(path: Path) -> dict[str, float]:
    """Zero-shot accuracy (%) of the checkpoint at `path`, per domain, printed."""
    clip_model = load_clip("", str(path))
    results = {}
    for domain in world.DOMAINS:
        images, labels = held_out_images(domain)
        results[domain] = zero_shot_accuracy(clip_model, images, labels, world.CLASSNAMES)
        print(
            f"zero-shot accuracy, {domain} domain, 64 classes (chance 1.6%): {results[domain]:.1f}%"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"checkpoint to write (default: {SHIPPED.relative_to(REPO_ROOT)} in the repository "
        "when it does not exist yet)",
    )
    parser.add_argument("--steps", type=positive_int, default=1200, help="training steps (1200)")
    parser.add_argument("--seed", type=any_int, default=0, help="seed of weights and data (0)")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="pairs per step (256)")
    parser.add_argument(
        "--lr", type=positive_float, default=1e-3, help="peak AdamW learning rate (1e-3)"
    )
    parser.add_argument(
        "--threads",
        type=non_negative_int,
        default=0,
        help="CPU threads (default: torch's choice; 1 is faster on a machine shared with "
        "other jobs)",
    )
    parser.add_argument(
        "--evaluate",
        type=Path,
        metavar="CHECKPOINT",
        help="only print the zero-shot accuracy of an existing checkpoint",
    )
    args = parser.parse_args(argv)

    if args.evaluate:
        try:
            report(args.evaluate)
        except (ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    output = (args.output or SHIPPED).expanduser().absolute()
    if output.exists():
        print(
            f"error: {output} exists and is kept; pass --output with a new path (then point "
            f"MODEL.BACKBONE.PATH at it) or move the file away first.",
            file=sys.stderr,
        )
        return 1
    try:  # before the training, not after it
        check_writable_folder(str(output.parent), "--output's folder", "write the checkpoint to")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(
        f"Pretraining a tiny CLIP on TinyWorld: {args.steps} steps of {args.batch_size} pairs, "
        f"seed {args.seed}, {torch.get_num_threads()} CPU threads",
        flush=True,
    )
    model = pretrain(args.steps, args.seed, args.batch_size, args.lr)
    save_checkpoint(compact_state_dict(model), output)
    print(f"wrote {output} ({output.stat().st_size / 2**20:.2f} MiB)")
    report(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
