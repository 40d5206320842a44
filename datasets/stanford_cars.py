"""Stanford Cars (CoOp's split, ``split_zhou_StanfordCars.json``)."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from .common import (
    Layout,
    Split,
    SplitSizes,
    fewshot_and_subsample,
    make_datum,
    read_or_create_split,
    split_trainval,
    subsample_setting,
)

LAYOUT = Layout(
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
)


@DATASET_REGISTRY.register()
class StanfordCars(DatasetBase):
    """Stanford Cars: 196 make/model/year classes, named "<year> <make> <model>".

    Unlike the other datasets, the json's paths are relative to the dataset folder
    (``cars_train/00001.jpg``), as in CoOp. Without the json the split is built from the devkit
    ``.mat`` files (needs scipy).
    """

    layout = LAYOUT
    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before reading any files
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.split_path = os.path.join(self.dataset_dir, LAYOUT.split_file)

        def create() -> tuple[Split, Split, Split]:
            meta_file = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
            train_file = os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat")
            test_file = os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat")
            trainval = self.read_data("cars_train", train_file, meta_file)
            test = self.read_data("cars_test", test_file, meta_file)
            return (*split_trainval(trainval), test)

        train, val, test = read_or_create_split(self.split_path, self.dataset_dir, LAYOUT, create)
        train, val, test = fewshot_and_subsample(self, cfg, LAYOUT, train, val, test)
        super().__init__(train_x=train, val=val, test=test)

    def read_data(self, image_folder: str, anno_file: str, meta_file: str) -> Split:
        """Read a devkit annotation ``.mat`` file into Datum with "<year> <make> <model>" names."""
        LAYOUT.require(anno_file, "annotation file")
        LAYOUT.require(meta_file, "class-name file")
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
            items.append(make_datum(impath, label, classname, LAYOUT))
        return items
