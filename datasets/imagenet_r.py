"""ImageNet-R (renditions); test only."""

from dassl.data.datasets import DATASET_REGISTRY

from .common import Layout, SplitSizes
from .imagenet import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetTestSet):
    """ImageNet-R: renditions (art, cartoons, ...) of 200 ImageNet classes."""

    layout = Layout(
        name="ImageNetR",
        folder="imagenet-rendition",
        contents=("imagenet-r/<wnid>/*.jpg", "classnames.txt (ImageNet's)"),
        images="imagenet-r",
        class_file="classnames.txt",
        published=SplitSizes(classes=200, train=None, val=None, test=30000),
    )
    dataset_dir = layout.folder
