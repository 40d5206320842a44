"""TinyWorld: 64 coloured shapes ("red circle", ...) in CoOp's Caltech101-style layout.

The images come from the project's own generator (``datasets/tinyworld_world.py``, the
*downstream* domain); when ``<DATASET.ROOT>/tinyworld/`` is missing it is generated there first
(a few seconds; safe when several runs start at once). Base classes are the first 32 labels
(blue, green, orange and pink shapes), new classes the other 32.
"""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from . import tinyworld_world as world
from .common import Layout, fewshot_and_subsample, read_split, subsample_setting

LAYOUT = Layout(
    name="TinyWorld",
    folder=world.DATASET_FOLDER,
    contents=(f"{world.IMAGE_FOLDER}/<class>/image_*.png", world.SPLIT_FILE),
)


@DATASET_REGISTRY.register()
class TinyWorld(DatasetBase):
    """TinyWorld: 20 train, 4 val and 30 test images per class; generated when missing."""

    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before writing any files
        self.dataset_dir = str(world.ensure_tinyworld(cfg.DATASET.ROOT))
        self.image_dir = os.path.join(self.dataset_dir, world.IMAGE_FOLDER)
        split_path = LAYOUT.require(os.path.join(self.dataset_dir, world.SPLIT_FILE), "split file")

        train, val, test = read_split(split_path, self.image_dir, LAYOUT)
        train, val, test = fewshot_and_subsample(self, cfg, LAYOUT, train, val, test)
        super().__init__(train_x=train, val=val, test=test)
