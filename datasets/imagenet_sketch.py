"""ImageNet-Sketch; test only."""

from dassl.data.datasets import DATASET_REGISTRY

from .common import Layout, SplitSizes
from .imagenet import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetTestSet):
    """ImageNet-Sketch: black-and-white sketches of the 1,000 ImageNet classes."""

    layout = Layout(
        name="ImageNetSketch",
        folder="imagenet-sketch",
        contents=("images/<wnid>/*.JPEG", "classnames.txt (ImageNet's)"),
        images="images",
        class_file="classnames.txt",
        published=SplitSizes(classes=1000, train=None, val=None, test=50889),
    )
    dataset_dir = layout.folder
