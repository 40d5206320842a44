"""TinyWorld: 64 coloured shapes ("red circle", ...) in CoOp's Caltech101-style layout.

The images come from the project's own generator (``datasets/tinyworld_world.py``, the
*downstream* domain); when ``<DATASET.ROOT>/tinyworld/`` is missing it is generated there first
(a few seconds; safe when several runs start at once). Base classes are the first 32 labels
(blue, green, orange and pink shapes), new classes the other 32.
"""

from dassl.data.datasets import DATASET_REGISTRY

from experiments.declarations import SELF_GENERATING, Dataset, Layout, Templates

from . import tinyworld_world as world
from .base import SplitDataset
from .common import Split, read_split

# The generator (tinyworld_world.py) writes the folder, the images and the split file named here.
DATASET = Dataset(
    name="tinyworld",
    display="TinyWorld",
    column=16,
    layout=Layout(
        name="TinyWorld",
        folder="tinyworld",
        contents=("images/<class>/image_*.png", "split_zhou_TinyWorld.json"),
        images="images",
        split_file="split_zhou_TinyWorld.json",
    ),
    templates=Templates(),  # DEFAULT_TEMPLATE, "a photo of a {}.", for ProGrad, CoOp and KgCoOp
    groups=(SELF_GENERATING,),
)


@DATASET_REGISTRY.register()
class TinyWorld(SplitDataset):
    """TinyWorld: 20 train, 4 val and 30 test images per class; generated when missing."""

    declaration = DATASET

    def locate(self, cfg_root: str) -> str:
        """``<DATASET.ROOT>/tinyworld``, generated first when it is missing."""
        return str(world.ensure_tinyworld(cfg_root))

    def read_splits(self) -> tuple[Split, Split, Split]:
        """The generated split file (it is never made here)."""
        split_path = self.layout.require(self.split_path, "split file")
        return read_split(split_path, self.image_dir, self.layout)
