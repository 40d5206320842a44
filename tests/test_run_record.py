"""run.json (experiments/run_record.py): written atomically, read back or reported, built from
train.py's real config, and filed by the tables exactly as the run's directory layout is."""

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from experiments import run_record
from experiments.protocols import Setting, classify
from experiments.run_record import (
    Backbone,
    RunRecord,
    classify_record,
    code_version,
    method_name,
    read_record,
    record_from_config,
    recorded_run,
    setting_key,
    write_record,
)

ROOT = Path(__file__).resolve().parents[1]
CALTECH = "configs/datasets/caltech101.yaml"
PROGRAD_RN50 = "configs/trainers/ProGrad/rn50.yaml"


def config(monkeypatch, output_dir, *argv, trainer="ProGrad", config_file=PROGRAD_RN50):
    """(cfg, args) of a train.py command line, built by train.py's own setup_cfg."""
    pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
    from train import build_parser, setup_cfg

    monkeypatch.chdir(ROOT)
    args = build_parser().parse_args(
        ["--trainer", trainer, "--dataset-config-file", CALTECH, "--config-file", config_file,
         "--output-dir", str(output_dir), *argv]
    )  # fmt: skip
    return setup_cfg(args), args


def record(**changes) -> RunRecord:
    """A finished few-shot record, with ``changes``."""
    base = RunRecord(
        method="ProGrad", trainer="ProGrad", backbone=Backbone("RN50"), dataset="caltech101",
        subset="all", shots=16, seed=1, protocol="fewshot", config="rn50",
        config_digest="0" * 64, code_version="unknown", status="finished", accuracy=91.25,
        started="2024-01-01T10:00:00+00:00", finished="2024-01-01T11:00:00+00:00",
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_record_round_trips_through_run_json(tmp_path):
    """What write_record writes, read_record gives back equal; the JSON is sorted and indented."""
    written = write_record(tmp_path, record())
    assert read_record(tmp_path) == written == record()
    text = (tmp_path / "run.json").read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert json.loads(text)["format_version"] == 1


def test_update_of_the_same_run_keeps_its_first_start_and_one_file(tmp_path):
    """A resumed run updates run.json in place: status and end change, `started` stays."""
    write_record(tmp_path, record(status="failed", accuracy=None))
    later = record(started="2024-02-02T10:00:00+00:00", finished="2024-02-02T12:00:00+00:00")
    write_record(tmp_path, later)
    assert read_record(tmp_path) == dataclasses.replace(later, started=record().started)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run.json"]  # no temp, no copy


def test_record_of_another_run_or_a_damaged_one_is_kept_aside(tmp_path):
    """run.json of another run (or an unreadable one) is renamed run.json-<time>, not lost."""
    write_record(tmp_path, record(seed=2))
    write_record(tmp_path, record())
    (kept,) = tmp_path.glob("run.json-*")
    assert json.loads(kept.read_text())["seed"] == 2
    assert read_record(tmp_path) == record()
    (tmp_path / "run.json").write_text("{half")
    write_record(tmp_path, record())
    assert "{half" in [path.read_text() for path in tmp_path.glob("run.json-*")]


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"method": "ProGrad", "trai', "line 1"),
        ("[]", "holds a list"),
        (json.dumps({**json.loads(run_record._to_json(record())), "format_version": 2}), "2"),
        (json.dumps({**json.loads(run_record._to_json(record())), "status": "done"}), "done"),
        (json.dumps({**json.loads(run_record._to_json(record())), "shots": "16"}), "shots"),
    ],
)
def test_damaged_or_unknown_run_json_reads_as_none_with_a_problem(tmp_path, content, problem):
    """A run.json that cannot be read is None plus one problem naming it; nothing raises."""
    (tmp_path / "run.json").write_text(content)
    problems = []
    assert read_record(tmp_path, problems) is None
    assert len(problems) == 1 and str(tmp_path / "run.json") in problems[0]
    assert problem in problems[0]


def test_missing_run_json_is_none_and_no_problem(tmp_path):
    """A tree written without run.json (CoOp's, the official ProGrad code's) is no problem."""
    problems = []
    assert read_record(tmp_path, problems) is None and problems == []


def test_backbone_files_with_one_name_have_different_identities(monkeypatch, tmp_path):
    """Two different files, both MODEL.BACKBONE.NAME ViT-B/16, are two backbones (and tables)."""
    identities, keys = [], []
    for content in (b"weights one", b"weights two"):
        path = tmp_path / f"{content.decode()}.pt"
        path.write_bytes(content)
        cfg, args = config(
            monkeypatch, tmp_path, "MODEL.BACKBONE.NAME", "ViT-B/16", "MODEL.BACKBONE.PATH",
            str(path), config_file="configs/trainers/ProGrad/vit_b16.yaml",
        )  # fmt: skip
        made = record_from_config(cfg, args, "ProGrad")
        assert made.backbone.path == str(path)
        identities.append(made.backbone.identity)
        keys.append(setting_key(made)[2])
    assert identities[0] != identities[1]
    assert all(re.fullmatch(r"ViT-B/16 \(file [0-9a-f]{12}\)", name) for name in identities)
    assert keys == [f"vit_b16 [{name}]" for name in identities]
    openai, args = config(
        monkeypatch, tmp_path, config_file="configs/trainers/ProGrad/vit_b16.yaml"
    )
    published = record_from_config(openai, args, "ProGrad")
    assert published.backbone == Backbone("ViT-B/16", "", "")
    assert published.backbone.identity == "ViT-B/16" and setting_key(published)[2] == "vit_b16"


def test_record_holds_the_runs_config(monkeypatch, tmp_path):
    """Method, trainer, dataset's configs name, shots, seed, config name and digest, status."""
    cfg, args = config(monkeypatch, tmp_path, "--seed", "3", "DATASET.NUM_SHOTS", "8")
    made = record_from_config(cfg, args, "ProGrad")
    assert (made.method, made.trainer, made.dataset, made.subset) == (
        "ProGrad", "ProGrad", "caltech101", "all",
    )  # fmt: skip
    assert (made.shots, made.seed, made.config, made.protocol) == (8, 3, "rn50", "fewshot")
    assert made.config_digest == run_record.hashlib.sha256(cfg.dump().encode()).hexdigest()
    assert (made.status, made.accuracy, made.finished, made.eval_only) == (
        "running", None, None, False,
    )  # fmt: skip


def test_kd_is_its_own_method(monkeypatch, tmp_path):
    """ProGrad with LOSS.NAME kd is the KD row; a declared trainer is its method's row, any
    other trainer its own."""
    cfg, _ = config(monkeypatch, tmp_path, "LOSS.NAME", "kd")
    assert method_name("ProGrad", cfg) == "KD"
    plain, _ = config(monkeypatch, tmp_path)
    assert method_name("ProGrad", plain) == "ProGrad"
    assert method_name("KD", plain) == "KD"
    assert method_name("ZeroshotCLIP", plain) == "ZeroshotCLIP"
    assert method_name("Other", plain) == "Other"


def training_run(folder: Path, dataset: str, shots: int) -> str:
    """A trained model's run directory with the run.json of its training."""
    folder.mkdir(parents=True)
    write_record(folder, record(dataset=dataset, shots=shots))
    return str(folder)


@pytest.mark.parametrize(
    "trainer, argv, model, expected",
    [
        ("ProGrad", (), None, "fewshot"),
        ("ProGrad", ("DATASET.SUBSAMPLE_CLASSES", "base"), None, "base2new"),
        ("ZeroshotCLIP", ("--eval-only",), None, "zeroshot"),
        ("ZeroshotCLIP", ("--eval-only", "DATASET.SUBSAMPLE_CLASSES", "new"), None, "base2new"),
        ("ProGrad", ("--eval-only",), "record imagenet", "xd"),
        ("ProGrad", ("--eval-only",), "config ImageNet", "xd"),
        ("ProGrad", ("--eval-only",), "record caltech101", "fewshot"),
        ("ProGrad", ("--eval-only",), "config Caltech101", "fewshot"),
        ("ProGrad", ("--eval-only",), "empty -", "fewshot"),
    ],
)
def test_protocol_is_inferred(monkeypatch, tmp_path, trainer, argv, model, expected):
    """base/new classes: base2new; ZeroshotCLIP: zeroshot; a model of another dataset: xd."""
    if model is not None:
        kind, dataset = model.split()
        model_dir = tmp_path / "model"
        model_dir.mkdir()
        if kind == "record":
            write_record(model_dir, record(dataset=dataset))
        elif kind == "config":
            (model_dir / "config.yaml").write_text(f"DATASET:\n  NAME: {dataset}\n  ROOT: ''\n")
        argv = ("--model-dir", str(model_dir), *argv)
    cfg, args = config(monkeypatch, tmp_path / "run", *argv, trainer=trainer)
    assert record_from_config(cfg, args, trainer).protocol == expected


def test_code_version_is_the_commit_or_unknown_without_git(monkeypatch, tmp_path, capfd):
    """The repository's commit (+dirty); "unknown", silently, without git or outside a repo."""
    if shutil.which("git") and (ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", code_version(ROOT))
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(ROOT / "train.py", copy / "train.py")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert code_version(copy) == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path / "no_programs_here"))
    assert code_version(ROOT) == "unknown"
    assert capfd.readouterr() == ("", "")


def test_recorded_run_keeps_the_final_test_and_marks_failures(monkeypatch, tmp_path):
    """Finished with the last split-less test() (not a validation); failed when the block raises."""

    class Trainer:
        def test(self, split=None):
            return 12.5 if split is None else 99.0

    cfg = type("Cfg", (), {"OUTPUT_DIR": str(tmp_path)})
    made = record(status="running", accuracy=None, finished=None)
    monkeypatch.setattr(run_record, "record_from_config", lambda cfg, args, method: made)
    with recorded_run(cfg, None, "ProGrad") as run:
        assert read_record(tmp_path).status == "running"
        trainer = run.watch(Trainer())
        trainer.test()
        trainer.test(split="val")
    finished = read_record(tmp_path)
    assert (finished.status, finished.accuracy) == ("finished", 12.5)
    assert finished.finished is not None and finished.started == made.started
    with pytest.raises(KeyError), recorded_run(cfg, None, "ProGrad"):
        raise KeyError("boom")
    failed = read_record(tmp_path)
    assert (failed.status, failed.accuracy, failed.started) == ("failed", None, made.started)


LAYOUTS = [  # (run directory under output/, train.py options of the run that writes it)
    (
        "caltech101/KD/rn50_16shots/nctx16_cscFalse_ctpend/seed1",
        ("ProGrad", PROGRAD_RN50, ("--seed", "1", "LOSS.NAME", "kd", "DATASET.NUM_SHOTS", "16")),
        None,
    ),
    (
        "base2new/train_base/caltech101/shots_16/ProGrad/rn50_ep100/seed2",
        ("ProGrad", "configs/trainers/ProGrad/rn50_ep100.yaml",
         ("--seed", "2", "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base")),
        None,
    ),
    (
        "base2new/test_new/caltech101/shots_16/ProGrad/rn50_ep100_lambda0.8/seed2",
        ("ProGrad", "configs/trainers/ProGrad/rn50_ep100.yaml",
         ("--seed", "2", "--eval-only", "DATASET.NUM_SHOTS", "16",
          "DATASET.SUBSAMPLE_CLASSES", "new")),
        ("caltech101", 16),
    ),
    (
        "evaluation/ProGrad/rn50_4shots/nctx16_cscFalse_ctpend/caltech101/seed3",
        ("ProGrad", PROGRAD_RN50, ("--seed", "3", "--eval-only")),
        ("imagenet", 4),
    ),
    (
        "ZeroshotCLIP/rn50/caltech101",
        ("ZeroshotCLIP", "configs/trainers/CoOp/rn50.yaml", ("--eval-only",)),
        None,
    ),
    (
        "base2new/test_base/caltech101/shots_0/ZeroshotCLIP/rn50",
        ("ZeroshotCLIP", "configs/trainers/CoOp/rn50.yaml",
         ("--eval-only", "DATASET.SUBSAMPLE_CLASSES", "base")),
        None,
    ),
]  # fmt: skip


@pytest.mark.parametrize("layout, run, model", LAYOUTS, ids=[row[0] for row in LAYOUTS])
def test_record_files_a_run_as_its_layout_does(monkeypatch, tmp_path, layout, run, model):
    """Setting, seed and training-ness from run.json equal classify()'s from the run's path."""
    trainer, config_file, argv = run
    run_dir = tmp_path / "output" / layout
    if model is not None:
        model_dir = training_run(tmp_path / "model", *model)
        argv = ("--model-dir", model_dir, *argv)
    cfg, args = config(monkeypatch, run_dir, *argv, trainer=trainer, config_file=config_file)
    made = record_from_config(cfg, args, method_name(trainer, cfg))
    expected_setting, expected_seed, expected_training = classify(run_dir.parts)
    fields, seed, training = classify_record(made, expected_setting.variant)
    assert (Setting(*fields), seed, training) == (
        expected_setting, expected_seed, expected_training,
    )  # fmt: skip


def test_no_temporary_file_is_left_when_writing_fails(tmp_path, monkeypatch):
    """A failed write leaves the old run.json whole and no temporary file behind."""
    write_record(tmp_path, record(status="running", accuracy=None))
    before = (tmp_path / "run.json").read_text()

    def broken(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_record(tmp_path, record())
    assert (tmp_path / "run.json").read_text() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run.json"]
