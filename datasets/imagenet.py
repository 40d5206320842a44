"""ImageNet (ILSVRC-2012; its val set is the test set) and helpers for its test-only variants."""

import os
from collections import OrderedDict
from collections.abc import Mapping

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import listdir_nohidden

from experiments.declarations import FEWSHOT, XD_SOURCE, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset, TestSet
from .common import (
    Entry,
    Split,
    SplitEntries,
    check_cached_images_exist,
    read_cache,
    read_lines,
    to_data,
    write_cache,
)

DATASET = Dataset(
    name="imagenet",
    display="ImageNet",
    column=1,
    layout=Layout(
        name="ImageNet",
        folder="imagenet",
        contents=("images/train/<wnid>/*.JPEG", "images/val/<wnid>/*.JPEG", "classnames.txt"),
        images="images",
        class_file="classnames.txt",
        published=SplitSizes(classes=1000, train=1281167, val=None, test=50000),
    ),
    templates=Templates(),  # DEFAULT_TEMPLATE, "a photo of a {}.", for ProGrad, CoOp and KgCoOp
    groups=(FEWSHOT, XD_SOURCE),
)
# What ImageNet's validation images are called when they come in one flat folder.
FLAT_VAL_PREFIX = "ILSVRC2012_val_"


def read_classnames(text_file: str, layout: Layout) -> OrderedDict[str, str]:
    """Read ``classnames.txt`` (lines ``<wnid> <class name>``) into an ordered wnid -> name map."""
    classnames: OrderedDict[str, str] = OrderedDict()
    for number, line in read_lines(text_file, layout, "class-name file"):
        wnid, _, classname = line.partition(" ")
        if not classname.strip() or wnid in classnames:
            problem = "a repeated wnid" if wnid in classnames else "not '<wnid> <class name>'"
            raise layout.damaged(text_file, f"line {number}, {line[:80]!r}, is {problem}")
        classnames[wnid] = classname.strip()
    return classnames


def find_classnames_file(dataset_dir: str, layout: Layout) -> str:
    """Return the ``classnames.txt`` to use for an ImageNet variant.

    CoOp's layout puts a copy in the variant's own folder; without one, ImageNet's own
    ``<DATASET.ROOT>/imagenet/classnames.txt`` is used, so the file need not be copied.
    """
    own = os.path.join(dataset_dir, "classnames.txt")
    shared = os.path.join(os.path.dirname(dataset_dir), DATASET.layout.folder, "classnames.txt")
    if os.path.isfile(own) or not os.path.isfile(shared):
        return layout.require(own, f"class-name file (ImageNet's; also looked for {shared})")
    return shared


def list_class_folders(
    split_dir: str, classnames: Mapping[str, str], layout: Layout
) -> list[Entry]:
    """List ``split_dir/<wnid>/<image>``; labels follow the sorted wnid folders present.

    Images are taken in ``os.listdir`` order, as CoOp does, so few-shot sampling with the same
    seed picks the same images as CoOp on the same disk. Image files lying directly in
    ``split_dir`` (ImageNet's validation images as they are downloaded) raise an error saying
    how to file them into class folders.
    """
    layout.require(split_dir, "image folder")
    # Files such as ImageNet-A's README.txt sit beside the class folders.
    folders, loose = [], 0
    for entry in os.scandir(split_dir):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            folders.append(entry.name)
        elif entry.name.lower().endswith((".jpeg", ".jpg", ".png")):
            loose += 1
    if loose and not folders:
        raise ValueError(
            f"{layout.name}: {split_dir} holds {loose} images directly instead of one folder per "
            f"class (<wnid>/). File them into class folders, e.g. for ImageNet's validation "
            f"images: python tools/sort_imagenet_val.py {split_dir} LABELS (see {layout.doc})."
        )
    entries = []
    for label, folder in enumerate(sorted(folders)):
        if folder not in classnames:
            raise ValueError(
                f"{layout.name}: folder {folder!r} in {split_dir} has no entry in classnames.txt; "
                f"use the ImageNet classnames.txt described in {layout.doc}."
            )
        folder_dir = os.path.join(split_dir, folder)
        for image_name in listdir_nohidden(folder_dir):
            entries.append((os.path.join(folder_dir, image_name), label, classnames[folder]))
    return entries


@DATASET_REGISTRY.register()
class ImageNet(SplitDataset):
    """ImageNet: 1,000 classes; the official val set serves as both val and test (as in CoOp).

    Reading 1.28M paths is slow, so the full lists are cached in ``imagenet/preprocessed.pkl``
    (CoOp's file and format).
    """

    declaration = DATASET

    def read_splits(self) -> tuple[Split, None, Split]:
        """The full train and test lists, from the cache when it exists (no val split)."""
        self.preprocessed = os.path.join(self.dataset_dir, "preprocessed.pkl")
        if os.path.exists(self.preprocessed):
            preprocessed = read_cache(self.preprocessed, "train", "test")
            train, test = preprocessed["train"], preprocessed["test"]
            # Only the first items: checking 1.28M paths would undo the point of the cache.
            check_cached_images_exist(self.preprocessed, [train[:1], test[:1]])
        else:
            entries = self.read_entries(self.dataset_dir)
            train, test = (
                to_data(entries["train"], self.layout),
                to_data(entries["test"], self.layout),
            )
            write_cache({"train": train, "test": test}, self.preprocessed)
        return train, None, test

    @staticmethod
    def read_entries(dataset_dir: str) -> SplitEntries:
        """The full train and test (the official validation set) lists, read from the folders."""
        layout = DATASET.layout
        classnames = read_classnames(os.path.join(dataset_dir, layout.class_file), layout)
        image_dir = layout.image_dir(dataset_dir)
        return {
            "train": list_class_folders(os.path.join(image_dir, "train"), classnames, layout),
            "test": list_class_folders(os.path.join(image_dir, "val"), classnames, layout),
        }


class ImageNetTestSet(TestSet):
    """An ImageNet variant read from `<wnid>` folders: test only (not registered itself).

    Subclasses set `declaration` (its layout's `images` is the folder of the `<wnid>` folders).
    Labels are the positions of the wnid folders in sorted order, named by ImageNet's
    classnames.txt.
    """

    @classmethod
    def read_entries(cls, dataset_dir: str) -> SplitEntries:
        """The test list, read from the class folders."""
        classnames = read_classnames(find_classnames_file(dataset_dir, cls.layout), cls.layout)
        image_dir = cls.layout.image_dir(dataset_dir)
        return {"test": list_class_folders(image_dir, classnames, cls.layout)}
