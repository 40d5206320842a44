"""ImageNet-Sketch; test only."""

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import DG_TARGET, Dataset, Layout, SplitSizes, Templates

from .imagenet import ImageNetTestSet

DATASET = Dataset(
    name="imagenet_sketch",
    display="ImageNet-Sketch",
    column=13,
    layout=Layout(
        name="ImageNetSketch",
        folder="imagenet-sketch",
        contents=("images/<wnid>/*.JPEG", "classnames.txt (ImageNet's)"),
        images="images",
        class_file="classnames.txt",
        published=SplitSizes(classes=1000, train=None, val=None, test=50889),
    ),
    templates=Templates(),  # DEFAULT_TEMPLATE, "a photo of a {}.", for ProGrad, CoOp and KgCoOp
    groups=(DG_TARGET,),
)


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetTestSet):
    """ImageNet-Sketch: black-and-white sketches of the 1,000 ImageNet classes."""

    declaration = DATASET
