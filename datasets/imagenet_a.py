"""ImageNet-A (natural adversarial examples); test only."""

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import DG_TARGET, Dataset, Layout, SplitSizes, Templates

from .imagenet import ImageNetTestSet

DATASET = Dataset(
    name="imagenet_a",
    display="ImageNet-A",
    column=14,
    layout=Layout(
        name="ImageNetA",
        folder="imagenet-adversarial",
        contents=("imagenet-a/<wnid>/*.jpg", "classnames.txt (ImageNet's)"),
        images="imagenet-a",
        class_file="classnames.txt",
        published=SplitSizes(classes=200, train=None, val=None, test=7500),
    ),
    templates=Templates(),  # DEFAULT_TEMPLATE, "a photo of a {}.", for ProGrad, CoOp and KgCoOp
    groups=(DG_TARGET,),
)


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetTestSet):
    """ImageNet-A: 200 ImageNet classes of natural adversarial examples."""

    declaration = DATASET
