"""FGVC-Aircraft (the official variant-level train/val/test lists; no json split)."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from .common import Layout, Split, fewshot_and_subsample, make_datum, subsample_setting

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
)


@DATASET_REGISTRY.register()
class FGVCAircraft(DatasetBase):
    """FGVC-Aircraft: 100 aircraft variants; labels follow the order of ``variants.txt``."""

    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before reading any files
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = os.path.join(self.dataset_dir, "images")

        variants_file = LAYOUT.require(
            os.path.join(self.dataset_dir, "variants.txt"), "class-name file"
        )
        with open(variants_file) as file:
            classnames = [line.strip() for line in file]
        cname2lab = {classname: label for label, classname in enumerate(classnames)}

        train = self.read_data(cname2lab, "images_variant_train.txt")
        val = self.read_data(cname2lab, "images_variant_val.txt")
        test = self.read_data(cname2lab, "images_variant_test.txt")
        train, val, test = fewshot_and_subsample(self, cfg, LAYOUT, train, val, test)
        super().__init__(train_x=train, val=val, test=test)

    def read_data(self, cname2lab: dict[str, int], split_file: str) -> Split:
        """Read a list of ``<image id> <variant name>`` lines (variant names may have spaces)."""
        path = LAYOUT.require(os.path.join(self.dataset_dir, split_file), "split file")
        items = []
        with open(path) as file:
            for line in file:
                if not line.strip():
                    continue
                image_id, classname = line.strip().split(" ", 1)
                if classname not in cname2lab:
                    raise ValueError(
                        f"FGVCAircraft: variant {classname!r} in {path} is not listed in "
                        f"variants.txt; re-extract the dataset as described in {LAYOUT.doc}."
                    )
                impath = os.path.join(self.image_dir, f"{image_id}.jpg")
                items.append(make_datum(impath, cname2lab[classname], classname, LAYOUT))
        return items
