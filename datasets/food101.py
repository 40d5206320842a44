"""Food-101 (CoOp's split, ``split_zhou_Food101.json``)."""

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
    name="Food101",
    folder="food-101",
    contents=("images/<class>/<id>.jpg", "meta/", "split_zhou_Food101.json"),
    images="images",
    split_file="split_zhou_Food101.json",
    published=SplitSizes(classes=101, train=50500, val=20200, test=30300),
)


@DATASET_REGISTRY.register()
class Food101(DatasetBase):
    """Food-101: 101 dish classes; the split is made from the folders if the json is absent.

    CoOp ignores the official meta/train.txt / test.txt division; so do we.
    """

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
            create=lambda: read_and_split_data(self.image_dir, LAYOUT),
        )
        train, val, test = fewshot_and_subsample(self, cfg, LAYOUT, train, val, test)
        super().__init__(train_x=train, val=val, test=test)
