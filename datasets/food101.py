"""Food-101 (CoOp's split, ``split_zhou_Food101.json``)."""

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset

DATASET = Dataset(
    name="food101",
    display="Food101",
    column=6,
    layout=Layout(
        name="Food101",
        folder="food-101",
        contents=("images/<class>/<id>.jpg", "meta/", "split_zhou_Food101.json"),
        images="images",
        split_file="split_zhou_Food101.json",
        published=SplitSizes(classes=101, train=50500, val=20200, test=30300),
    ),
    templates=Templates(
        prograd="a type of food, a photo of {}.",
        coop="a photo of {}, a type of food.",
        kgcoop="a photo of {}, a type of food.",
    ),
    groups=(FEWSHOT, XD_TARGET),
)


@DATASET_REGISTRY.register()
class Food101(SplitDataset):
    """Food-101: 101 dish classes; the split is made from the folders if the json is absent.

    CoOp ignores the official meta/train.txt / test.txt division; so do we.
    """

    declaration = DATASET
