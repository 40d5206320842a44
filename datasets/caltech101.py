"""Caltech101 (CoOp's split, ``split_zhou_Caltech101.json``)."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from .common import (
    Layout,
    SplitSizes,
    fewshot_and_subsample,
    read_and_split_data,
    read_or_create_split,
    subsample_setting,
)

LAYOUT = Layout(
    name="Caltech101",
    folder="caltech-101",
    contents=("101_ObjectCategories/<class>/image_*.jpg", "split_zhou_Caltech101.json"),
    images="101_ObjectCategories",
    split_file="split_zhou_Caltech101.json",
    published=SplitSizes(classes=100, train=4128, val=1649, test=2465),
)
# A clutter class and a duplicate of "Faces"; CoOp leaves both out.
IGNORED = ("BACKGROUND_Google", "Faces_easy")
# Folder names that read badly in a prompt.
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@DATASET_REGISTRY.register()
class Caltech101(DatasetBase):
    """Caltech101: 100 object classes; the split is made from the folders if the json is absent."""

    layout = LAYOUT
    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before reading any files
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = LAYOUT.image_dir(self.dataset_dir)
        self.split_path = os.path.join(self.dataset_dir, LAYOUT.split_file)

        train, val, test = read_or_create_split(
            self.split_path,
            self.image_dir,
            LAYOUT,
            create=lambda: read_and_split_data(
                self.image_dir, LAYOUT, ignored=IGNORED, new_cnames=NEW_CNAMES
            ),
        )
        train, val, test = fewshot_and_subsample(self, cfg, LAYOUT, train, val, test)
        super().__init__(train_x=train, val=val, test=test)
