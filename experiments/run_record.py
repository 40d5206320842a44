"""``run.json``: what a run is, written by ``train.py`` beside its ``log.txt``.

``train.py`` writes the record when a run starts (status "running") and again when it ends
("finished" with its test accuracy, or "failed"), through :func:`recorded_run`. The tables read it
with :func:`read_record` and file the run with :func:`classify_record`; run directories without
one (written by CoOp's or the official ProGrad code, or by earlier versions of this one) are still
classified from their path, as before.

The record names the backbone by its identity: the name for OpenAI's published weights, the name
and a content hash for a file (``MODEL.BACKBONE.PATH``), so that runs of different backbones never
share a table.

Standard library only; the config is a yacs ``CfgNode`` and the arguments are ``train.py``'s
argparse namespace, both read by attribute (no Dassl import).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.atomic import write_text

FORMAT_VERSION = 1
FILE_NAME = "run.json"
ROOT = Path(__file__).resolve().parents[1]  # the repository holding train.py
STATUSES = ("running", "finished", "failed")
PROTOCOLS = ("fewshot", "base2new", "xd", "zeroshot")
SUBSETS = ("all", "base", "new")
ZERO_SHOT_TRAINER = "ZeroshotCLIP"
# The protocol names of the tables (experiments/protocols.py's Setting.protocol) for ours.
TABLE_PROTOCOLS = {
    "fewshot": "fewshot",
    "zeroshot": "fewshot",
    "base2new": "base2new",
    "xd": "transfer",
}
HASH_CHUNK = 1 << 22


@dataclass(frozen=True)
class Backbone:
    """The CLIP model a run uses.

    Attributes:
        name: ``MODEL.BACKBONE.NAME``, e.g. "RN50" or "ViT-B/16".
        path: ``MODEL.BACKBONE.PATH`` as given, "" for OpenAI's published weights.
        sha256: hex digest of the file's content, "" without a file (or an unreadable one).
    """

    name: str
    path: str = ""
    sha256: str = ""

    @property
    def identity(self) -> str:
        """What separates tables: "RN50" for OpenAI's weights, "RN50 (file 0123456789ab)"."""
        if not self.path:
            return self.name
        return f"{self.name} (file {self.sha256[:12] or os.path.basename(self.path)})"


@dataclass(frozen=True)
class RunRecord:
    """What one run directory holds: the run's method, backbone, data, protocol and outcome.

    Attributes:
        method: the table row, e.g. "ProGrad" or "KD" (:func:`method_name`).
        trainer: the Dassl trainer, ``TRAINER.NAME``.
        backbone: the CLIP model, see :class:`Backbone`.
        dataset: the ``configs/datasets`` name, e.g. "caltech101".
        subset: ``DATASET.SUBSAMPLE_CLASSES``: "all", "base" or "new".
        shots: shots per class of the training set; for an evaluation of another run's model
            (``--model-dir``) that run's, when its run.json or config.yaml says them.
        seed: ``SEED`` (negative: not seeded).
        protocol: "fewshot", "base2new", "xd" or "zeroshot" (:func:`infer_protocol`).
        config: the ``--config-file`` stem, e.g. "rn50_ep50".
        config_digest: sha256 of the full config (``cfg.dump()``).
        code_version: git commit of the code, "+dirty" with tracked changes, or "unknown".
        status: "running", "finished" or "failed".
        accuracy: the final test accuracy (%) of a finished run, None when it has none.
        started: when the run (its first attempt, for a resumed run) started, ISO 8601.
        finished: when it last finished or failed, ISO 8601; None while running.
        eval_only: the run only evaluates (``--eval-only``): it trains nothing.
        model_dir: the run whose model it evaluates (``--model-dir``), "" if none.
        format_version: the layout of run.json; :func:`read_record` reads only its own.
    """

    method: str
    trainer: str
    backbone: Backbone
    dataset: str
    subset: str
    shots: int
    seed: int
    protocol: str
    config: str
    config_digest: str
    code_version: str
    status: str
    accuracy: float | None
    started: str
    finished: str | None = None
    eval_only: bool = False
    model_dir: str = ""
    format_version: int = FORMAT_VERSION

    def same_run(self, other: RunRecord) -> bool:
        """Whether ``other`` records the same run (a resumed run, a re-evaluation): all that
        says what the run is agrees; outcome, timestamps, code and config digest may differ."""
        ignored = ("status", "accuracy", "started", "finished", "code_version", "config_digest")
        return all(
            getattr(self, field.name) == getattr(other, field.name)
            for field in dataclasses.fields(self)
            if field.name not in ignored
        )


# ----------------------------------------------------------------------------------------------
# Writing and reading run.json


def now() -> str:
    """The current local time, ISO 8601 with its UTC offset, to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def record_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/run.json``."""
    return Path(run_dir) / FILE_NAME


def _to_json(record: RunRecord) -> str:
    return json.dumps(dataclasses.asdict(record), sort_keys=True, indent=2) + "\n"


def _set_aside(path: Path, reason: str) -> Path:
    """Rename ``path`` to ``<path>-<timestamp>``, as Dassl keeps an older ``log.txt``."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    target = path.with_name(f"{path.name}-{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}-{stamp}-{counter}")
        counter += 1
    os.replace(path, target)
    print(f"Note: {path} {reason}; kept as {target}")
    return target


def write_record(run_dir: str | os.PathLike, record: RunRecord) -> RunRecord:
    """Write ``<run_dir>/run.json`` atomically; return the record as written.

    The file is written to a temporary file in ``run_dir`` and renamed over run.json, so a reader
    never sees half of it. A run.json of the same run (:meth:`RunRecord.same_run`: a resumed run,
    a re-evaluation) is updated and keeps its first ``started``; one of another run, or one that
    cannot be read, is renamed to ``run.json-<timestamp>`` first, never lost.

    Raises:
        OSError: ``run_dir`` is not a writable folder.
    """
    path = record_path(run_dir)
    if path.exists():
        previous = read_record(run_dir)
        if previous is not None and previous.same_run(record):
            record = dataclasses.replace(record, started=previous.started)
        else:
            reason = "is unreadable" if previous is None else "records another run"
            _set_aside(path, reason)
    write_text(path, _to_json(record), "the run's record")
    return record


# (field, accepted types) of version 1; "backbone" is checked on its own.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "method": (str,),
    "trainer": (str,),
    "dataset": (str,),
    "subset": (str,),
    "shots": (int,),
    "seed": (int,),
    "protocol": (str,),
    "config": (str,),
    "config_digest": (str,),
    "code_version": (str,),
    "status": (str,),
    "accuracy": (int, float, type(None)),
    "started": (str,),
    "finished": (str, type(None)),
    "eval_only": (bool,),
    "model_dir": (str,),
}


def _parse(data: Any) -> RunRecord:
    """The record of a decoded run.json; ValueError saying what is wrong otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"it holds a {type(data).__name__}, not an object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"format_version is {version!r}, this code reads {FORMAT_VERSION} (update the code)"
        )
    values: dict[str, Any] = {}
    for name, types in _FIELD_TYPES.items():
        if name not in data:
            raise ValueError(f"it has no {name!r}")
        value = data[name]
        # bool is an int in Python; only eval_only may be one.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"{name!r} is {value!r}")
        values[name] = value
    for name, allowed in (("status", STATUSES), ("protocol", PROTOCOLS), ("subset", SUBSETS)):
        if values[name] not in allowed:
            raise ValueError(f"{name!r} is {values[name]!r}, not one of {', '.join(allowed)}")
    backbone = data.get("backbone")
    fields = ("name", "path", "sha256")
    if not isinstance(backbone, dict) or not all(
        isinstance(backbone.get(key), str) for key in fields
    ):
        raise ValueError(f"'backbone' is {backbone!r}, not {{name, path, sha256}} strings")
    if values["accuracy"] is not None:
        values["accuracy"] = float(values["accuracy"])
    return RunRecord(backbone=Backbone(**{key: backbone[key] for key in fields}), **values)


def read_record(run_dir: str | os.PathLike, problems: list[str] | None = None) -> RunRecord | None:
    """The record of a run directory, or None when it has none or it cannot be read.

    Never raises for a bad file: a damaged run.json, or one of another format, gives None and a
    line appended to ``problems`` (the tables' problems list), and the caller falls back to the
    directory's layout.
    """
    path = record_path(run_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        problem = f"cannot read it ({error})"
    else:
        try:
            return _parse(json.loads(text))
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            problem = str(error)
    if problems is not None:
        problems.append(
            f"damaged or unknown run.json, the run is read from its path: {path}: {problem}"
        )
    return None


# ----------------------------------------------------------------------------------------------
# Building the record from train.py's config and arguments


def method_name(trainer_name: str, cfg: Any) -> str:
    """The table row a run belongs to: the declared method that runs this trainer.

    ``--trainer ProGrad LOSS.NAME kd`` (the official configs' spelling) builds the KD trainer, so
    it is "KD"; a trainer no method declares is its own row.
    """
    from experiments import catalog

    if trainer_name == "ProGrad" and str(cfg.LOSS.NAME).lower() == "kd":
        trainer_name = "KD"
    for method in catalog.methods().values():
        if method.trainer == trainer_name:
            return method.name
    return trainer_name


_file_digests: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, remembered per path, size and mtime within a process (the
    one content hash of a backbone file: run.json's identity and the feature cache's key).

    Raises:
        OSError: the file cannot be read.
    """
    path = os.path.expanduser(path)
    stat = os.stat(path)
    memo = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _file_digests:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while chunk := file.read(HASH_CHUNK):
                digest.update(chunk)
        _file_digests[memo] = digest.hexdigest()
    return _file_digests[memo]


def backbone_of_config(cfg: Any) -> Backbone:
    """The :class:`Backbone` of a config: ``MODEL.BACKBONE.NAME``, its PATH and the file's hash."""
    path = str(getattr(cfg.MODEL.BACKBONE, "PATH", "") or "")
    try:
        sha256 = file_sha256(path) if path else ""
    except OSError:  # an unreadable file: identified by its path alone
        sha256 = ""
    return Backbone(str(cfg.MODEL.BACKBONE.NAME), path, sha256)


def dataset_name(registry_name: str, dataset_config_file: str = "") -> str:
    """The ``configs/datasets`` name of a Dassl dataset (``DATASET.NAME``).

    From the catalog's dataset declarations; where the dataset declares none yet, the stem of
    the ``--dataset-config-file`` (``configs/datasets/oxford_pets.yaml`` -> "oxford_pets"), else
    the registry name lower-cased.
    """
    from experiments import catalog

    try:
        declared = catalog.dataset_by_registry_name(registry_name)
    except catalog.CatalogError:
        declared = None  # train.py reports a broken declaration itself; the record falls back
    if declared is not None:
        return declared.name
    if dataset_config_file:
        return Path(dataset_config_file).stem
    return registry_name.lower()


def code_version(repository: str | os.PathLike = ROOT) -> str:
    """``git rev-parse HEAD`` of ``repository``, "+dirty" with changes to tracked files.

    "unknown" where git is missing or the folder is not in a repository; never prints.
    """

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", "-C", str(repository), *args],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return "unknown"
    changes = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}+dirty" if changes else commit


def _config_yaml_values(path: Path, section: str) -> dict[str, str]:
    """The ``KEY: value`` lines of one top-level section of a yacs dump, as written."""
    values: dict[str, str] = {}
    inside = False
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return values
    for line in lines:
        if line and not line[0].isspace():
            inside = line.rstrip() == f"{section}:"
        elif inside and line.startswith("  ") and not line[2:3].isspace() and ":" in line:
            key, _, value = line[2:].partition(":")
            values[key.strip()] = value.strip().strip("'\"")
    return values


@dataclass(frozen=True)
class ModelSource:
    """What an evaluated model's run directory (``--model-dir``) says about its training."""

    dataset: str  # its configs/datasets name (from run.json) or registry name (config.yaml)
    from_record: bool  # dataset is a configs/datasets name (run.json), not a registry name
    shots: int | None  # None: not said


def model_source(model_dir: str) -> ModelSource | None:
    """What the run in ``model_dir`` trained on, from its run.json or else its config.yaml;
    None when neither says (e.g. a run of CoOp's code, which writes no config.yaml)."""
    if not model_dir:
        return None
    folder = Path(os.path.expanduser(model_dir))
    record = read_record(folder)
    if record is not None:
        return ModelSource(record.dataset, True, record.shots)
    dataset = _config_yaml_values(folder / "config.yaml", "DATASET")
    if "NAME" not in dataset:
        return None
    shots = dataset.get("NUM_SHOTS", "")
    return ModelSource(dataset["NAME"], False, int(shots) if shots.lstrip("-").isdigit() else None)


def infer_protocol(
    trainer: str, subset: str, dataset: str, registry_name: str, source: ModelSource | None
) -> str:
    """The protocol of a run.

    base2new when it uses the base or new classes; zeroshot for ZeroshotCLIP; xd for an
    evaluation of a model (``source``, see :func:`model_source`) trained on another dataset;
    fewshot otherwise (training, or evaluating on the training dataset).

    Args:
        trainer: ``TRAINER.NAME``.
        subset: ``DATASET.SUBSAMPLE_CLASSES``.
        dataset: the run's configs/datasets name (:func:`dataset_name`).
        registry_name: its ``DATASET.NAME``.
        source: the evaluated model's run, None for a training run.
    """
    if subset in ("base", "new"):
        return "base2new"
    if trainer == ZERO_SHOT_TRAINER:
        return "zeroshot"
    if source is not None:
        if source.dataset != (dataset if source.from_record else registry_name):
            return "xd"
    return "fewshot"


def record_from_config(
    cfg: Any, args: Any, method: str, repository: str | os.PathLike = ROOT
) -> RunRecord:
    """The "running" record of a run about to start.

    Args:
        cfg: the frozen yacs config ``train.py`` built (setup_cfg).
        args: ``train.py``'s parsed command line (config_file, dataset_config_file, eval_only,
            model_dir are read).
        method: the table row (:func:`method_name`).
        repository: the code whose version is recorded.
    """
    eval_only = bool(getattr(args, "eval_only", False))
    model_dir = str(getattr(args, "model_dir", "") or "") if eval_only else ""
    registry_name = str(cfg.DATASET.NAME)
    dataset = dataset_name(registry_name, str(getattr(args, "dataset_config_file", "") or ""))
    subset = str(cfg.DATASET.SUBSAMPLE_CLASSES)
    shots = int(cfg.DATASET.NUM_SHOTS)
    source = model_source(model_dir)
    if source is not None and source.shots is not None:
        shots = source.shots
    config_file = str(getattr(args, "config_file", "") or "")
    return RunRecord(
        method=method,
        trainer=str(cfg.TRAINER.NAME),
        backbone=backbone_of_config(cfg),
        dataset=dataset,
        subset=subset,
        shots=shots,
        seed=int(cfg.SEED),
        protocol=infer_protocol(str(cfg.TRAINER.NAME), subset, dataset, registry_name, source),
        config=Path(config_file).stem if config_file else "",
        config_digest=hashlib.sha256(cfg.dump().encode("utf-8")).hexdigest(),
        code_version=code_version(repository),
        status="running",
        accuracy=None,
        started=now(),
        eval_only=eval_only,
        model_dir=model_dir,
    )


# ----------------------------------------------------------------------------------------------
# train.py's side


class RecordedRun:
    """A run being recorded: remembers the accuracy of the trainer's final test."""

    def __init__(self, run_dir: str, record: RunRecord):
        self.run_dir = run_dir
        self.record = record
        self.accuracy: float | None = None

    def watch(self, trainer: Any) -> Any:
        """Remember what ``trainer.test()`` returns when called without a split (Dassl's final
        test after training, and ``--eval-only``'s), not the per-epoch validations; return it."""
        original = trainer.test

        def test(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if not args and kwargs.get("split") is None:
                try:
                    self.accuracy = float(result)
                except (TypeError, ValueError):
                    self.accuracy = None
            return result

        trainer.test = test
        return trainer

    def end(self, status: str) -> None:
        """Write the record's final state: "finished" (with the accuracy) or "failed"."""
        accuracy = self.accuracy if status == "finished" else None
        self.record = write_record(
            self.run_dir,
            dataclasses.replace(self.record, status=status, accuracy=accuracy, finished=now()),
        )


@contextlib.contextmanager
def recorded_run(cfg: Any, args: Any, method: str) -> Iterator[RecordedRun]:
    """Record a ``train.py`` run in ``<cfg.OUTPUT_DIR>/run.json``.

    Writes status "running" on entry; "finished" with the accuracy of the watched trainer's last
    final test when the block ends, "failed" when it raises (the error is raised on).

        with recorded_run(cfg, args, method) as run:
            trainer = run.watch(build_trainer(cfg))
            trainer.train()
    """
    run = RecordedRun(cfg.OUTPUT_DIR, record_from_config(cfg, args, method))
    run.record = write_record(run.run_dir, run.record)
    try:
        yield run
    except BaseException:
        # On a full disk this write may fail too: the error that ended the run is the one to tell.
        with contextlib.suppress(OSError):
            run.end("failed")
        raise
    run.end("finished")


# ----------------------------------------------------------------------------------------------
# The tables' side


def table_backbone(record: RunRecord) -> str:
    """The tables' backbone of a run: the config name without its epochs ("rn50") for OpenAI's
    weights, "rn50 [RN50 (file 0123456789ab)]" for a file, so runs of different backbones never
    share a table."""
    # Imported here: train.py imports this module, and the protocols read every declaration
    # (PROGRAD_PLUGINS included) at import, which train.py does inside its error handling.
    from experiments.protocols import backbone_of

    backbone = backbone_of(record.config)
    # OpenAI's published weights by name are the config name alone; a file or an open_clip model
    # (open_clip:ARCH/TAG) carries its identity, so it never shares OpenAI's table.
    named = record.backbone.path or record.backbone.name.startswith("open_clip:")
    return f"{backbone} [{record.backbone.identity}]" if named else backbone


def setting_key(record: RunRecord, variant: str = "") -> tuple[str, str, str, str, int, str, str]:
    """The fields of the tables' ``Setting`` for a run, in its order:
    (protocol, method, backbone, variant, shots, dataset, split).

    protocol as the tables name it ("fewshot" with zero-shot included at 0 shots, "base2new",
    "transfer" for xd evaluations); backbone from :func:`table_backbone`; split "base"/"new" in
    base-to-new, else "all".

    Args:
        record: the run's record.
        variant: the prompt settings (and, in base-to-new, the non-default options) as the
            directory names them; the record does not know them, so they still come from the
            path: ``classify(parts)[0].variant`` where the layout is recognised, else "".
            Zero-shot runs have none ("" whatever is given).
    """
    zero_shot = record.trainer == ZERO_SHOT_TRAINER
    return (
        TABLE_PROTOCOLS[record.protocol],
        record.method,
        table_backbone(record),
        "" if zero_shot else variant,
        0 if zero_shot else record.shots,
        record.dataset,
        record.subset if record.protocol == "base2new" else "all",
    )


def classify_record(
    record: RunRecord, variant: str = ""
) -> tuple[tuple[str, str, str, str, int, str, str], int | None, bool]:
    """What ``classify(parts)`` gives for a run directory, read from its record:
    (setting fields of :func:`setting_key`, seed or None, whether the run trains).

    The seed is None for zero-shot runs and unseeded ones (as their directories have no seedS).
    """
    unseeded = record.trainer == ZERO_SHOT_TRAINER or record.seed < 0
    return setting_key(record, variant), None if unseeded else record.seed, not record.eval_only
