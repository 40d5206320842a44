"""What the 15 CoOp datasets share: split files, few-shot caching, base/new classes, errors.

On-disk formats are CoOp's, so split files and caches written by CoOp (or the official ProGrad
code) load here and ours load there:

- ``split_zhou_<Name>.json``: ``{"train" | "val" | "test": [[relpath, label, classname], ...]}``
  with ``relpath`` relative to the dataset's image folder.
- ``<dataset_dir>/split_fewshot/shot_{K}-seed_{S}.pkl``: a pickled dict ``{"train": [Datum],
  "val": [Datum]}`` (ImageNet: ``{"train": [Datum]}``) holding Dassl ``Datum`` objects.

Randomness comes from Python's ``random`` module (seeded by Dassl's ``set_random_seed(cfg.SEED)``
before the dataset is built), consumed in the same order as CoOp, so the same seed picks the
same images.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dassl.data.datasets import DatasetBase, Datum
from dassl.utils import listdir_nohidden
from PIL import Image
from yacs.config import CfgNode

# Re-exported: the dataset modules and tools import them from here.
from experiments.atomic import FULL_DISK, atomic_file, write_text
from experiments.declarations import Layout, SplitSizes  # noqa: F401

SUBSAMPLE_CHOICES = ("all", "base", "new")

Split = list[Datum]
# An image of a split before it becomes a Datum: (absolute image path, label, class name).
Entry = tuple[str, int, str]
# "train" / "val" / "test" -> entries; a dataset without a split has no key for it.
SplitEntries = dict[str, list[Entry]]


def read_json(path: str) -> Any:
    """Read a json file; a missing, unreadable or malformed file raises an error naming it."""
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, where a json file is expected; check the path.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"json file not found: {path}. Check the path or recreate it.")
    with open(path, "rb") as file:
        try:
            return json.loads(file.read().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{path} is not valid json ({error}). Re-download it, or delete it if it is a "
                "generated split so that it is written again."
            ) from error


def read_lines(path: str, layout: Layout, what: str) -> list[tuple[int, str]]:
    """The non-empty lines of a dataset's text file, stripped, with their 1-based numbers.

    Args:
        path: the file; a missing one raises ``layout.missing``.
        layout: the dataset's layout, for error messages.
        what: a few words saying what the file is, e.g. "class-name file".
    """
    layout.require(path, what)
    if os.path.isdir(path):
        raise layout.damaged(path, f"it is a folder, where the {what} is expected")
    with open(path, "rb") as file:
        data = file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise layout.damaged(path, f"it is not a text file ({error})") from error
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    return [(number, line) for number, line in lines if line]


def write_json(obj: Any, path: str) -> None:
    """Write ``obj`` as json in CoOp's formatting (4-space indent), creating parent folders.

    A folder that cannot be written raises a ValueError naming it.
    """
    try:
        text = json.dumps(obj, indent=4, separators=(",", ": "))
        write_text(path, text, "the split file")  # experiments/atomic.py: whole or not at all
    except OSError as error:
        if error.errno in FULL_DISK:  # named with the path and the fix already
            raise
        raise ValueError(
            f"Cannot write {path} ({error.strerror or error}): make its folder writable, or "
            f"copy the dataset to a writable place and point DATASET.ROOT there."
        ) from error


def make_datum(impath: str, label: int, classname: str, layout: Layout) -> Datum:
    """Build a Dassl ``Datum``, raising a clear error if the image does not exist.

    Dassl's ``Datum`` would otherwise stop with a bare ``AssertionError``.
    """
    if not os.path.isfile(impath):
        raise layout.missing(impath, "image")
    return Datum(impath=impath, label=label, classname=classname)


def read_split_entries(filepath: str, image_dir: str, layout: Layout) -> SplitEntries:
    """Read and check a CoOp ``split_zhou_*.json`` file, without touching the images.

    Args:
        filepath: the json file.
        image_dir: the folder its relative image paths start from.
        layout: the dataset's layout, for error messages.

    Returns:
        ``{"train" | "val" | "test": [(absolute image path, label, class name), ...]}``.
    """
    layout.require(filepath, "split file")
    split = read_json(filepath)
    if not isinstance(split, Mapping) or not all(k in split for k in ("train", "val", "test")):
        raise ValueError(
            f"{filepath} is not a CoOp split file: it needs the keys 'train', 'val' and 'test'. "
            f"Re-download it as described in {layout.doc}."
        )
    entries: SplitEntries = {}
    for key in ("train", "val", "test"):
        if not isinstance(split[key], list):
            raise layout.damaged(filepath, f"its '{key}' is not a list of entries")
        entries[key] = []
        for position, entry in enumerate(split[key]):
            valid = (
                isinstance(entry, list)
                and len(entry) == 3
                and isinstance(entry[0], str)
                and isinstance(entry[1], int)
                and not isinstance(entry[1], bool)
                and isinstance(entry[2], str)
            )
            if not valid:
                raise ValueError(
                    f"{filepath}: entry {position} of '{key}', {entry!r}, is not "
                    f"[relpath, label, classname]. Re-download the split file as described in "
                    f"{layout.doc}."
                )
            relpath, label, classname = entry
            entries[key].append((os.path.join(image_dir, relpath), label, classname))
    return entries


def to_data(entries: Sequence[Entry], layout: Layout) -> Split:
    """Dassl ``Datum`` objects for entries, each image checked to exist (``make_datum``)."""
    return [make_datum(impath, label, classname, layout) for impath, label, classname in entries]


def read_split(filepath: str, image_dir: str, layout: Layout) -> tuple[Split, Split, Split]:
    """Read a CoOp ``split_zhou_*.json`` file.

    Args:
        filepath: the json file.
        image_dir: the folder its relative image paths start from.
        layout: the dataset's layout, for error messages.

    Returns:
        ``(train, val, test)`` lists of ``Datum`` with absolute image paths.
    """
    print(f"Reading split from {filepath}")
    entries = read_split_entries(filepath, image_dir, layout)
    train, val, test = (to_data(entries[key], layout) for key in ("train", "val", "test"))
    return train, val, test


def save_split(train: Split, val: Split, test: Split, filepath: str, image_dir: str) -> None:
    """Write a CoOp ``split_zhou_*.json`` file, storing paths relative to ``image_dir``."""
    prefix = os.path.join(image_dir, "")

    def extract(items: Split) -> list[tuple[str, int, str]]:
        out = []
        for item in items:
            if not item.impath.startswith(prefix):
                raise ValueError(
                    f"Cannot save {item.impath} in {filepath}: it is not inside {image_dir}, and "
                    "split files store paths relative to that folder."
                )
            out.append((item.impath[len(prefix) :], item.label, item.classname))
        return out

    write_json({"train": extract(train), "val": extract(val), "test": extract(test)}, filepath)
    print(f"Saved split to {filepath}")


def read_and_split_data(
    image_dir: str,
    layout: Layout,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Sequence[str] = (),
    new_cnames: Mapping[str, str] | None = None,
) -> tuple[Split, Split, Split]:
    """Split an ``image_dir/<class>/<image>`` tree per class into train/val/test (CoOp's rule).

    Labels follow the sorted class folders (after dropping ``ignored``); each class's images are
    shuffled with ``random.shuffle`` and cut into ``round(n * p_trn)`` train, ``round(n * p_val)``
    val and the rest test. Images are listed in ``os.listdir`` order, as CoOp does, so that the
    same seed gives CoOp's split on the same disk.

    Args:
        image_dir: folder with one sub-folder per class.
        layout: the dataset's layout, for error messages.
        p_trn: fraction of each class used for training.
        p_val: fraction of each class used for validation.
        ignored: class folders to skip.
        new_cnames: folder name -> class name, for folders whose names are not good class names.
    """
    layout.require(image_dir, "image folder")
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")

    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, name) for name in listdir_nohidden(category_dir)]
        random.shuffle(images)
        n_train = round(len(images) * p_trn)
        n_val = round(len(images) * p_val)
        if n_train == 0 or n_val == 0 or len(images) - n_train - n_val == 0:
            raise ValueError(
                f"{layout.name}: {category_dir} has {len(images)} images, too few to give each of "
                "train, val and test at least one; check that the folder was extracted completely."
            )
        classname = new_cnames.get(category, category) if new_cnames else category
        items = [make_datum(path, label, classname, layout) for path in images]
        train.extend(items[:n_train])
        val.extend(items[n_train : n_train + n_val])
        test.extend(items[n_train + n_val :])
    return train, val, test


def split_trainval(trainval: Split, p_val: float = 0.2) -> tuple[Split, Split]:
    """Split a trainval list per class into train and val (CoOp's ``OxfordPets.split_trainval``).

    Classes are visited in order of first appearance; each class's items are shuffled with
    ``random.shuffle`` and its first ``round(n * p_val)`` go to val.
    """
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    by_label: dict[int, list[int]] = defaultdict(list)
    for index, item in enumerate(trainval):
        by_label[item.label].append(index)

    train, val = [], []
    for label, indices in by_label.items():
        n_val = round(len(indices) * p_val)
        if n_val == 0:
            raise ValueError(
                f"Class {label} has only {len(indices)} trainval images, too few to hold out "
                f"{p_val:.0%} for validation; check that the annotation files are complete."
            )
        random.shuffle(indices)
        for position, index in enumerate(indices):
            (val if position < n_val else train).append(trainval[index])
    return train, val


def fewshot_cache_path(dataset_dir: str, num_shots: int, seed: int) -> str:
    """Path of CoOp's few-shot cache: ``<dataset_dir>/split_fewshot/shot_{K}-seed_{S}.pkl``."""
    return os.path.join(dataset_dir, "split_fewshot", f"shot_{num_shots}-seed_{seed}.pkl")


def load_or_create_fewshot(
    dataset: DatasetBase,
    dataset_dir: str,
    num_shots: int,
    seed: int,
    train: Split,
    val: Split | None,
) -> tuple[Split, Split | None]:
    """Sample ``num_shots`` training images per class (and ``min(num_shots, 4)`` for val), cached.

    The first call for a (K, seed) pair samples with Dassl's ``generate_fewshot_dataset``
    (train first, then val, as CoOp) and pickles the result; later calls load the pickle, so a
    run always sees the images its seed picked first. ``num_shots < 1`` keeps all images.

    Args:
        dataset: the dataset being built; only its ``generate_fewshot_dataset`` is used.
        dataset_dir: the dataset folder; the cache goes to its ``split_fewshot/``.
        num_shots: images per class (``DATASET.NUM_SHOTS``).
        seed: ``cfg.SEED``; only names the cache file, the sampling uses ``random``'s state.
        train: full training split.
        val: full validation split, or None where the dataset has none (ImageNet).
    """
    if num_shots < 1:
        return train, val
    path = fewshot_cache_path(dataset_dir, num_shots, seed)
    if os.path.exists(path):
        print(f"Loading preprocessed few-shot data from {path}")
        data = read_cache(path, "train")
        cached_val = data.get("val")
        if val is not None and cached_val is None:
            raise ValueError(f"{path} has no 'val' split; delete it so that it is rebuilt.")
        check_cached_images_exist(path, [data["train"], cached_val or []])
        return data["train"], cached_val

    train = dataset.generate_fewshot_dataset(train, num_shots=num_shots)
    data = {"train": train}
    if val is not None:
        val = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        data["val"] = val
    print(f"Saving preprocessed few-shot data to {path}")
    write_cache(data, path)
    return train, val


def read_cache(path: str, *keys: str) -> dict:
    """Load a pickled cache written by CoOp's loaders (few-shot split, ImageNet's file list).

    Args:
        path: the ``.pkl`` file.
        keys: the keys it must hold.
    """
    try:
        with open(path, "rb") as file:
            data = pickle.load(file)
    except Exception as error:  # unpickling garbage raises about any exception type
        raise ValueError(
            f"{path} is damaged and cannot be read ({type(error).__name__}: {error}). It is a "
            f"cache that the loader writes: move it away (or delete it) and it is rebuilt."
        ) from error
    if not isinstance(data, dict) or any(key not in data for key in keys):
        raise ValueError(
            f"{path} is not one of the loader's caches (it needs the keys {', '.join(keys)}): "
            f"move it away (or delete it) and it is rebuilt."
        )
    return data


def write_cache(data: dict, path: str) -> None:
    """Pickle a cache next to the dataset (CoOp's format), written atomically.

    A dataset folder that cannot be written raises an error saying so: CoOp's loaders keep their
    caches beside the images.
    """
    try:
        with atomic_file(path, "a dataset cache", "wb") as file:  # experiments/atomic.py
            pickle.dump(data, file, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as error:
        if error.errno in FULL_DISK:  # named with the path and the fix already
            raise
        folder = os.path.dirname(path)
        while not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        raise ValueError(
            f"Cannot write the cache {path} ({error.strerror or error}). The loaders keep their "
            f"caches inside the dataset folder, as CoOp does: make {folder} writable, or copy "
            f"the dataset to a writable place and point DATASET.ROOT there."
        ) from error


def check_cached_images_exist(cache_path: str, splits: Sequence[Split]) -> None:
    """Stop if a pickled cache refers to images that are gone (caches store absolute paths)."""
    for items in splits:
        for item in items:
            if not os.path.isfile(item.impath):
                raise FileNotFoundError(
                    f"{cache_path} refers to {item.impath}, which does not exist (caches store "
                    "absolute paths, so moving the dataset makes them stale). Delete "
                    f"{cache_path} to rebuild it from the current DATASET.ROOT."
                )


def check_subsample(subsample: str) -> str:
    """Return ``subsample`` if it is one of all/base/new, else raise a ValueError naming the key."""
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES={subsample!r} is not allowed; use one of "
            f"{', '.join(SUBSAMPLE_CHOICES)} (all classes, the first half, or the second half)."
        )
    return subsample


def subsample_setting(cfg: CfgNode) -> str:
    """Read and check ``cfg.DATASET.SUBSAMPLE_CLASSES`` (added by train.py's ``extend_cfg``)."""
    if "SUBSAMPLE_CLASSES" not in cfg.DATASET:
        raise ValueError(
            "cfg.DATASET.SUBSAMPLE_CLASSES is not set; add it to the config (train.py's "
            f"extend_cfg() does) with one of {', '.join(SUBSAMPLE_CHOICES)}."
        )
    return check_subsample(cfg.DATASET.SUBSAMPLE_CLASSES)


def subsample_classes(*splits: Split, subsample: str = "all") -> list[Split]:
    """Keep the base (first half) or new (second half) classes, relabelled from 0.

    The halves come from the sorted labels of the first split: base is the first
    ``ceil(n / 2)``, new the rest. ``"all"`` returns the splits unchanged.

    Args:
        splits: e.g. train, val, test.
        subsample: "all", "base" or "new".
    """
    check_subsample(subsample)
    if subsample == "all":
        return list(splits)

    labels = sorted({item.label for item in splits[0]})
    half = math.ceil(len(labels) / 2)
    selected = labels[:half] if subsample == "base" else labels[half:]
    relabel = {label: new_label for new_label, label in enumerate(selected)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    return [
        [
            Datum(impath=item.impath, label=relabel[item.label], classname=item.classname)
            for item in items
            if item.label in relabel
        ]
        for items in splits
    ]


def read_or_create_split(
    split_path: str,
    image_dir: str,
    layout: Layout,
    create: Callable[[], tuple[Split, Split, Split]],
) -> tuple[Split, Split, Split]:
    """Read the CoOp split file if it exists; otherwise build the split and save it there.

    Args:
        split_path: the ``split_zhou_*.json`` file.
        image_dir: the folder the file's relative paths start from.
        layout: the dataset's layout, for error messages.
        create: builds ``(train, val, test)`` from the raw annotations (uses ``random``).
    """
    if os.path.exists(split_path):
        return read_split(split_path, image_dir, layout)
    train, val, test = create()
    save_split(train, val, test, split_path, image_dir)
    return train, val, test


def fewshot_and_subsample(
    dataset: DatasetBase,
    cfg: CfgNode,
    layout: Layout,
    train: Split,
    val: Split | None,
    test: Split,
) -> tuple[Split, Split | None, Split]:
    """What every trainable CoOp dataset does after reading its split, in CoOp's order.

    Samples ``DATASET.NUM_SHOTS`` per class (cached, see ``load_or_create_fewshot``), keeps the
    ``DATASET.SUBSAMPLE_CLASSES`` half, then opens one image per split (``check_images_readable``).

    Args:
        dataset: the dataset being built; ``dataset.dataset_dir`` must already be resolved.
        cfg: the config (``DATASET.NUM_SHOTS``, ``DATASET.SUBSAMPLE_CLASSES``, ``SEED``).
        layout: the dataset's layout, for error messages.
        train: full training split.
        val: full validation split, or None (ImageNet validates on its test split).
        test: test split; never few-shot sampled.
    """
    subsample = subsample_setting(cfg)
    train, val = load_or_create_fewshot(
        dataset, dataset.dataset_dir, cfg.DATASET.NUM_SHOTS, cfg.SEED, train, val
    )
    if val is None:
        train, test = subsample_classes(train, test, subsample=subsample)
    else:
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
    check_images_readable(layout, train, val, test)
    return train, val, test


def check_images_readable(layout: Layout, *splits: Split | None) -> None:
    """Open the first image of each split, so a broken layout stops here and not in a worker.

    Only one image per split is decoded, to keep building cheap on large datasets;
    ``tools/check_data.py`` opens them all.
    """
    for items in splits:
        if not items:
            continue
        path = items[0].impath
        problem = image_problem(path)
        if problem is not None:
            raise unreadable_image(layout.name, path, problem, layout.doc)


def image_problem(path: str, reduced: bool = False) -> str | None:
    """Why an image file cannot be read, or None when it decodes (as PIL reads it for training).

    Args:
        path: the image file.
        reduced: decode JPEGs at 1/8 scale (PIL's draft mode): the whole file is still read
            and checked, several times faster.
    """
    try:
        with Image.open(path) as image:
            if reduced:
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:  # what PIL raises on damaged files
        return f"{type(error).__name__}: {error}"
    return None


def unreadable_image(dataset: str, path: str, problem: str, doc: str) -> ValueError:
    """The error for an image that cannot be read, naming it and the fix.

    Args:
        dataset: the dataset's name.
        path: the image file.
        problem: what reading it raised.
        doc: the DATASETS.md section of the dataset.
    """
    return ValueError(
        f"{dataset}: cannot read image {path} ({problem}). Re-download or re-extract the dataset "
        f"as described in {doc}; python tools/check_data.py DATA {dataset} lists every image "
        f"that cannot be read."
    )
