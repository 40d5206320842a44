"""ImageNet-Sketch; test only."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from .common import Layout, check_images_readable
from .imagenet import find_classnames_file, read_class_folders, read_classnames

LAYOUT = Layout(
    name="ImageNetSketch",
    folder="imagenet-sketch",
    contents=("images/<wnid>/*.JPEG", "classnames.txt (ImageNet's)"),
)


@DATASET_REGISTRY.register()
class ImageNetSketch(DatasetBase):
    """ImageNet-Sketch: black-and-white sketches of the 1,000 ImageNet classes.

    Every image is a test image (also exposed as train_x, which Dassl needs);
    DATASET.NUM_SHOTS and DATASET.SUBSAMPLE_CLASSES do not apply, as in CoOp.
    """

    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        classnames = read_classnames(find_classnames_file(self.dataset_dir, LAYOUT), LAYOUT)
        data = read_class_folders(self.image_dir, classnames, LAYOUT)
        check_images_readable(LAYOUT, data)
        super().__init__(train_x=data, test=data)
