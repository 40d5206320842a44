"""Oxford-IIIT Pets (CoOp's split, ``split_zhou_OxfordPets.json``)."""

import os

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset
from .common import Split, make_datum, read_lines, split_trainval

DATASET = Dataset(
    name="oxford_pets",
    display="OxfordPets",
    column=3,
    layout=Layout(
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
    ),
    templates=Templates(
        prograd="a type of pet, a photo of a {}.",
        coop="a photo of a {}, a type of pet.",
        kgcoop="a photo of a {}, a type of pet.",
    ),
    groups=(FEWSHOT, XD_TARGET),
)


@DATASET_REGISTRY.register()
class OxfordPets(SplitDataset):
    """Oxford-IIIT Pets: 37 cat and dog breeds.

    Without the json, train/val come from annotations/trainval.txt (20% held out per class) and
    test from annotations/test.txt.
    """

    declaration = DATASET

    def create_split(self) -> tuple[Split, Split, Split]:
        """Hold out 20% of each class of trainval.txt for validation; test is test.txt."""
        trainval = self.read_data("trainval.txt")
        test = self.read_data("test.txt")
        return (*split_trainval(trainval), test)

    def read_data(self, split_file: str) -> Split:
        """Read an annotation list: lines ``<Breed>_<n> <class id> <species> <breed id>``."""
        path = os.path.join(self.dataset_dir, "annotations", split_file)
        items = []
        for number, line in read_lines(path, self.layout, "annotation file"):
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                raise self.layout.damaged(
                    path, f"line {number}, {line[:80]!r}, is not '<Breed>_<n> <class id> ...'"
                )
            image_name, class_id = fields[:2]
            # The breed is the file name without its trailing number, e.g. "Abyssinian_100".
            breed = image_name.rsplit("_", 1)[0].lower()
            impath = os.path.join(self.image_dir, f"{image_name}.jpg")
            items.append(make_datum(impath, int(class_id) - 1, breed, self.layout))
        return items
