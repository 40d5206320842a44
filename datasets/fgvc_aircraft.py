"""FGVC-Aircraft (the official variant-level train/val/test lists; no json split)."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from .common import (
    Entry,
    Layout,
    SplitEntries,
    SplitSizes,
    fewshot_and_subsample,
    read_lines,
    subsample_setting,
    to_data,
)

LAYOUT = Layout(
    name="FGVCAircraft",
    folder="fgvc_aircraft",
    contents=(
        "images/<id>.jpg",
        "variants.txt",
        "images_variant_train.txt",
        "images_variant_val.txt",
        "images_variant_test.txt",
    ),
    images="images",
    class_file="variants.txt",
    published=SplitSizes(classes=100, train=3334, val=3333, test=3333),
)


@DATASET_REGISTRY.register()
class FGVCAircraft(DatasetBase):
    """FGVC-Aircraft: 100 aircraft variants; labels follow the order of ``variants.txt``."""

    layout = LAYOUT
    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before reading any files
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = LAYOUT.image_dir(self.dataset_dir)
        entries = self.read_entries(self.dataset_dir)
        train, val, test = (to_data(entries[key], LAYOUT) for key in ("train", "val", "test"))
        train, val, test = fewshot_and_subsample(self, cfg, LAYOUT, train, val, test)
        super().__init__(train_x=train, val=val, test=test)

    @staticmethod
    def read_entries(dataset_dir: str) -> SplitEntries:
        """The official variant-level lists, labelled by the order of ``variants.txt``."""
        variants_file = os.path.join(dataset_dir, LAYOUT.class_file)
        classnames = [line for _, line in read_lines(variants_file, LAYOUT, "class-name file")]
        cname2lab = {classname: label for label, classname in enumerate(classnames)}
        return {
            split: read_variant_list(dataset_dir, cname2lab, f"images_variant_{split}.txt")
            for split in ("train", "val", "test")
        }


def read_variant_list(dataset_dir: str, cname2lab: dict[str, int], list_file: str) -> list[Entry]:
    """Read a list of ``<image id> <variant name>`` lines (variant names may have spaces)."""
    path = os.path.join(dataset_dir, list_file)
    image_dir = LAYOUT.image_dir(dataset_dir)
    entries = []
    for number, line in read_lines(path, LAYOUT, "split file"):
        image_id, _, classname = line.partition(" ")
        if classname not in cname2lab:
            raise ValueError(
                f"FGVCAircraft: line {number} of {path}, {line[:80]!r}, names a variant that "
                f"variants.txt does not list; re-extract the dataset as described in "
                f"{LAYOUT.doc}."
            )
        entries.append(
            (os.path.join(image_dir, f"{image_id}.jpg"), cname2lab[classname], classname)
        )
    return entries
