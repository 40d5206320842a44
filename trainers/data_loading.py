"""Dassl's data loaders, with an image that cannot be read named in a clear error.

Dassl's ``DatasetWrapper`` lets PIL's error through, so a damaged image in the middle of a split
(the loaders open one image per split when they are built) stopped a run with a traceback from a
DataLoader worker that does not say which file it was. ``DataManager`` takes a dataset wrapper,
so ours names the file and the fix, and the trainers build their loaders with it.
"""

from __future__ import annotations

from dassl.data import DataManager
from dassl.data.data_manager import DatasetWrapper

from datasets.common import unreadable_image


class ReadableImagesWrapper(DatasetWrapper):
    """Dassl's DatasetWrapper; an image that does not decode raises a ValueError naming it."""

    def __getitem__(self, index: int) -> dict:
        try:
            return super().__getitem__(index)
        except (OSError, SyntaxError) as error:  # what PIL raises on damaged files
            name = self.cfg.DATASET.NAME
            problem = f"{type(error).__name__}: {error}"
            impath = self.data_source[index].impath
            raise unreadable_image(name, impath, problem, f"DATASETS.md#{name.lower()}") from None


class DataLoadingMixin:
    """``build_data_loader`` for Dassl trainers, with :class:`ReadableImagesWrapper`."""

    def build_data_loader(self) -> None:
        """Dassl's ``SimpleTrainer.build_data_loader``: the same attributes, our wrapper."""
        dm = DataManager(self.cfg, dataset_wrapper=ReadableImagesWrapper)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm
