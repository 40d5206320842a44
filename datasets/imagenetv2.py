"""ImageNetV2 (matched-frequency); test only."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from dassl.utils import listdir_nohidden
from yacs.config import CfgNode

from .common import Layout, SplitEntries, SplitSizes, check_images_readable, to_data
from .imagenet import find_classnames_file, read_classnames

LAYOUT = Layout(
    name="ImageNetV2",
    folder="imagenetv2",
    contents=(
        "imagenetv2-matched-frequency-format-val/<label 0..999>/*.jpeg",
        "classnames.txt (ImageNet's)",
    ),
    images="imagenetv2-matched-frequency-format-val",
    class_file="classnames.txt",
    published=SplitSizes(classes=1000, train=None, val=None, test=10000),
)


@DATASET_REGISTRY.register()
class ImageNetV2(DatasetBase):
    """ImageNetV2 matched-frequency: a new test set for the 1,000 ImageNet classes.

    Its class folders are named by label ("0" ... "999", in classnames.txt order). Every image
    is a test image (also exposed as train_x, which Dassl needs); DATASET.NUM_SHOTS and
    DATASET.SUBSAMPLE_CLASSES do not apply, as in CoOp.
    """

    layout = LAYOUT
    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = LAYOUT.image_dir(self.dataset_dir)
        data = to_data(self.read_entries(self.dataset_dir)["test"], LAYOUT)
        check_images_readable(LAYOUT, data)
        super().__init__(train_x=data, test=data)

    @staticmethod
    def read_entries(dataset_dir: str) -> SplitEntries:
        """Read ``<image_dir>/<label>/<image>`` for every label of classnames.txt."""
        classnames = read_classnames(find_classnames_file(dataset_dir, LAYOUT), LAYOUT)
        image_dir = LAYOUT.require(LAYOUT.image_dir(dataset_dir), "image folder")
        entries = []
        for label, classname in enumerate(classnames.values()):
            class_dir = LAYOUT.require(os.path.join(image_dir, str(label)), "class folder")
            for image_name in listdir_nohidden(class_dir):
                entries.append((os.path.join(class_dir, image_name), label, classname))
        return {"test": entries}
