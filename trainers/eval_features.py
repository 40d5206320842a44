"""Test-time image features computed once and shared by every evaluation (TEST.SHARED_FEATURES).

A frozen image encoder gives a test image the same features in every run that uses the same
backbone file, precision, transform and device, whatever its method, seed or prompt. So the final
evaluation of a run (and every ``--eval-only`` run) reads the features of its split from the
content-keyed feature cache of trainers/feature_cache.py (the linear probe's: one cache, one key
rule), encoding the split only on a miss; a prompt's evaluation is then its text features and a
matrix product. The features are those the uncached evaluation computes, batch for batch with
its own data loader and encoder, so logits agree with it to floating-point rounding and the
accuracies are the same (tests/test_shared_features.py). Methods whose prompts depend on the image
(CoCoOp, ProGradCoCoOp) read the image features and compute their per-image text features as
before. ``TEST.SHARED_FEATURES False`` turns it off; a cache that cannot be written (read-only,
full) leaves the run with the features it computed, and a note.

The key's precision names the computation: the weights' dtype (``Precision.weights_dtype``: fp32,
fp16 or bf16); the prompt trainers evaluate without autocast, so an amp run's test features are
its fp32 weights' (``fp32``), shared with fp32 runs. The key's backbone is the weights file's
content hash, with the architecture for open_clip (``backbone.backbone_fingerprint``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .backbone import backbone_fingerprint, resolve_backbone_file
from .feature_cache import (
    FeatureCache,
    FeatureKey,
    SplitFeatures,
    default_feature_cache,
    file_sha256,
    image_list_sha256,
)

SETTING = "TEST.FEATURE_CACHE"
# Within features_in_memory(): the splits this process has read, by their key's digest.
_in_memory: dict[str, SplitFeatures] | None = None


@contextlib.contextmanager
def features_in_memory() -> Iterator[None]:
    """Within: a split's features, once read or computed, stay in memory for the next runs of
    this process (tools/evaluate_many.py: each target's features read once)."""
    global _in_memory
    previous, _in_memory = _in_memory, {}
    try:
        yield
    finally:
        _in_memory = previous


def shares_features(cfg) -> bool:
    """Whether evaluations read their image features from the cache (TEST.SHARED_FEATURES)."""
    return bool(cfg.TEST.SHARED_FEATURES)


def feature_cache(cfg) -> FeatureCache:
    """The cache under TEST.FEATURE_CACHE ("" is the linear probe's default folder)."""
    return FeatureCache(cfg.TEST.FEATURE_CACHE or default_feature_cache())


def evaluation_split(trainer, split: str | None) -> tuple[str, object]:
    """(split name, data loader) as Dassl's ``test`` chooses them: val when asked and present,
    else test."""
    split = split or trainer.cfg.TEST.SPLIT
    if split == "val" and trainer.val_loader is not None:
        return "val", trainer.val_loader
    return "test", trainer.test_loader


def backbone_key(cfg) -> str:
    """What tells the backbone's features apart: its weights file's content hash (OpenAI's: as
    the linear probe's cache), with the architecture for open_clip (trainers/backbone.py)."""
    name, path = cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH
    return backbone_fingerprint(name, file_sha256(resolve_backbone_file(name, path)))


def split_features(
    trainer,
    split: str,
    loader,
    encoder: Callable[[torch.Tensor], torch.Tensor],
    weights: str,
) -> SplitFeatures | None:
    """The features of a split's images, read from the cache or computed with ``encoder`` over
    ``loader`` (the evaluation's own batches) and stored; None when the backbone file cannot be
    named (the caller then evaluates as without the cache)."""
    cfg = trainer.cfg
    items = loader.dataset.data_source
    try:
        backbone = backbone_key(cfg)
    except (OSError, ValueError) as error:
        print(f"Feature cache: not used ({error}); the images are encoded in the evaluation")
        return None
    key = FeatureKey(
        backbone_sha256=backbone,
        precision=weights,
        device=trainer.device.type,
        dataset=cfg.DATASET.NAME,
        split=split,
        images_sha256=image_list_sha256(items),
        image_count=len(items),
        transform=repr(loader.dataset.transform),
    )

    @torch.no_grad()
    def extract() -> torch.Tensor:
        return torch.cat([encoder(batch["img"].to(trainer.device)).cpu() for batch in loader])

    cache = feature_cache(cfg)
    if _in_memory is not None and key.digest() in _in_memory:
        print(f"Feature cache: {split} split ({len(items)} images) read from {cache.path(key)}")
        return _in_memory[key.digest()]
    features = cache.get_or_extract(key, items, extract, setting=SETTING)
    if _in_memory is not None:
        _in_memory[key.digest()] = features
    return features


def evaluate_features(
    trainer,
    split: str,
    features: SplitFeatures,
    classify: Callable[[torch.Tensor], torch.Tensor],
) -> float:
    """Dassl's ``test`` on precomputed features: the same ``=> result`` block and scalars.

    ``classify`` maps a (B, D) batch of image features to (B, C) logits; the batches are the
    evaluation's (DATALOADER.TEST.BATCH_SIZE rows).
    """
    trainer.set_model_mode("eval")
    trainer.evaluator.reset()
    print(f"Evaluate on the *{split}* set")
    rows_per_batch = trainer.cfg.DATALOADER.TEST.BATCH_SIZE
    with torch.no_grad():
        for rows in torch.arange(len(features.labels)).split(rows_per_batch):
            image_features = features.features[rows].to(trainer.device)
            labels = features.labels[rows].to(trainer.device)
            trainer.evaluator.process(classify(image_features), labels)
    results = trainer.evaluator.evaluate()
    for name, value in results.items():
        trainer.write_scalar(f"{split}/{name}", value, trainer.epoch)
    return list(results.values())[0]


@contextlib.contextmanager
def features_as_images(model: nn.Module) -> Iterator[None]:
    """Within: ``model(features)`` takes image features where it took images (its frozen
    ``image_encoder`` is the identity), so the model's own forward turns them into logits."""
    encoder = model.image_encoder
    model.image_encoder = nn.Identity()
    try:
        yield
    finally:
        model.image_encoder = encoder


def evaluate_with_shared_features(
    trainer,
    split: str | None,
    encoder: Callable[[torch.Tensor], torch.Tensor],
    weights: str,
    classify: Callable[[torch.Tensor], torch.Tensor],
    uncached: Callable[[str | None], float],
) -> float:
    """A trainer's ``test`` through the shared features; ``uncached(split)`` when they are off
    or cannot be had."""
    if not shares_features(trainer.cfg):
        return uncached(split)
    name, loader = evaluation_split(trainer, split)
    features = split_features(trainer, name, loader, encoder, weights)
    if features is None:
        return uncached(split)
    return evaluate_features(trainer, name, features, classify)
