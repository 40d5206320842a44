"""The shared base of the dataset classes: a dataset module declares, the base builds.

A dataset module holds ``DATASET = Dataset(...)`` (its names, layout, templates and groups; see
:mod:`experiments.declarations`) and one registered class that names it and says how its images
are read:

- :class:`SplitDataset`, the 11 trainable CoOp datasets (and TinyWorld): CoOp's split file,
  made from the raw annotations by ``create_split`` when it is absent; then the few-shot sample
  and the base/new half, as CoOp does, in CoOp's order (the same seed picks the same images);
- :class:`TestSet`, the ImageNet variants: test only, read by ``read_entries``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

from dassl.data.datasets import DatasetBase
from yacs.config import CfgNode

from experiments.declarations import Dataset, Layout

from .common import (
    Split,
    SplitEntries,
    check_images_readable,
    fewshot_and_subsample,
    read_and_split_data,
    read_or_create_split,
    subsample_setting,
    to_data,
)


class DeclaredDataset(DatasetBase):
    """A Dassl dataset described by its module's declaration.

    A subclass sets ``declaration`` (its module's ``DATASET``); ``layout`` and the class's
    ``dataset_dir`` (the folder name, as in CoOp's classes) follow from it. An instance's
    ``dataset_dir`` is the resolved folder and ``image_dir`` the folder its image paths start from.
    """

    declaration: ClassVar[Dataset]
    layout: ClassVar[Layout]
    dataset_dir: str
    image_dir: str

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        declaration = cls.__dict__.get("declaration")
        if declaration is not None:
            cls.layout = declaration.layout
            cls.dataset_dir = declaration.layout.folder

    def locate(self, cfg_root: str) -> str:
        """The dataset folder under ``DATASET.ROOT``, checked to exist."""
        return self.layout.dataset_dir(cfg_root)

    def _locate_folders(self, cfg: CfgNode) -> None:
        self.dataset_dir = self.locate(cfg.DATASET.ROOT)
        self.image_dir = self.layout.image_dir(self.dataset_dir)


class SplitDataset(DeclaredDataset):
    """A trainable dataset with CoOp's train/val/test split, few-shot sampling and base/new halves.

    By default the split is CoOp's ``split_zhou_*.json`` (``layout.split_file``); when it is
    absent, ``create_split`` builds it and it is saved there. The default ``create_split`` splits
    ``image_dir/<class>/<image>`` folders per class (CoOp's rule), leaving out ``ignored`` class
    folders and renaming folders by ``new_classnames``. A dataset with another source of its
    splits overrides ``read_splits``.
    """

    ignored: ClassVar[tuple[str, ...]] = ()  # class folders to leave out
    new_classnames: ClassVar[Mapping[str, str]] = {}  # folder name -> class name in prompts

    def __init__(self, cfg: CfgNode) -> None:
        subsample_setting(cfg)  # fail on a bad value before reading (or writing) any files
        self._locate_folders(cfg)
        train, val, test = self.read_splits()
        train, val, test = fewshot_and_subsample(self, cfg, self.layout, train, val, test)
        # A dataset without a validation split (ImageNet) validates on its test split, as in CoOp.
        super().__init__(train_x=train, val=test if val is None else val, test=test)

    @property
    def split_path(self) -> str:
        """CoOp's split file, ``<dataset_dir>/<layout.split_file>``."""
        return os.path.join(self.dataset_dir, self.layout.split_file)

    def read_splits(self) -> tuple[Split, Split | None, Split]:
        """The full train, val (None where there is none) and test splits."""
        return read_or_create_split(self.split_path, self.image_dir, self.layout, self.create_split)

    def create_split(self) -> tuple[Split, Split, Split]:
        """Build the split from the raw data when the split file is absent (uses ``random``)."""
        return read_and_split_data(
            self.image_dir, self.layout, ignored=self.ignored, new_cnames=self.new_classnames
        )


class TestSet(DeclaredDataset):
    """A test-only dataset: every image is a test image (also exposed as train_x, which Dassl
    needs); DATASET.NUM_SHOTS and DATASET.SUBSAMPLE_CLASSES do not apply, as in CoOp.

    A subclass reads its images with ``read_entries`` (``tools/check_data.py`` calls it too).
    """

    def __init__(self, cfg: CfgNode) -> None:
        self._locate_folders(cfg)
        data = to_data(self.read_entries(self.dataset_dir)["test"], self.layout)
        check_images_readable(self.layout, data)
        super().__init__(train_x=data, test=data)

    @classmethod
    def read_entries(cls, dataset_dir: str) -> SplitEntries:
        """``{"test": [(absolute image path, label, class name), ...]}`` for the dataset folder."""
        raise NotImplementedError(f"{cls.__name__} must define read_entries(dataset_dir)")
