"""UCF101 middle frames (CoOp's split, ``split_zhou_UCF101.json``)."""

import os
import re

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from yacs.config import CfgNode

from .common import (
    Layout,
    Split,
    SplitSizes,
    fewshot_and_subsample,
    make_datum,
    read_lines,
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
    images="UCF-101-midframes",
    split_file="split_zhou_UCF101.json",
    published=SplitSizes(classes=101, train=7639, val=1898, test=3783),
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

    layout = LAYOUT
    dataset_dir = LAYOUT.folder

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before reading any files
        self.dataset_dir = LAYOUT.dataset_dir(cfg.DATASET.ROOT)
        self.image_dir = LAYOUT.image_dir(self.dataset_dir)
        self.split_path = os.path.join(self.dataset_dir, LAYOUT.split_file)

        def create() -> tuple[Split, Split, Split]:
            class_file = os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")
            cname2lab = {}
            for number, line in read_lines(class_file, LAYOUT, "class-index file"):
                label, _, action = line.partition(" ")
                if not label.isdigit() or not action.strip():
                    raise LAYOUT.damaged(
                        class_file, f"line {number}, {line[:80]!r}, is not '<label> <Action>'"
                    )
                cname2lab[action.strip()] = int(label) - 1
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
        for number, line in read_lines(path, LAYOUT, "train/test list"):
            action, _, video = line.split()[0].partition("/")
            if not video:
                raise LAYOUT.damaged(
                    path, f"line {number}, {line[:80]!r}, is not '<Action>/<video>.avi'"
                )
            if action not in cname2lab:
                raise ValueError(
                    f"UCF101: action {action!r} in {path} is not listed in classInd.txt; "
                    f"re-download ucfTrainTestlist as described in {LAYOUT.doc}."
                )
            classname = split_camel_case(action)
            impath = os.path.join(self.image_dir, classname, video.replace(".avi", ".jpg"))
            items.append(make_datum(impath, cname2lab[action], classname, LAYOUT))
        return items
