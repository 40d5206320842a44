"""ImageNetV2 (matched-frequency); test only."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from dassl.utils import listdir_nohidden
from yacs.config import CfgNode

from .common import Layout, Split, check_images_readable, make_datum
from .imagenet import find_classnames_file, read_classnames

LAYOUT = Layout(
    name="ImageNetV2",
    folder="imagenetv2",
    contents=(
        "imagenetv2-matched-frequency-format-val/<label 0..999>/*.jpeg",
        "classnames.txt (ImageNet's)",
    ),
)


@DATASET_REGISTRY.register()
class ImageNetV2(DatasetBase):
    """ImageNetV2 matched-frequency: a new test set for the 1,000 ImageNet classes.

    Its class folders are named by label ("0" ... "999", in classnames.txt order). Every image
    is a test image (also exposed as train_x, which Dassl needs); DATASET.NUM_SHOTS and
    DATASET.SUBSAMPLE_CLASSES do not apply, as in CoOp.
    """

    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = os.path.join(self.dataset_dir, "imagenetv2-matched-frequency-format-val")
        classnames = read_classnames(find_classnames_file(self.dataset_dir, LAYOUT), LAYOUT)
        data = self.read_data(list(classnames.values()))
        check_images_readable(LAYOUT, data)
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames: list[str]) -> Split:
        """Read ``<image_dir>/<label>/<image>`` for every label of classnames.txt."""
        LAYOUT.require(self.image_dir, "image folder")
        items = []
        for label, classname in enumerate(classnames):
            class_dir = LAYOUT.require(os.path.join(self.image_dir, str(label)), "class folder")
            for image_name in listdir_nohidden(class_dir):
                items.append(
                    make_datum(os.path.join(class_dir, image_name), label, classname, LAYOUT)
                )
        return items
