"""EuroSAT (CoOp's split, ``split_zhou_EuroSAT.json``)."""

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
    name="EuroSAT",
    folder="eurosat",
    contents=("2750/<class>/<class>_*.jpg", "split_zhou_EuroSAT.json"),
    images="2750",
    split_file="split_zhou_EuroSAT.json",
    published=SplitSizes(classes=10, train=13500, val=5400, test=8100),
)
# The folder names are CamelCase land-use codes; CoOp prompts with these descriptions.
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(DatasetBase):
    """EuroSAT: 10 satellite land-use classes; the split is made if the json is absent."""

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
            create=lambda: read_and_split_data(self.image_dir, LAYOUT, new_cnames=NEW_CNAMES),
        )
        train, val, test = fewshot_and_subsample(self, cfg, LAYOUT, train, val, test)
        super().__init__(train_x=train, val=val, test=test)
