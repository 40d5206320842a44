"""Describable Textures Dataset (CoOp's split, ``split_zhou_DescribableTextures.json``)."""

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset

DATASET = Dataset(
    name="dtd",
    display="DTD",
    column=9,
    layout=Layout(
        name="DescribableTextures",
        folder="dtd",
        contents=("images/<class>/<class>_*.jpg", "split_zhou_DescribableTextures.json"),
        images="images",
        split_file="split_zhou_DescribableTextures.json",
        published=SplitSizes(classes=47, train=2820, val=1128, test=1692),
    ),
    templates=Templates(
        prograd="a texture of {}.",
        coop="{} texture.",
        kgcoop="a photo of a {}, a type of texture.",
    ),
    groups=(FEWSHOT, XD_TARGET),
)


@DATASET_REGISTRY.register()
class DescribableTextures(SplitDataset):
    """DTD: 47 texture classes; the split is made from the folders if the json is absent."""

    declaration = DATASET
