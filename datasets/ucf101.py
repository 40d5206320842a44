"""UCF101 middle frames (CoOp's split, ``split_zhou_UCF101.json``)."""

import os
import re

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from .common import (
    Layout,
    Split,
    fewshot_and_subsample,
    make_datum,
    read_or_create_split,
    split_trainval,
    subsample_setting,
)

LAYOUT = Layout(
    name="UCF101",
    folder="ucf101",
    contents=(
        "UCF-101-midframes/<Action_Name>/v_<ActionName>_g<gg>_c<cc>.jpg",
        "split_zhou_UCF101.json",
        "ucfTrainTestlist/ (only read without the json)",
    ),
)


def split_camel_case(action: str) -> str:
    """ "ApplyEyeMakeup" -> "Apply_Eye_Makeup", the frame folder name and class name CoOp uses."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(DatasetBase):
    """UCF101: 101 actions, one middle frame per video.

    Without the json, train/val come from ucfTrainTestlist/trainlist01.txt (20% held out per
    class) and test from testlist01.txt.
    """

    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before reading any files
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = os.path.join(self.dataset_dir, "UCF-101-midframes")
        self.split_path = os.path.join(self.dataset_dir, "split_zhou_UCF101.json")

        def create() -> tuple[Split, Split, Split]:
            class_file = os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")
            cname2lab = {}
            with open(LAYOUT.require(class_file, "class-index file")) as file:
                for line in file:
                    if line.strip():
                        label, action = line.split()
                        cname2lab[action] = int(label) - 1
            trainval = self.read_data(cname2lab, "trainlist01.txt")
            test = self.read_data(cname2lab, "testlist01.txt")
            return (*split_trainval(trainval), test)

        train, val, test = read_or_create_split(self.split_path, self.image_dir, LAYOUT, create)
        train, val, test = fewshot_and_subsample(self, cfg, LAYOUT, train, val, test)
        super().__init__(train_x=train, val=val, test=test)

    def read_data(self, cname2lab: dict[str, int], list_file: str) -> Split:
        """Read a list of ``<Action>/v_<Action>_gNN_cNN.avi [label]`` lines as frame Datum."""
        path = os.path.join(self.dataset_dir, "ucfTrainTestlist", list_file)
        items = []
        with open(LAYOUT.require(path, "train/test list")) as file:
            for line in file:
                if not line.strip():
                    continue
                action, video = line.split()[0].split("/")
                if action not in cname2lab:
                    raise ValueError(
                        f"UCF101: action {action!r} in {path} is not listed in classInd.txt; "
                        f"re-download ucfTrainTestlist as described in {LAYOUT.doc}."
                    )
                classname = split_camel_case(action)
                impath = os.path.join(self.image_dir, classname, video.replace(".avi", ".jpg"))
                items.append(make_datum(impath, cname2lab[action], classname, LAYOUT))
        return items
