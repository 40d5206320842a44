"""ImageNet-Sketch; test only."""

from dassl.data.datasets import DATASET_REGISTRY

from .common import Layout
from .imagenet import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetTestSet):
    """ImageNet-Sketch: black-and-white sketches of the 1,000 ImageNet classes."""

    layout = Layout(
        name="ImageNetSketch",
        folder="imagenet-sketch",
        contents=("images/<wnid>/*.JPEG", "classnames.txt (ImageNet's)"),
    )
    dataset_dir = layout.folder
    image_subdir = "images"
