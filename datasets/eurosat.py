"""EuroSAT (CoOp's split, ``split_zhou_EuroSAT.json``)."""

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset

DATASET = Dataset(
    name="eurosat",
    display="EuroSAT",
    column=10,
    layout=Layout(
        name="EuroSAT",
        folder="eurosat",
        contents=("2750/<class>/<class>_*.jpg", "split_zhou_EuroSAT.json"),
        images="2750",
        split_file="split_zhou_EuroSAT.json",
        published=SplitSizes(classes=10, train=13500, val=5400, test=8100),
    ),
    templates=Templates(
        prograd="a centered satellite photo of {}.",
        coop="a centered satellite photo of {}.",
        kgcoop="a centered satellite photo of {}.",
    ),
    groups=(FEWSHOT, XD_TARGET),
)


@DATASET_REGISTRY.register()
class EuroSAT(SplitDataset):
    """EuroSAT: 10 satellite land-use classes; the split is made if the json is absent."""

    declaration = DATASET
    # The folder names are CamelCase land-use codes; CoOp prompts with these descriptions.
    new_classnames = {
        "AnnualCrop": "Annual Crop Land",
        "Forest": "Forest",
        "HerbaceousVegetation": "Herbaceous Vegetation Land",
        "Highway": "Highway or Road",
        "Industrial": "Industrial Buildings",
        "Pasture": "Pasture Land",
        "PermanentCrop": "Permanent Crop Land",
        "Residential": "Residential Buildings",
        "River": "River",
        "SeaLake": "Sea or Lake",
    }
