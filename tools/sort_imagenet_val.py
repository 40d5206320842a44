"""File ImageNet's validation images, downloaded as one flat folder, into class folders.

Usage:
    python tools/sort_imagenet_val.py VAL_DIR LABELS [--dry-run]

ILSVRC-2012's validation images come as 50,000 files in one folder
(``ILSVRC2012_val_00000001.JPEG`` ...), but the loader (as CoOp's) reads
``imagenet/images/val/<wnid>/*.JPEG``. This moves each image into the folder of its class.
LABELS says which class each image is, in any of these forms:

- ``LOC_val_solution.csv`` (the Kaggle ImageNet download): ``ImageId,PredictionString`` rows
  whose prediction string starts with the wnid;
- ILSVRC-2012's development kit (``ILSVRC2012_devkit_t12.tar.gz``, or the folder it extracts
  to): ``data/ILSVRC2012_validation_ground_truth.txt`` with ``data/meta.mat`` (needs scipy);
- a text file of ``<image file> <wnid>`` lines, or of one wnid per line in image order.

Every image and label is checked before anything moves: an image without a label, a label that is
not a wnid (or not in ``imagenet/classnames.txt``, when that file is there) or an image already in
its class folder stops with an error and moves nothing. Images are moved (renamed), never copied
over or deleted; running it again after an interruption files the rest.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tarfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
WNID = re.compile(r"n\d{8}")
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
VAL_NAME = "ILSVRC2012_val_{:08d}"


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def read_kaggle_csv(text: str, path: str) -> dict[str, str]:
    """``LOC_val_solution.csv``: image stem -> the first wnid of its prediction string."""
    labels = {}
    for number, line in enumerate(text.splitlines()[1:], 2):
        if not line.strip():
            continue
        image, _, prediction = line.partition(",")
        wnid = prediction.split()[0] if prediction.split() else ""
        if not WNID.fullmatch(wnid):
            raise ValueError(f"{path}, line {number}: {line[:80]!r} does not start with a wnid")
        labels[_stem(image)] = wnid
    return labels


def read_label_lines(text: str, path: str) -> dict[str, str]:
    """``<image file> <wnid>`` lines, or one wnid per line for images 1, 2, ... in order."""
    labels = {}
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for number, fields in enumerate(lines, 1):
        if len(fields) == 1:
            image, wnid = VAL_NAME.format(number), fields[0]
        elif len(fields) == 2:
            image, wnid = fields
        else:
            raise ValueError(f"{path}, line {number}: expected '<image file> <wnid>' or '<wnid>'")
        if not WNID.fullmatch(wnid):
            raise ValueError(f"{path}, line {number}: {wnid!r} is not a wnid (n01440764, ...)")
        labels[_stem(image)] = wnid
    return labels


def read_devkit(ground_truth: bytes, meta_mat: bytes, path: str) -> dict[str, str]:
    """The development kit: ILSVRC2012 ids per image (in order) and meta.mat's id -> wnid."""
    try:
        from scipy.io import loadmat
    except ImportError as error:
        raise ValueError(
            f"reading {path} needs scipy (pip install scipy), or give LOC_val_solution.csv"
        ) from error
    synsets = loadmat(io.BytesIO(meta_mat), squeeze_me=True)["synsets"]
    wnid_of = {int(row["ILSVRC2012_ID"]): str(row["WNID"]) for row in synsets}
    labels = {}
    for number, line in enumerate(ground_truth.decode().split(), 1):
        if int(line) not in wnid_of:
            raise ValueError(f"{path}: image {number} has id {line}, which meta.mat lacks")
        labels[VAL_NAME.format(number)] = wnid_of[int(line)]
    return labels


def read_labels(path: str) -> dict[str, str]:
    """Image stem (``ILSVRC2012_val_00000001``) -> wnid, from any of the supported LABELS."""
    source = Path(path)
    if source.is_dir():
        data = source / "data" if (source / "data").is_dir() else source
        ground_truth, meta = data / GROUND_TRUTH, data / "meta.mat"
        if not ground_truth.is_file() or not meta.is_file():
            raise FileNotFoundError(f"{path} is a folder without {GROUND_TRUTH} and meta.mat")
        return read_devkit(ground_truth.read_bytes(), meta.read_bytes(), path)
    if not source.is_file():
        raise FileNotFoundError(f"LABELS {path} does not exist")
    if tarfile.is_tarfile(source):
        with tarfile.open(source) as archive:
            members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            if GROUND_TRUTH not in members or "meta.mat" not in members:
                raise ValueError(f"{path} is an archive without {GROUND_TRUTH} and meta.mat")
            ground_truth = archive.extractfile(members[GROUND_TRUTH]).read()
            meta = archive.extractfile(members["meta.mat"]).read()
        return read_devkit(ground_truth, meta, path)
    try:
        text = source.read_text()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a label file (not text: {error})") from error
    if not text.strip():
        raise ValueError(
            f"LABELS {path} is empty; give LOC_val_solution.csv, the devkit or a label text file"
        )
    if text.startswith("ImageId,"):
        return read_kaggle_csv(text, path)
    return read_label_lines(text, path)


def known_wnids(val_dir: Path) -> set[str] | None:
    """The wnids of ``imagenet/classnames.txt`` when VAL_DIR is ``imagenet/images/val``."""
    classnames = val_dir.resolve().parent.parent / "classnames.txt"
    if not classnames.is_file():
        return None
    return {line.split()[0] for line in classnames.read_text().splitlines() if line.strip()}


def plan_moves(val_dir: Path, labels: dict[str, str]) -> list[tuple[Path, Path]]:
    """(image, destination) for every image lying directly in ``val_dir``; checks everything.

    Raises:
        ValueError: an image without a label, a wnid not in classnames.txt, or a destination
            that already exists. Nothing has moved then.
    """
    flat = sorted(
        entry.name
        for entry in os.scandir(val_dir)
        if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
    )
    unlabelled = [name for name in flat if _stem(name) not in labels]
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} images in {val_dir} have no label in LABELS (e.g. "
            f"{', '.join(unlabelled[:3])}); give the label file of these images. Nothing moved."
        )
    wnids = known_wnids(val_dir)
    if wnids is not None:
        unknown = sorted({labels[_stem(name)] for name in flat} - wnids)
        if unknown:
            raise ValueError(
                f"LABELS names wnids that imagenet/classnames.txt lacks ({', '.join(unknown[:5])}"
                f"); it is not ILSVRC-2012's label file. Nothing moved."
            )
    moves = [(val_dir / name, val_dir / labels[_stem(name)] / name) for name in flat]
    taken = [str(target) for _, target in moves if target.exists()]
    if taken:
        raise ValueError(
            f"{len(taken)} images are already in their class folder under another copy (e.g. "
            f"{taken[0]}); remove the duplicates first. Nothing moved."
        )
    return moves


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("val_dir", help="the flat folder, e.g. $DATA/imagenet/images/val")
    parser.add_argument("labels", help="LOC_val_solution.csv, the devkit, or a label text file")
    parser.add_argument("--dry-run", action="store_true", help="say what would move, move nothing")
    args = parser.parse_args(argv)
    val_dir = Path(args.val_dir).expanduser()
    if not val_dir.is_dir():
        parser.error(f"VAL_DIR {val_dir} is not a folder")
    try:
        moves = plan_moves(val_dir, read_labels(args.labels))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not moves:
        folders = sum(entry.is_dir() for entry in os.scandir(val_dir))
        print(f"Nothing to do: no image lies directly in {val_dir} ({folders} class folders).")
        return 0
    classes = Counter(target.parent.name for _, target in moves)
    verb = "Would move" if args.dry_run else "Moving"
    print(f"{verb} {len(moves)} images into {len(classes)} class folders under {val_dir}")
    if args.dry_run:
        for source, target in moves[:5]:
            print(f"  {source.name} -> {target.parent.name}/")
        return 0
    for source, target in moves:
        target.parent.mkdir(exist_ok=True)
        os.rename(source, target)  # same folder tree: a rename, never a copy
    print(f"Done: {len(moves)} images filed. Check with: python tools/check_data.py DATA imagenet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
