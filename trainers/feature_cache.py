"""A disk cache of frozen CLIP image features, keyed so that a stale entry cannot be read.

Linear-probe CLIP needs the image features of a dataset's full train, val and test splits; it
extracts each split once and every later run (other shots, other seeds) reads them from here.

An entry is one split of one dataset under one setting. Its key holds everything the features
depend on:

- the backbone: the SHA-256 of the checkpoint file's content (not its name or path);
- the precision of the encoder (fp16 / fp32 / amp) and the device type it ran on;
- the dataset name and split;
- the images: every image's path, label, size and modification time (a SHA-256 over the list);
- the test-time transform, by its full description (resize, interpolation, crop, normalisation);
- FEATURE_FORMAT, raised whenever the extraction code changes what it computes.

The file name is `<root>/<dataset>/<split>-<SHA-256 of the key>.pt`, so a changed input gives
another file (a miss), never an old one; the file also stores the key and the image paths, which
are compared on reading. Files are written atomically (a temporary file, then a rename), so
an interrupted extraction leaves no entry, and concurrent runs at worst extract twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from experiments.atomic import save_torch
from experiments.run_record import file_sha256  # noqa: F401  (the backbone file's content hash)

FEATURE_FORMAT = 1


def default_feature_cache() -> Path:
    """$XDG_CACHE_HOME/prograd/clip_features, else ~/.cache/prograd/clip_features."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "prograd" / "clip_features"


def image_list_sha256(items: Sequence) -> str:
    """SHA-256 over each item's path, label, file size and modification time, in order.

    Args:
        items: objects with `impath` and `label` (Dassl's Datum).
    """
    digest = hashlib.sha256()
    for item in items:
        stat = os.stat(item.impath)
        digest.update(f"{item.impath}\t{item.label}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class FeatureKey:
    """Everything the features of one split depend on (see the module docstring)."""

    backbone_sha256: str
    precision: str
    device: str
    dataset: str
    split: str
    images_sha256: str
    image_count: int
    transform: str
    format: int = FEATURE_FORMAT

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


class SplitFeatures(NamedTuple):
    """The cached features of one split."""

    features: torch.Tensor  # (N, D), the encoder's output dtype
    labels: torch.Tensor  # (N,) int64
    impaths: list[str]  # N image paths, in the order of the rows


class FeatureCache:
    """Features of dataset splits on disk under `root`; see the module docstring for the key."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def path(self, key: FeatureKey) -> Path:
        """Where the entry of `key` lives."""
        return self.root / key.dataset / f"{key.split}-{key.digest()}.pt"

    def load(self, key: FeatureKey, items: Sequence) -> SplitFeatures | None:
        """The entry of `key` for these `items`, or None when there is none (a miss).

        A file that cannot be read, or whose stored key or image list differ from the request
        (which the name makes practically impossible), is a miss too; it is replaced on store.
        """
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, OSError, ValueError, EOFError) as error:
            print(f"Feature cache: cannot read {path} ({error}); extracting again")
            return None
        if (
            not isinstance(data, dict)
            or data.get("key") != key.as_dict()
            or data.get("impaths") != [i.impath for i in items]
        ):
            print(f"Feature cache: {path} belongs to other inputs; extracting again")
            return None
        return SplitFeatures(data["features"], data["labels"], data["impaths"])

    def store(self, key: FeatureKey, features: SplitFeatures) -> Path:
        """Write the entry of `key` atomically; returns its path."""
        path = self.path(key)
        data = {"key": key.as_dict(), **features._asdict()}
        save_torch(data, path, "an image-feature cache entry")  # experiments/atomic.py
        return path

    def get_or_extract(
        self,
        key: FeatureKey,
        items: Sequence,
        extract: Callable[[], torch.Tensor],
    ) -> SplitFeatures:
        """The cached features of `items`, or `extract()`'s (N, D) result, stored first."""
        cached = self.load(key, items)
        if cached is not None:
            print(
                f"Feature cache: {key.split} split ({len(items)} images) read from {self.path(key)}"
            )
            return cached
        print(f"Feature cache: extracting the {key.split} split ({len(items)} images)")
        features = extract()
        if features.shape[0] != len(items):
            raise ValueError(
                f"feature extraction returned {features.shape[0]} rows for {len(items)} images"
            )
        entry = SplitFeatures(
            features.cpu().contiguous(),
            torch.tensor([int(i.label) for i in items], dtype=torch.int64),
            [i.impath for i in items],
        )
        try:
            print(f"Feature cache: wrote {self.store(key, entry)}")
        except OSError as error:  # a read-only shared cache, a full disk: the run goes on
            print(
                f"Feature cache: cannot write under {self.root} ({error.strerror or error}); the "
                f"{key.split} features are kept for this run only. Set "
                f"TRAINER.LINEAR_PROBE.FEATURE_CACHE to a folder you can write to, to keep them."
            )
        return entry
