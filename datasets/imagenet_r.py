"""ImageNet-R (renditions); test only."""

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import DG_TARGET, Dataset, Layout, SplitSizes, Templates

from .imagenet import ImageNetTestSet

DATASET = Dataset(
    name="imagenet_r",
    display="ImageNet-R",
    column=15,
    layout=Layout(
        name="ImageNetR",
        folder="imagenet-rendition",
        contents=("imagenet-r/<wnid>/*.jpg", "classnames.txt (ImageNet's)"),
        images="imagenet-r",
        class_file="classnames.txt",
        published=SplitSizes(classes=200, train=None, val=None, test=30000),
    ),
    templates=Templates(),  # DEFAULT_TEMPLATE, "a photo of a {}.", for ProGrad, CoOp and KgCoOp
    groups=(DG_TARGET,),
)


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetTestSet):
    """ImageNet-R: renditions (art, cartoons, ...) of 200 ImageNet classes."""

    declaration = DATASET
