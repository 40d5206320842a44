"""UCF101 middle frames (CoOp's split, ``split_zhou_UCF101.json``)."""

import os
import re

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset
from .common import Split, make_datum, read_lines, split_trainval

DATASET = Dataset(
    name="ucf101",
    display="UCF101",
    column=11,
    layout=Layout(
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
    ),
    templates=Templates(
        prograd="a photo of a person doing {}.",
        coop="a photo of a person doing {}.",
        kgcoop="a photo of a person doing {}.",
    ),
    groups=(FEWSHOT, XD_TARGET),
)


def split_camel_case(action: str) -> str:
    """ "ApplyEyeMakeup" -> "Apply_Eye_Makeup", the frame folder name and class name CoOp uses."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(SplitDataset):
    """UCF101: 101 actions, one middle frame per video.

    Without the json, train/val come from ucfTrainTestlist/trainlist01.txt (20% held out per
    class) and test from testlist01.txt.
    """

    declaration = DATASET

    def create_split(self) -> tuple[Split, Split, Split]:
        """Hold out 20% of each class of trainlist01.txt for validation; test is testlist01.txt."""
        class_file = os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")
        cname2lab = {}
        for number, line in read_lines(class_file, self.layout, "class-index file"):
            label, _, action = line.partition(" ")
            if not label.isdigit() or not action.strip():
                raise self.layout.damaged(
                    class_file, f"line {number}, {line[:80]!r}, is not '<label> <Action>'"
                )
            cname2lab[action.strip()] = int(label) - 1
        trainval = self.read_data(cname2lab, "trainlist01.txt")
        test = self.read_data(cname2lab, "testlist01.txt")
        return (*split_trainval(trainval), test)

    def read_data(self, cname2lab: dict[str, int], list_file: str) -> Split:
        """Read a list of ``<Action>/v_<Action>_gNN_cNN.avi [label]`` lines as frame Datum."""
        path = os.path.join(self.dataset_dir, "ucfTrainTestlist", list_file)
        items = []
        for number, line in read_lines(path, self.layout, "train/test list"):
            action, _, video = line.split()[0].partition("/")
            if not video:
                raise self.layout.damaged(
                    path, f"line {number}, {line[:80]!r}, is not '<Action>/<video>.avi'"
                )
            if action not in cname2lab:
                raise ValueError(
                    f"UCF101: action {action!r} in {path} is not listed in classInd.txt; "
                    f"re-download ucfTrainTestlist as described in {self.layout.doc}."
                )
            classname = split_camel_case(action)
            impath = os.path.join(self.image_dir, classname, video.replace(".avi", ".jpg"))
            items.append(make_datum(impath, cname2lab[action], classname, self.layout))
        return items
