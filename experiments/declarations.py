"""The vocabulary of declarations: what a method or a dataset says about itself, once.

Each trainer module (``trainers/<method>.py``) holds ``METHOD = Method(...)`` and each dataset
module (``datasets/<name>.py``) ``DATASET = Dataset(...)``; everything else reads them through
:mod:`experiments.catalog`: ``train.py``'s config keys and registrations, the run scripts and
sweeps (:mod:`experiments.protocols`), the tables (:mod:`experiments.results`), the zero-shot
templates and ``docs/methods.md``.

A declaration is data: it may use literals and the names defined here, nothing else, so the
catalog can read it without importing torch or Dassl (the scripts start in milliseconds).
Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# ----------------------------------------------------------------------------------------------
# Methods

EpochRule = Callable[[str, int], int]  # (dataset, shots) -> epochs
LambdaRule = Callable[[str, str, int], float]  # (protocol, dataset, shots) -> λ


def coop_fewshot_epochs(dataset: str, shots: int) -> int:
    """CoOp's few-shot epochs: 1 shot 50, 2-4 shots 100, more 200; ImageNet always 50."""
    if dataset == "imagenet" or shots <= 1:
        return 50
    return 100 if shots <= 4 else 200


def coop_base2new_epochs(dataset: str, shots: int) -> int:
    """ProGrad's official base2new scripts: rn50_ep100, 100 epochs (ImageNet: rn50_ep50, 50)."""
    return 50 if dataset == "imagenet" else 100


@dataclass(frozen=True)
class FixedEpochs:
    """The same number of epochs for every dataset and shot count (e.g. KgCoOp's 100)."""

    epochs: int

    def __call__(self, dataset: str, shots: int) -> int:
        return self.epochs


# ProGrad's README: λ = 0.8 for 8 and 16 shots on these three, 1.0 everywhere else.
LAMBDA_0_8_DATASETS = ("oxford_flowers", "dtd", "eurosat")


def paper_lambda(protocol: str, dataset: str, shots: int) -> float:
    """ProGrad's λ: 0.8 at 8/16 shots on Flowers102, DTD, EuroSAT in the few-shot and xd
    protocols; 1.0 otherwise and in base-to-new (the official base2new scripts)."""
    if protocol in ("fewshot", "xd") and shots >= 8 and dataset in LAMBDA_0_8_DATASETS:
        return 0.8
    return 1.0


@dataclass(frozen=True)
class Values:
    """The values a config key takes, beyond the type of its default (checked by train.py
    before anything is built or written; trainers/inputs.py ``check_values``).

    Bounds and choices apply to the value, or to each item of a list or tuple value. ``Values()``
    says that any value of the default's type is fine (e.g. a path, checked elsewhere).
    """

    minimum: float | None = None  # the smallest value allowed
    above: float | None = None  # values must be greater than this
    maximum: float | None = None  # the largest value allowed
    choices: tuple = ()  # the only values (or items) allowed
    types: tuple[str, ...] = ()  # for a key declared None: the types it takes ("bool", "str")
    length: int | None = None  # a list or tuple value: its number of items
    note: str = ""  # what special values mean, e.g. "-1: all images"

    def describe(self, default: object = None) -> str:
        """What is allowed, in words, e.g. "an integer >= 1" or "one of fp16, fp32, amp"."""
        item = default[0] if isinstance(default, (list, tuple)) and default else default
        kind = {bool: "True or False", int: "an integer", float: "a number", str: "text"}.get(
            type(item), "a value"
        )
        if self.types:
            kind = " or ".join(TYPE_WORDS.get(name, name) for name in self.types)
        bounds = []
        if self.minimum is not None and self.maximum is not None:
            bounds.append(f"in [{self.minimum}, {self.maximum}]")
        elif self.minimum is not None:
            bounds.append(f">= {self.minimum}")
        elif self.maximum is not None:
            bounds.append(f"<= {self.maximum}")
        if self.above is not None:
            bounds.append(f"> {self.above}")
        text = f"{kind} {' and '.join(bounds)}".strip()
        if self.choices:
            text = "one of " + ", ".join(str(choice) for choice in self.choices)
        if isinstance(default, (list, tuple)):
            count = f"{self.length} " if self.length is not None else ""
            text = f"a list of {count}items, each {text}"
        return f"{text} ({self.note})" if self.note else text


TYPE_WORDS = {"bool": "True or False", "str": "text", "NoneType": "None", "int": "an integer"}


@dataclass(frozen=True)
class ConfigKey:
    """A config key a method adds to Dassl's defaults: ``train.py`` declares exactly these."""

    key: str  # full yacs path, e.g. "TRAINER.COOP.N_CTX"
    default: object  # None lets yacs take any type; ``values.types`` says which
    comment: str  # one line: what it does and its values
    values: Values | None = None  # the values it takes (train.py refuses others); None: any


@dataclass(frozen=True)
class PromptKeys:
    """The prompt options a method takes, passed on every command (they name the run)."""

    prefix: str  # config node of the keys: TRAINER.COOP or TRAINER.COCOOP
    default_nctx: int
    csc_and_position: bool  # CoOp's CSC and CLASS_TOKEN_POSITION exist


COOP_PROMPT = PromptKeys("TRAINER.COOP", 16, True)


@dataclass(frozen=True)
class Defaults:
    """A method's defaults in one protocol."""

    cfg: str  # config name in the method's config folder (scripts take it as CFG)
    shots: int | None = None  # None: given per run (few-shot)
    epochs: EpochRule | None = None  # None: the method has no epochs (linear probe)
    imagenet_cfg: str | None = None  # ImageNet's own config, where it has one


# The protocol defaults that several methods share (their official scripts), by name.
COOP_PROTOCOL_DEFAULTS = {
    "fewshot": Defaults("rn50", epochs=coop_fewshot_epochs),
    "base2new": Defaults(
        "rn50_ep100", shots=4, epochs=coop_base2new_epochs, imagenet_cfg="rn50_ep50"
    ),
    "xd": Defaults("rn50", shots=4),  # ProGrad's official eval.sh: 4 shots, rn50, 50 epochs
}
COCOOP_PROTOCOL_DEFAULTS = {  # the CoOp repository's scripts/cocoop/
    # few-shot: not in CoCoOp's paper; its own config (batch 1) and 10 epochs at every shot count.
    "fewshot": Defaults("vit_b16_c4_ep10_batch1_ctxv1", epochs=FixedEpochs(10)),
    "base2new": Defaults("vit_b16_c4_ep10_batch1_ctxv1", shots=16, epochs=FixedEpochs(10)),
    "xd": Defaults("vit_b16_c4_ep10_batch1_ctxv1", shots=16),
}


def maple_fewshot_epochs(dataset: str, shots: int) -> int:
    """MaPLe's configs: 5 epochs; 2 on ImageNet (the cross-dataset source, as its own config).

    vit_b16_c2_ep5_batch4_2ctx trains 5 epochs, vit_b16_c2_ep5_batch4_2ctx_cross_datasets (on
    ImageNet, for cross-dataset transfer and domain generalisation) 2."""
    return 2 if dataset == "imagenet" else 5


MAPLE_PROTOCOL_DEFAULTS = {  # MaPLe's scripts/maple/: ViT-B/16, 16 shots, batch 4
    "fewshot": Defaults("vit_b16_c2_ep5_batch4_2ctx", epochs=maple_fewshot_epochs),
    "base2new": Defaults("vit_b16_c2_ep5_batch4_2ctx", shots=16, epochs=FixedEpochs(5)),
    "xd": Defaults("vit_b16_c2_ep5_batch4_2ctx_cross_datasets", shots=16),
}
MAPLE_PROMPT = PromptKeys("TRAINER.MAPLE", 2, False)  # the c2 of vit_b16_c2_ep5_batch4_2ctx


@dataclass(frozen=True)
class Method:
    """One row of the paper's tables: what runs, with which options, its keys and defaults.

    The xd protocol trains with the few-shot protocol on ImageNet, so its epochs and λ are the
    few-shot ones; its Defaults give only the CFG and shots.
    """

    name: str  # directory and table-row name
    trainer: str  # the registered Dassl trainer it runs
    summary: str  # one line for docs/methods.md
    row: int  # position of its row in the tables (the paper's order)
    config_folder: str  # configs/trainers/<config_folder>/<CFG>.yaml
    defaults: Mapping[str, Defaults]  # per protocol it supports
    config_keys: tuple[ConfigKey, ...] = ()  # the keys it adds to the config (owned here)
    fixed_opts: tuple[str, ...] = ()  # KEY VALUE options on every command of the method
    prompt: PromptKeys | None = COOP_PROMPT  # None: no prompt options
    lambda_rule: LambdaRule | None = None  # ProGrad's λ per run; None: no LOSS.LAMBDA
    # KEY VALUE options on the training commands of one dataset (dataset -> options).
    dataset_opts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # What an evaluation loads: <run>/<model_name>/model.pth.tar-<epoch>, the epoch being
    # checkpoint_epoch, or the training epochs when None.
    model_name: str = "prompt_learner"
    checkpoint_epoch: int | None = None
    # The dataset group (Dataset.groups) its xd_test targets must belong to (None: any target),
    # and why.
    xd_target_group: str | None = None
    xd_targets_reason: str = ""

    @property
    def has_lambda(self) -> bool:
        """Whether it takes ProGrad's LOSS.LAMBDA."""
        return self.lambda_rule is not None


# ----------------------------------------------------------------------------------------------
# Datasets

# The groups a dataset can belong to (Dataset.groups); the protocols derive their lists from them.
FEWSHOT = "fewshot"  # the 11 datasets of the few-shot and base-to-new tables
XD_SOURCE = "xd_source"  # the training set of domain generalisation and cross-dataset transfer
DG_TARGET = "dg_target"  # domain generalisation targets (ImageNet's variants)
XD_TARGET = "xd_target"  # cross-dataset transfer targets
SELF_GENERATING = "self_generating"  # writes itself under DATASET.ROOT when missing
GROUPS = (FEWSHOT, XD_SOURCE, DG_TARGET, XD_TARGET, SELF_GENERATING)


@dataclass(frozen=True)
class SplitSizes:
    """A dataset's size as CoOp published it (CoOp, IJCV 2022, dataset table); None: no such split.

    ``tools/check_data.py`` compares a dataset on disk against these.
    """

    classes: int
    train: int | None
    val: int | None
    test: int


@dataclass(frozen=True)
class Layout:
    """Where a dataset lives under ``DATASET.ROOT``; used to load it, check it and explain errors.

    Attributes:
        name: Dassl registry name; its lower-cased form is the anchor of its DATASETS.md section.
        folder: the dataset folder under ``DATASET.ROOT`` (CoOp's ``dataset_dir``).
        contents: what the folder must hold, as shown in DATASETS.md.
        images: the image folder inside ``folder`` ("" for ``folder`` itself); the paths of the
            split file are relative to it.
        split_file: CoOp's ``split_zhou_*.json`` inside ``folder``; "" for datasets without one.
        class_file: the file inside ``folder`` that names the classes, for datasets that always
            need one ("" where the split file names them).
        published: CoOp's published sizes, None where there are none.
    """

    name: str
    folder: str
    contents: tuple[str, ...]
    images: str = ""
    split_file: str = ""
    class_file: str = ""
    published: SplitSizes | None = None

    @property
    def doc(self) -> str:
        return f"DATASETS.md#{self.name.lower()}"

    def missing(self, path: str, what: str) -> FileNotFoundError:
        """Build the error for a missing file or folder, naming it and the expected layout.

        Args:
            path: the path that does not exist.
            what: a few words saying what it is, e.g. "split file" or "image".
        """
        return FileNotFoundError(
            f"{self.name}: {what} not found: {path}. Expected layout under DATASET.ROOT: "
            f"{self.folder}/ with {', '.join(self.contents)}. Set it up as described in "
            f"{self.doc} (in the repository root), or point DATASET.ROOT at the folder that "
            f"contains {self.folder}/."
        )

    def require(self, path: str, what: str) -> str:
        """Return ``path`` if it exists, else raise ``missing(path, what)``."""
        if not os.path.exists(path):
            raise self.missing(path, what)
        return path

    def dataset_dir(self, cfg_root: str) -> str:
        """Resolve ``<DATASET.ROOT>/<folder>`` and check that it exists.

        Args:
            cfg_root: the value of ``DATASET.ROOT`` (``~`` is expanded).
        """
        root = os.path.abspath(os.path.expanduser(cfg_root))
        path = os.path.join(root, self.folder)
        if not os.path.isdir(path):
            raise self.missing(path, "dataset folder")
        return path

    def image_dir(self, dataset_dir: str) -> str:
        """The folder that the split file's image paths start from."""
        return os.path.join(dataset_dir, self.images) if self.images else dataset_dir

    def damaged(self, path: str, problem: str) -> ValueError:
        """Build the error for a file that is there but cannot be used, naming it and the fix.

        Args:
            path: the damaged file.
            problem: what is wrong with it, e.g. "line 3 is not '<wnid> <class name>'".
        """
        return ValueError(
            f"{self.name}: {path} is damaged or not the expected file: {problem}. Replace it "
            f"with the file described in {self.doc} (in the repository root)."
        )


DEFAULT_TEMPLATE = "a photo of a {}."


@dataclass(frozen=True)
class Templates:
    """A dataset's hand-crafted prompts ("{}" is the class name).

    Attributes:
        prograd: the official ProGrad template (class name last, so the words before "{}." can
            start the learned context): ProGrad's zero-shot teacher, the zero-shot CLIP rows,
            ``CTX_INIT True``.
        coop: CoOp's zero-shot template (CoOp's trainers/zsclip.py CUSTOM_TEMPLATES).
        kgcoop: KgCoOp's hand-crafted prompt, its teacher (the official code's CUSTOM_TEMPLATES).
    """

    prograd: str = DEFAULT_TEMPLATE
    coop: str = DEFAULT_TEMPLATE
    kgcoop: str = DEFAULT_TEMPLATE


@dataclass(frozen=True)
class Dataset:
    """One dataset: its names, where it lives, its prompts and the protocols it is in."""

    name: str  # configs/datasets/<name>.yaml and the run directories' dataset name
    display: str  # its column in the tables, e.g. "Flowers102"
    column: int  # position of its column in the tables (the paper's order)
    layout: Layout  # registry name (layout.name), folder, files, CoOp's published sizes
    templates: Templates = Templates()
    groups: tuple[str, ...] = ()  # of GROUPS: the protocols' dataset lists are derived from these
