"""Caltech101 (CoOp's split, ``split_zhou_Caltech101.json``)."""

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset

DATASET = Dataset(
    name="caltech101",
    display="Caltech101",
    column=2,
    layout=Layout(
        name="Caltech101",
        folder="caltech-101",
        contents=("101_ObjectCategories/<class>/image_*.jpg", "split_zhou_Caltech101.json"),
        images="101_ObjectCategories",
        split_file="split_zhou_Caltech101.json",
        published=SplitSizes(classes=100, train=4128, val=1649, test=2465),
    ),
    templates=Templates(),  # DEFAULT_TEMPLATE, "a photo of a {}.", for ProGrad, CoOp and KgCoOp
    groups=(FEWSHOT, XD_TARGET),
)


@DATASET_REGISTRY.register()
class Caltech101(SplitDataset):
    """Caltech101: 100 object classes; the split is made from the folders if the json is absent."""

    declaration = DATASET
    # A clutter class and a duplicate of "Faces"; CoOp leaves both out.
    ignored = ("BACKGROUND_Google", "Faces_easy")
    # Folder names that read badly in a prompt.
    new_classnames = {
        "airplanes": "airplane",
        "Faces": "face",
        "Leopards": "leopard",
        "Motorbikes": "motorbike",
    }
