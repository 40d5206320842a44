"""FGVC-Aircraft (the official variant-level train/val/test lists; no json split)."""

import os

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset
from .common import Entry, Split, SplitEntries, read_lines, to_data

DATASET = Dataset(
    name="fgvc_aircraft",
    display="FGVCAircraft",
    column=7,
    layout=Layout(
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
    ),
    templates=Templates(
        prograd="a type of aircraft, a photo of a {}.",
        coop="a photo of a {}, a type of aircraft.",
        kgcoop="a photo of a {}, a type of aircraft.",
    ),
    groups=(FEWSHOT, XD_TARGET),
)


@DATASET_REGISTRY.register()
class FGVCAircraft(SplitDataset):
    """FGVC-Aircraft: 100 aircraft variants; labels follow the order of ``variants.txt``."""

    declaration = DATASET

    def read_splits(self) -> tuple[Split, Split, Split]:
        """The official lists (there is no split file)."""
        entries = self.read_entries(self.dataset_dir)
        train, val, test = (to_data(entries[key], self.layout) for key in ("train", "val", "test"))
        return train, val, test

    @staticmethod
    def read_entries(dataset_dir: str) -> SplitEntries:
        """The official variant-level lists, labelled by the order of ``variants.txt``."""
        variants_file = os.path.join(dataset_dir, DATASET.layout.class_file)
        classnames = [
            line for _, line in read_lines(variants_file, DATASET.layout, "class-name file")
        ]
        cname2lab = {classname: label for label, classname in enumerate(classnames)}
        return {
            split: read_variant_list(dataset_dir, cname2lab, f"images_variant_{split}.txt")
            for split in ("train", "val", "test")
        }


def read_variant_list(dataset_dir: str, cname2lab: dict[str, int], list_file: str) -> list[Entry]:
    """Read a list of ``<image id> <variant name>`` lines (variant names may have spaces)."""
    path = os.path.join(dataset_dir, list_file)
    image_dir = DATASET.layout.image_dir(dataset_dir)
    entries = []
    for number, line in read_lines(path, DATASET.layout, "split file"):
        image_id, _, classname = line.partition(" ")
        if classname not in cname2lab:
            raise ValueError(
                f"FGVCAircraft: line {number} of {path}, {line[:80]!r}, names a variant that "
                f"variants.txt does not list; re-extract the dataset as described in "
                f"{DATASET.layout.doc}."
            )
        entries.append(
            (os.path.join(image_dir, f"{image_id}.jpg"), cname2lab[classname], classname)
        )
    return entries
