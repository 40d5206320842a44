"""ImageNet-R (renditions); test only."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from .common import Layout, check_images_readable
from .imagenet import find_classnames_file, read_class_folders, read_classnames

LAYOUT = Layout(
    name="ImageNetR",
    folder="imagenet-rendition",
    contents=("imagenet-r/<wnid>/*.jpg", "classnames.txt (ImageNet's)"),
)


@DATASET_REGISTRY.register()
class ImageNetR(DatasetBase):
    """ImageNet-R: renditions (art, cartoons, ...) of 200 ImageNet classes.

    Labels are the positions of the 200 wnid folders in sorted order, named by ImageNet's
    classnames.txt. Every image is a test image (also exposed as train_x, which Dassl needs);
    DATASET.NUM_SHOTS and DATASET.SUBSAMPLE_CLASSES do not apply, as in CoOp.
    """

    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = os.path.join(self.dataset_dir, "imagenet-r")
        classnames = read_classnames(find_classnames_file(self.dataset_dir, LAYOUT), LAYOUT)
        data = read_class_folders(self.image_dir, classnames, LAYOUT)
        check_images_readable(LAYOUT, data)
        super().__init__(train_x=data, test=data)
