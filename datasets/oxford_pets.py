"""Oxford-IIIT Pets (CoOp's split, ``split_zhou_OxfordPets.json``)."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from .common import (
    Layout,
    Split,
    SplitSizes,
    fewshot_and_subsample,
    make_datum,
    read_lines,
    read_or_create_split,
    split_trainval,
    subsample_setting,
)

LAYOUT = Layout(
    name="OxfordPets",
    folder="oxford_pets",
    contents=(
        "images/<Breed>_<n>.jpg",
        "annotations/trainval.txt",
        "annotations/test.txt",
        "split_zhou_OxfordPets.json",
    ),
    images="images",
    split_file="split_zhou_OxfordPets.json",
    published=SplitSizes(classes=37, train=2944, val=736, test=3669),
)


@DATASET_REGISTRY.register()
class OxfordPets(DatasetBase):
    """Oxford-IIIT Pets: 37 cat and dog breeds.

    Without the json, train/val come from annotations/trainval.txt (20% held out per class) and
    test from annotations/test.txt.
    """

    layout = LAYOUT
    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before reading any files
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = LAYOUT.image_dir(self.dataset_dir)
        self.anno_dir = os.path.join(self.dataset_dir, "annotations")
        self.split_path = os.path.join(self.dataset_dir, LAYOUT.split_file)

        def create() -> tuple[Split, Split, Split]:
            trainval = self.read_data("trainval.txt")
            test = self.read_data("test.txt")
            return (*split_trainval(trainval), test)

        train, val, test = read_or_create_split(self.split_path, self.image_dir, LAYOUT, create)
        train, val, test = fewshot_and_subsample(self, cfg, LAYOUT, train, val, test)
        super().__init__(train_x=train, val=val, test=test)

    def read_data(self, split_file: str) -> Split:
        """Read an annotation list: lines ``<Breed>_<n> <class id> <species> <breed id>``."""
        path = os.path.join(self.anno_dir, split_file)
        items = []
        for number, line in read_lines(path, LAYOUT, "annotation file"):
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                raise LAYOUT.damaged(
                    path, f"line {number}, {line[:80]!r}, is not '<Breed>_<n> <class id> ...'"
                )
            image_name, class_id = fields[:2]
            # The breed is the file name without its trailing number, e.g. "Abyssinian_100".
            breed = image_name.rsplit("_", 1)[0].lower()
            impath = os.path.join(self.image_dir, f"{image_name}.jpg")
            items.append(make_datum(impath, int(class_id) - 1, breed, LAYOUT))
        return items
