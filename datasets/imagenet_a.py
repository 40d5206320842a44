"""ImageNet-A (natural adversarial examples); test only."""

from dassl.data.datasets import DATASET_REGISTRY

from .common import Layout, SplitSizes
from .imagenet import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetTestSet):
    """ImageNet-A: 200 ImageNet classes of natural adversarial examples."""

    layout = Layout(
        name="ImageNetA",
        folder="imagenet-adversarial",
        contents=("imagenet-a/<wnid>/*.jpg", "classnames.txt (ImageNet's)"),
        images="imagenet-a",
        class_file="classnames.txt",
        published=SplitSizes(classes=200, train=None, val=None, test=7500),
    )
    dataset_dir = layout.folder
