"""ImageNet (ILSVRC-2012; its val set is the test set) and helpers for its test-only variants."""

import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from dassl.utils import listdir_nohidden
from yacs.config import CfgNode

from .common import (
    Layout,
    Split,
    check_cached_images_exist,
    check_images_readable,
    fewshot_and_subsample,
    make_datum,
    subsample_setting,
)

LAYOUT = Layout(
    name="ImageNet",
    folder="imagenet",
    contents=("images/train/<wnid>/*.JPEG", "images/val/<wnid>/*.JPEG", "classnames.txt"),
)


def read_classnames(text_file: str, layout: Layout) -> OrderedDict[str, str]:
    """Read ``classnames.txt`` (lines ``<wnid> <class name>``) into an ordered wnid -> name map."""
    classnames: OrderedDict[str, str] = OrderedDict()
    with open(layout.require(text_file, "class-name file")) as file:
        for line in file:
            if line.strip():
                wnid, classname = line.strip().split(" ", 1)
                classnames[wnid] = classname
    return classnames


def find_classnames_file(dataset_dir: str, layout: Layout) -> str:
    """Return the ``classnames.txt`` to use for an ImageNet variant.

    CoOp's layout puts a copy in the variant's own folder; without one, ImageNet's own
    ``<DATASET.ROOT>/imagenet/classnames.txt`` is used, so the file need not be copied.
    """
    own = os.path.join(dataset_dir, "classnames.txt")
    shared = os.path.join(os.path.dirname(dataset_dir), LAYOUT.folder, "classnames.txt")
    if os.path.isfile(own) or not os.path.isfile(shared):
        return layout.require(own, f"class-name file (ImageNet's; also looked for {shared})")
    return shared


def read_class_folders(split_dir: str, classnames: Mapping[str, str], layout: Layout) -> Split:
    """Read ``split_dir/<wnid>/<image>``; labels follow the sorted wnid folders present.

    Images are taken in ``os.listdir`` order, as CoOp does, so few-shot sampling with the same
    seed picks the same images as CoOp on the same disk.
    """
    layout.require(split_dir, "image folder")
    # Files such as ImageNet-A's README.txt sit beside the class folders.
    folders = sorted(f.name for f in os.scandir(split_dir) if f.is_dir() and f.name[0] != ".")
    items = []
    for label, folder in enumerate(folders):
        if folder not in classnames:
            raise ValueError(
                f"{layout.name}: folder {folder!r} in {split_dir} has no entry in classnames.txt; "
                f"use the ImageNet classnames.txt described in {layout.doc}."
            )
        folder_dir = os.path.join(split_dir, folder)
        for image_name in listdir_nohidden(folder_dir):
            impath = os.path.join(folder_dir, image_name)
            items.append(make_datum(impath, label, classnames[folder], layout))
    return items


@DATASET_REGISTRY.register()
class ImageNet(DatasetBase):
    """ImageNet: 1,000 classes; the official val set serves as both val and test (as in CoOp).

    Reading 1.28M paths is slow, so the full lists are cached in ``imagenet/preprocessed.pkl``
    (CoOp's file and format).
    """

    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before reading any files
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.preprocessed = os.path.join(self.dataset_dir, "preprocessed.pkl")

        if os.path.exists(self.preprocessed):
            with open(self.preprocessed, "rb") as file:
                preprocessed = pickle.load(file)
            train, test = preprocessed["train"], preprocessed["test"]
            # Only the first items: checking 1.28M paths would undo the point of the cache.
            check_cached_images_exist(self.preprocessed, [train[:1], test[:1]])
        else:
            text_file = os.path.join(self.dataset_dir, "classnames.txt")
            classnames = read_classnames(text_file, LAYOUT)
            train = read_class_folders(os.path.join(self.image_dir, "train"), classnames, LAYOUT)
            test = read_class_folders(os.path.join(self.image_dir, "val"), classnames, LAYOUT)
            with open(self.preprocessed, "wb") as file:
                pickle.dump({"train": train, "test": test}, file, protocol=pickle.HIGHEST_PROTOCOL)

        train, _, test = fewshot_and_subsample(self, cfg, LAYOUT, train, None, test)
        super().__init__(train_x=train, val=test, test=test)


class ImageNetTestSet(DatasetBase):
    """An ImageNet variant read from `<wnid>` folders: test only (not registered itself).

    Subclasses set `layout` and `image_subdir`. Labels are the positions of the wnid folders in
    sorted order, named by ImageNet's classnames.txt. Every image is a test image (also exposed
    as train_x, which Dassl needs); DATASET.NUM_SHOTS and DATASET.SUBSAMPLE_CLASSES do not apply,
    as in CoOp.
    """

    layout: Layout
    image_subdir: str

    def __init__(self, cfg: CfgNode) -> None:
        self.dataset_dir = self.layout.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        classnames_file = find_classnames_file(self.dataset_dir, self.layout)
        classnames = read_classnames(classnames_file, self.layout)
        data = read_class_folders(self.image_dir, classnames, self.layout)
        check_images_readable(self.layout, data)
        super().__init__(train_x=data, test=data)
