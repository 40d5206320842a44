"""Shared test-time image features (TEST.SHARED_FEATURES): the same logits and accuracy as the
uncached evaluation for every method and precision; what makes an entry miss; the fallbacks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from devkit.synthetic_data import write_caltech101  # noqa: E402
from devkit.train_runs import build  # noqa: E402

# (trainer, config, precision key) of every prompt method and zero-shot CLIP.
METHODS = [
    ("CoOp", "configs/trainers/CoOp/tiny.yaml", "TRAINER.COOP.PREC"),
    ("ProGrad", "configs/trainers/ProGrad/tiny.yaml", "TRAINER.COOP.PREC"),
    ("KD", "configs/trainers/ProGrad/tiny.yaml", "TRAINER.COOP.PREC"),
    ("KgCoOp", "configs/trainers/KgCoOp/tiny.yaml", "TRAINER.COOP.PREC"),
    ("CoCoOp", "configs/trainers/CoCoOp/tiny.yaml", "TRAINER.COCOOP.PREC"),
    ("ProGradCoCoOp", "configs/trainers/ProGradCoCoOp/tiny.yaml", "TRAINER.COCOOP.PREC"),
    ("ZeroshotCLIP", "configs/trainers/CoOp/tiny.yaml", "TRAINER.COOP.PREC"),
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=4, images_per_class=8)


def evaluate(trainer, shared: bool) -> tuple[float, torch.Tensor]:
    """(accuracy, every test logit in order) of trainer.test() with sharing on or off."""
    trainer.cfg.defrost()
    trainer.cfg.TEST.SHARED_FEATURES = shared
    trainer.cfg.freeze()
    logits = []
    process = trainer.evaluator.process

    def record(output, label):
        logits.append(output.detach().float().cpu())
        return process(output, label)

    trainer.evaluator.process = record
    try:
        accuracy = trainer.test()
    finally:
        trainer.evaluator.process = process
    return accuracy, torch.cat(logits)


def built(monkeypatch, tmp_path, data_root, clip_file, trainer, config, key, prec, cache, *opts):
    """A trainer built in-process, its shared features under ``cache``, 5 test images a batch."""
    return build(
        monkeypatch, trainer, config, tmp_path / "run", data_root, clip_file,
        key, prec, "TEST.FEATURE_CACHE", str(cache), "DATALOADER.TEST.BATCH_SIZE", "5", *opts,
    )  # fmt: skip


@pytest.mark.parametrize("prec", ["fp16", "fp32", "amp"])
@pytest.mark.parametrize(("trainer", "config", "key"), METHODS, ids=[m[0] for m in METHODS])
def test_cached_evaluation_gives_the_uncached_logits_and_accuracy(
    monkeypatch, tmp_path, data_root, tiny_clip_files, trainer, config, key, prec, capsys
):
    """Sharing on (a miss; a hit) gives the uncached evaluation's logits and accuracy."""
    cache = tmp_path / "cache"
    model = built(
        monkeypatch, tmp_path, data_root, tiny_clip_files["ViT"], trainer, config, key, prec, cache
    )
    plain_accuracy, plain = evaluate(model, shared=False)
    assert not cache.exists()
    # A miss (computed, stored), then, in fp32, a hit (read back from the file).
    for attempt in ("extracting", "read from")[: 2 if prec == "fp32" else 1]:
        accuracy, logits = evaluate(model, shared=True)
        assert f"Feature cache: {'test split' if attempt == 'read from' else attempt}" in (
            capsys.readouterr().out
        )
        assert accuracy == plain_accuracy
        exact = model.device.type == "cpu"  # the same kernels on the same batches: bit for bit
        torch.testing.assert_close(
            logits, plain, rtol=0 if exact else 1e-3, atol=0 if exact else 1e-3
        )
    (entry,) = cache.rglob("*.pt")
    stored = torch.load(entry, weights_only=True)
    assert stored["key"]["precision"] == ("fp16" if prec == "fp16" else "fp32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_cached_evaluation_on_cuda_matches_the_uncached_one(
    monkeypatch, tmp_path, data_root, tiny_clip_files, prec
):
    """On CUDA the features are computed and keyed there ("cuda"), and read back for the
    same accuracy and logits to rounding."""
    cache = tmp_path / "cache"
    args = (
        tmp_path,
        data_root,
        tiny_clip_files["RN"],
        "ProGrad",
        "configs/trainers/ProGrad/tiny.yaml",
    )
    model = built(monkeypatch, *args, "TRAINER.COOP.PREC", prec, cache, "USE_CUDA", "True")
    assert model.device.type == "cuda"
    plain_accuracy, plain = evaluate(model, shared=False)
    for _ in range(2):
        accuracy, logits = evaluate(model, shared=True)
        assert accuracy == plain_accuracy
        torch.testing.assert_close(logits, plain, rtol=1e-3, atol=1e-3)
    (entry,) = cache.rglob("*.pt")
    assert torch.load(entry, weights_only=True)["key"]["device"] == "cuda"


def entries(cache: Path) -> int:
    return len(list(cache.rglob("*.pt")))


def test_a_changed_backbone_file_transform_or_image_is_a_miss_and_a_copy_is_a_hit(
    monkeypatch, tmp_path, data_root, capsys
):
    """The key is the content: a copied backbone file hits; new weights in the same file, another
    interpolation, or a touched test image each make a new entry, never a stale read."""
    from devkit.tiny_clip import write_tiny_clip

    cache = tmp_path / "cache"
    first = write_tiny_clip(tmp_path / "a.pt", "ViT", seed=0)
    copy = tmp_path / "b.pt"
    copy.write_bytes(first.read_bytes())
    args = (tmp_path, data_root, first, "CoOp", "configs/trainers/CoOp/tiny.yaml")
    evaluate(built(monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", cache), shared=True)
    args = (tmp_path, data_root, copy, "CoOp", "configs/trainers/CoOp/tiny.yaml")
    model = built(monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", cache)
    evaluate(model, shared=True)
    assert "read from" in capsys.readouterr().out and entries(cache) == 1
    write_tiny_clip(copy, "ViT", seed=1)  # same path, other weights
    os.utime(copy, ns=(1, 1))
    evaluate(built(monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", cache), shared=True)
    assert entries(cache) == 2
    other = built(
        monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", cache, "INPUT.INTERPOLATION", "bilinear"
    )
    evaluate(other, shared=True)
    assert entries(cache) == 3
    image = Path(model.dm.dataset.test[0].impath)
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    evaluate(model, shared=True)
    assert entries(cache) == 4 and "extracting" in capsys.readouterr().out


def test_a_cache_that_cannot_be_written_leaves_the_run_its_features_with_a_note(
    monkeypatch, tmp_path, data_root, tiny_clip_files, capsys
):
    """TEST.FEATURE_CACHE naming a file (as a read-only or full disk would): the evaluation runs
    on the features it computed, the same accuracy, and a note names the key."""
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    args = (tmp_path, data_root, tiny_clip_files["ViT"], "CoOp", "configs/trainers/CoOp/tiny.yaml")
    model = built(monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", blocked)
    plain_accuracy, plain = evaluate(model, shared=False)
    accuracy, logits = evaluate(model, shared=True)
    assert accuracy == plain_accuracy and torch.equal(logits, plain)
    out = capsys.readouterr().out
    assert "Feature cache: cannot write under" in out and "Set TEST.FEATURE_CACHE" in out
    assert blocked.read_text() == "not a folder"


def result_block(log: str) -> list[str]:
    """The lines of a log's `=> result` block."""
    lines = log.splitlines()
    start = lines.index("=> result")
    return lines[start : start + 5]


def test_one_process_evaluating_several_runs_writes_what_separate_runs_write(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """tools/evaluate_many.py: each run directory gets the result block and run.json accuracy
    its own train.py process writes, and CLIP is loaded once for all of them."""
    import json

    import trainers.base
    from devkit.train_runs import cli_args
    from tools import evaluate_many

    clip = tiny_clip_files["ViT"]
    config = "configs/trainers/CoOp/tiny.yaml"
    trained = build(monkeypatch, "CoOp", config, tmp_path / "m", data_root, clip)
    trained.save_model(0, str(tmp_path / "m"))  # prompt_learner/model.pth.tar-1

    def commands(output: Path) -> list[list[str]]:
        subsample = "DATASET.SUBSAMPLE_CLASSES"
        evaluations = [
            ("CoOp", "coop", (subsample, "all")),
            ("ZeroshotCLIP", "zs_new", (subsample, "new")),
        ]
        flags = ("--eval-only", "--model-dir", str(tmp_path / "m"), "--load-epoch", "1")
        return [
            cli_args(trainer, config, output / name, data_root, clip, *opts, flags=flags)
            for trainer, name, opts in evaluations
        ]

    loads = []
    real_load = trainers.base.load_backbone
    monkeypatch.setattr(trainers.base, "load_backbone", lambda *a: loads.append(a) or real_load(*a))
    for argv in commands(tmp_path / "separate"):
        assert evaluate_many.run_one(argv) is None  # a fresh load each, as separate processes
    assert len(loads) == 2
    monkeypatch.setattr(
        "sys.stdin", __import__("io").StringIO(json.dumps(commands(tmp_path / "one")))
    )
    assert evaluate_many.main([]) == 0
    assert len(loads) == 3  # one load for the two runs
    for name in ("coop", "zs_new"):
        separate, one = (tmp_path / kind / name for kind in ("separate", "one"))
        assert result_block((one / "log.txt").read_text()) == result_block(
            (separate / "log.txt").read_text()
        )
        records = [json.loads((d / "run.json").read_text()) for d in (separate, one)]
        assert records[0]["accuracy"] == records[1]["accuracy"] is not None
        assert records[1]["status"] == "finished"


FAKE_PYTHON = """#!/usr/bin/env bash
# Records each call; writes a complete evaluation log into every --output-dir it is given.
echo "$*" >> "$CALLS"
if [[ "$1" == tools/evaluate_many.py ]]; then words=$(cat); else words="$*"; fi
for dir in $(printf '%s' "$words" | tr -d '[],"' | tr ' ' '\\n' | grep -A1 -- --output-dir \\
        | grep -v -- --output-dir | grep -v -- '^--$'); do
    mkdir -p "$dir" && printf 'Finish training\\n=> result\\n* accuracy: 50.0%%\\n' > "$dir/log.txt"
done
"""


@pytest.mark.parametrize("batch", ["1", "0"])
def test_a_plans_evaluations_run_in_one_process_unless_eval_batch_is_0(tmp_path, batch):
    """base2new_test with two seeds: one tools/evaluate_many.py call for the four evaluations
    (EVAL_BATCH=1), or four train.py calls (0); every run directory gets its log either way."""
    from experiments import protocols

    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    output = tmp_path / "out"
    env = {"DATA": str(tmp_path), "OUTPUT": str(output), "SEEDS": "1 2", "PYTHON": str(python)}
    settings = protocols.settings_from_environment({**env, "EVAL_BATCH": batch})
    plan = protocols.plan_base2new_test("CoOp", "dtd", settings, Path.cwd())
    for run in plan.runs:
        Path(run.checkpoint).parent.mkdir(parents=True, exist_ok=True)
        Path(run.checkpoint).touch()
    os.environ["CALLS"] = str(tmp_path / "calls")
    try:
        protocols.execute(plan, settings)
    finally:
        del os.environ["CALLS"]
    calls = (tmp_path / "calls").read_text().splitlines()
    if batch == "1":
        assert calls == ["tools/evaluate_many.py"]
    else:
        assert len(calls) == 4 and all(call.startswith("train.py ") for call in calls)
    assert all(protocols.is_finished(run.run_dir, False) for run in plan.runs)


def test_xd_test_all_plans_every_target_of_the_method_for_every_seed():
    """xd_test METHOD all: each DG and cross-dataset target the method takes, each seed, as one
    plan (LinearProbeCLIP: the four ImageNet variants only); a list names its targets."""
    from experiments import protocols

    settings = protocols.Settings(data="/d", output="/o", dry_run=True, seeds=(1, 2))
    plan = protocols.plan_xd_tests("CoOp", "all", settings, Path.cwd())
    targets = (*protocols.DG_TARGETS, *protocols.XD_TARGETS)
    assert [(r.dataset, r.seed) for r in plan.runs] == [(t, s) for t in targets for s in (1, 2)]
    probe = protocols.plan_xd_tests("LinearProbeCLIP", "all", settings, Path.cwd())
    assert {r.dataset for r in probe.runs} == set(protocols.DG_TARGETS)
    two = protocols.plan_xd_tests("CoOp", "imagenetv2,dtd", settings, Path.cwd())
    assert [r.dataset for r in two.runs] == ["imagenetv2", "imagenetv2", "dtd", "dtd"]


def test_a_sweep_units_evaluations_run_in_one_process_after_its_training(tmp_path, monkeypatch):
    """A sweep unit (xd: the ImageNet run, then its targets): the training as its train.py, the
    targets in one tools/evaluate_many.py process; all finish, no failure record."""
    pytest.importorskip("submitit", reason="submitit is not installed")
    from experiments import protocols
    from experiments.sweep import group_units
    from experiments.sweep_jobs import FAILURES, run_unit

    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    env = {"DATA": str(tmp_path), "OUTPUT": str(tmp_path / "out"), "SEEDS": "1"}
    settings = protocols.settings_from_environment({**env, "PYTHON": str(python)})
    runs = protocols.plan_xd_train("CoOp", settings, Path.cwd()).runs
    runs += protocols.plan_xd_tests("CoOp", "imagenetv2,dtd,eurosat", settings, Path.cwd()).runs
    (unit,) = group_units(runs)
    checkpoint = Path(unit[1].checkpoint)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.touch()  # what the training would have saved
    calls = tmp_path / "calls"
    child_env = {**os.environ, "CALLS": str(calls)}
    outcomes = run_unit(unit, str(Path.cwd()), str(tmp_path / "sweep"), child_env)
    assert set(outcomes.values()) == {"done"} and len(outcomes) == 4
    lines = calls.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("train.py ")
    assert lines[1] == "tools/evaluate_many.py"
    assert not (tmp_path / "sweep" / FAILURES).exists()
