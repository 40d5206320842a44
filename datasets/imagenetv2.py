"""ImageNetV2 (matched-frequency); test only."""

import os

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import listdir_nohidden

from experiments.declarations import DG_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import TestSet
from .common import SplitEntries
from .imagenet import find_classnames_file, read_classnames

DATASET = Dataset(
    name="imagenetv2",
    display="ImageNet-V2",
    column=12,
    layout=Layout(
        name="ImageNetV2",
        folder="imagenetv2",
        contents=(
            "imagenetv2-matched-frequency-format-val/<label 0..999>/*.jpeg",
            "classnames.txt (ImageNet's)",
        ),
        images="imagenetv2-matched-frequency-format-val",
        class_file="classnames.txt",
        published=SplitSizes(classes=1000, train=None, val=None, test=10000),
    ),
    templates=Templates(),  # DEFAULT_TEMPLATE, "a photo of a {}.", for ProGrad, CoOp and KgCoOp
    groups=(DG_TARGET,),
)


@DATASET_REGISTRY.register()
class ImageNetV2(TestSet):
    """ImageNetV2 matched-frequency: a new test set for the 1,000 ImageNet classes.

    Its class folders are named by label ("0" ... "999", in classnames.txt order).
    """

    declaration = DATASET

    @classmethod
    def read_entries(cls, dataset_dir: str) -> SplitEntries:
        """Read ``<image_dir>/<label>/<image>`` for every label of classnames.txt."""
        layout = cls.layout
        classnames = read_classnames(find_classnames_file(dataset_dir, layout), layout)
        image_dir = layout.require(layout.image_dir(dataset_dir), "image folder")
        entries = []
        for label, classname in enumerate(classnames.values()):
            class_dir = layout.require(os.path.join(image_dir, str(label)), "class folder")
            for image_name in listdir_nohidden(class_dir):
                entries.append((os.path.join(class_dir, image_name), label, classname))
        return {"test": entries}
