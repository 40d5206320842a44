"""SUN397 (CoOp's split, ``split_zhou_SUN397.json``)."""

import os

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import FEWSHOT, XD_TARGET, Dataset, Layout, SplitSizes, Templates

from .base import SplitDataset
from .common import Split, make_datum, read_lines, split_trainval

DATASET = Dataset(
    name="sun397",
    display="SUN397",
    column=8,
    layout=Layout(
        name="SUN397",
        folder="sun397",
        contents=(
            "SUN397/<letter>/<scene>[/<sub-type>]/sun_*.jpg",
            "ClassName.txt",
            "Training_01.txt",
            "Testing_01.txt",
            "split_zhou_SUN397.json",
        ),
        images="SUN397",
        split_file="split_zhou_SUN397.json",
        published=SplitSizes(classes=397, train=15880, val=3970, test=19850),
    ),
    templates=Templates(),  # DEFAULT_TEMPLATE, "a photo of a {}.", for ProGrad, CoOp and KgCoOp
    groups=(FEWSHOT, XD_TARGET),
)


@DATASET_REGISTRY.register()
class SUN397(SplitDataset):
    """SUN397: 397 scene classes, e.g. "/a/apse/indoor" is named "indoor apse".

    Without the json, train/val come from partition 1's Training_01.txt (20% held out per
    class) and test from Testing_01.txt.
    """

    declaration = DATASET

    def create_split(self) -> tuple[Split, Split, Split]:
        """Hold out 20% of each class of Training_01.txt for validation; test is Testing_01.txt."""
        classname_file = os.path.join(self.dataset_dir, "ClassName.txt")
        # Lines look like "/a/abbey"; the label is the line's position.
        classnames = [
            line[1:] for _, line in read_lines(classname_file, self.layout, "class-name file")
        ]
        cname2lab = {classname: label for label, classname in enumerate(classnames)}
        trainval = self.read_data(cname2lab, "Training_01.txt")
        test = self.read_data(cname2lab, "Testing_01.txt")
        return (*split_trainval(trainval), test)

    def read_data(self, cname2lab: dict[str, int], list_file: str) -> Split:
        """Read a partition list of ``/<letter>/<scene>[/<sub-type>]/<image>`` lines."""
        path = os.path.join(self.dataset_dir, list_file)
        items = []
        for _, line in read_lines(path, self.layout, "partition file"):
            image_name = line[1:]  # drop the leading "/"
            folder = os.path.dirname(image_name)
            if folder not in cname2lab:
                raise ValueError(
                    f"SUN397: {folder!r} in {path} is not listed in ClassName.txt; "
                    f"re-download the partitions as described in {self.layout.doc}."
                )
            # Drop the first-letter folder and put qualifiers such as "indoor" first.
            classname = " ".join(folder.split("/")[1:][::-1])
            impath = os.path.join(self.image_dir, image_name)
            items.append(make_datum(impath, cname2lab[folder], classname, self.layout))
        return items
