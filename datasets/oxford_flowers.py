"""Oxford Flowers-102 (CoOp's split, ``split_zhou_OxfordFlowers.json``)."""

import os
import random
from collections import defaultdict

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset
from .common import Split, make_datum, read_json

DATASET = Dataset(
    name="oxford_flowers",
    display="Flowers102",
    column=5,
    layout=Layout(
        name="OxfordFlowers",
        folder="oxford_flowers",
        contents=(
            "jpg/image_<nnnnn>.jpg",
            "imagelabels.mat",
            "cat_to_name.json",
            "split_zhou_OxfordFlowers.json",
        ),
        images="jpg",
        split_file="split_zhou_OxfordFlowers.json",
        published=SplitSizes(classes=102, train=4093, val=1633, test=2463),
    ),
    templates=Templates(
        prograd="a type of flower, a photo of a {}.",
        coop="a photo of a {}, a type of flower.",
        kgcoop="a photo of a {}, a type of flower.",
    ),
    groups=(FEWSHOT, XD_TARGET),
)


@DATASET_REGISTRY.register()
class OxfordFlowers(SplitDataset):
    """Oxford Flowers-102: 102 flower species, named by ``cat_to_name.json``.

    Without the json, every class is split 50/20/30 into train/val/test from ``imagelabels.mat``
    (needs scipy).
    """

    declaration = DATASET

    def create_split(self) -> tuple[Split, Split, Split]:
        """Split each class's images 50/20/30 after a ``random.shuffle`` (CoOp's rule)."""
        layout = self.layout
        label_file = layout.require(os.path.join(self.dataset_dir, "imagelabels.mat"), "label file")
        lab2cname_file = os.path.join(self.dataset_dir, "cat_to_name.json")
        lab2cname = read_json(layout.require(lab2cname_file, "class-name file"))
        from scipy.io import loadmat  # only needed when the split json is absent

        labels = loadmat(label_file)["labels"][0]
        # Image i (1-based, "image_00001.jpg") has the i-th 1-based label.
        impaths_by_label: dict[int, list[str]] = defaultdict(list)
        for index, label in enumerate(labels):
            impath = os.path.join(self.image_dir, f"image_{index + 1:05d}.jpg")
            impaths_by_label[int(label)].append(impath)

        print("Splitting data into 50% train, 20% val, and 30% test")
        train, val, test = [], [], []
        for label, impaths in impaths_by_label.items():
            random.shuffle(impaths)
            n_train = round(len(impaths) * 0.5)
            n_val = round(len(impaths) * 0.2)
            if n_train == 0 or n_val == 0 or len(impaths) - n_train - n_val == 0:
                raise ValueError(
                    f"OxfordFlowers: class {label} has {len(impaths)} images in "
                    f"{label_file}, too few for a train/val/test split."
                )
            if str(label) not in lab2cname:
                raise ValueError(
                    f"OxfordFlowers: {lab2cname_file} has no name for label {label}; "
                    f"re-download it as described in {layout.doc}."
                )
            items = [make_datum(p, label - 1, lab2cname[str(label)], layout) for p in impaths]
            train.extend(items[:n_train])
            val.extend(items[n_train : n_train + n_val])
            test.extend(items[n_train + n_val :])
        return train, val, test
