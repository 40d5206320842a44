"""Stanford Cars (CoOp's split, ``split_zhou_StanfordCars.json``)."""

import os

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset
from .common import Split, make_datum, split_trainval

DATASET = Dataset(
    name="stanford_cars",
    display="StanfordCars",
    column=4,
    layout=Layout(
        name="StanfordCars",
        folder="stanford_cars",
        contents=(
            "cars_train/<id>.jpg",
            "cars_test/<id>.jpg",
            "devkit/cars_meta.mat",
            "devkit/cars_train_annos.mat",
            "cars_test_annos_withlabels.mat",
            "split_zhou_StanfordCars.json",
        ),
        split_file="split_zhou_StanfordCars.json",
        published=SplitSizes(classes=196, train=6509, val=1635, test=8041),
    ),
    templates=Templates(),  # DEFAULT_TEMPLATE, "a photo of a {}.", for ProGrad, CoOp and KgCoOp
    groups=(FEWSHOT, XD_TARGET),
)


@DATASET_REGISTRY.register()
class StanfordCars(SplitDataset):
    """Stanford Cars: 196 make/model/year classes, named "<year> <make> <model>".

    Unlike the other datasets, the json's paths are relative to the dataset folder
    (``cars_train/00001.jpg``; the layout has no image folder), as in CoOp. Without the json the
    split is built from the devkit ``.mat`` files (needs scipy).
    """

    declaration = DATASET

    def create_split(self) -> tuple[Split, Split, Split]:
        """Hold out 20% of each class of the training annotations for validation."""
        meta_file = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        train_file = os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat")
        test_file = os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat")
        trainval = self.read_data("cars_train", train_file, meta_file)
        test = self.read_data("cars_test", test_file, meta_file)
        return (*split_trainval(trainval), test)

    def read_data(self, image_folder: str, anno_file: str, meta_file: str) -> Split:
        """Read a devkit annotation ``.mat`` file into Datum with "<year> <make> <model>" names."""
        self.layout.require(anno_file, "annotation file")
        self.layout.require(meta_file, "class-name file")
        from scipy.io import loadmat  # only needed when the split json is absent

        annotations = loadmat(anno_file)["annotations"][0]
        class_names = loadmat(meta_file)["class_names"][0]
        items = []
        for annotation in annotations:
            label = int(annotation["class"][0, 0]) - 1
            # Meta names end with the year ("AM General Hummer SUV 2000"); CoOp moves it first.
            *model, year = str(class_names[label][0]).split(" ")
            classname = " ".join([year, *model])
            impath = os.path.join(self.dataset_dir, image_folder, str(annotation["fname"][0]))
            items.append(make_datum(impath, label, classname, self.layout))
        return items
