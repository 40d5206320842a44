"""scripts/cocoop and scripts/progradcocoop: the protocols' commands (dry runs), and their run
directories read back by the tables tool."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from devkit.logs import eval_log, training_log, write
from experiments.results import aggregate, base2new_tables, collect_runs

REPO_ROOT = Path(__file__).resolve().parents[1]
CFG = "vit_b16_c4_ep10_batch1_ctxv1"
PROTOCOLS = ("main", "base2new_train", "base2new_test", "xd_train", "xd_test")
METHODS = (("cocoop", "CoCoOp"), ("progradcocoop", "ProGradCoCoOp"))


def dry_run(script: str, *args: str, **env: str) -> list[list[str]]:
    """The train.py commands `DRY_RUN=1 bash scripts/<script> args` prints, split."""
    environment = {"PATH": os.environ["PATH"], "DRY_RUN": "1", "DATA": "/datasets", **env}
    completed = subprocess.run(
        ["bash", f"scripts/{script}", *args],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return [shlex.split(line) for line in completed.stdout.splitlines()]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_every_cocoop_script_passes_bash_syntax_check():
    """bash -n accepts the ten scripts."""
    for folder, _ in METHODS:
        for protocol in PROTOCOLS:
            script = REPO_ROOT / "scripts" / folder / f"{protocol}.sh"
            completed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert completed.returncode == 0, f"{script}: {completed.stderr}"


@pytest.mark.parametrize(("folder", "method"), METHODS)
def test_base2new_defaults_to_cocoops_paper_protocol(folder, method):
    """ViT-B/16, context "a photo of a" (CFG vit_b16_c4_ep10_batch1_ctxv1), 16 shots, 10 epochs,
    base classes; the evaluation loads epoch 10 (the CoOp repository's scripts/cocoop)."""
    train = dry_run(f"{folder}/base2new_train.sh", "dtd")
    assert len(train) == 3
    line = train[0]
    assert option(line, "--trainer") == method
    assert option(line, "--config-file") == f"configs/trainers/{method}/{CFG}.yaml"
    assert option(line, "--output-dir") == (
        f"output/base2new/train_base/dtd/shots_16/{method}/{CFG}/seed1"
    )
    assert [
        option(line, key)
        for key in ("DATASET.NUM_SHOTS", "DATASET.SUBSAMPLE_CLASSES", "OPTIM.MAX_EPOCH")
    ] == ["16", "base", "10"]
    assert option(line, "TRAINER.COCOOP.N_CTX") == "4"
    assert ("LOSS.LAMBDA" in line) == (method == "ProGradCoCoOp")
    test = dry_run(f"{folder}/base2new_test.sh", "dtd")
    assert [option(line, "DATASET.SUBSAMPLE_CLASSES") for line in test[:2]] == ["base", "new"]
    assert option(test[1], "--model-dir") == option(line, "--output-dir")
    assert option(test[1], "--load-epoch") == "10" and "--eval-only" in test[1]


@pytest.mark.parametrize(("folder", "method"), METHODS)
def test_fewshot_and_transfer_use_cocoops_settings(folder, method):
    """main.sh: 10 epochs at any shot count; xd: ImageNet with 16 shots, evaluated at epoch 10."""
    (line, *_) = dry_run(f"{folder}/main.sh", "eurosat", CFG, "8")
    assert option(line, "OPTIM.MAX_EPOCH") == "10" and option(line, "DATASET.NUM_SHOTS") == "8"
    if method == "ProGradCoCoOp":  # ProGrad's λ rule: 0.8 at 8/16 shots on EuroSAT
        assert option(line, "LOSS.LAMBDA") == "0.8"
    (train, *_) = dry_run(f"{folder}/xd_train.sh")
    assert option(train, "--dataset-config-file") == "configs/datasets/imagenet.yaml"
    assert option(train, "DATASET.NUM_SHOTS") == "16"
    (test, *_) = dry_run(f"{folder}/xd_test.sh", "imagenet_r")
    assert option(test, "--model-dir") == option(train, "--output-dir")
    assert option(test, "--load-epoch") == "10"


def test_cocoop_runs_are_read_into_the_base_to_new_table(tmp_path):
    """Logs written where the scripts put CoCoOp's and ProGradCoCoOp's runs are read back as
    their methods' rows (base, new, harmonic mean)."""
    accuracies = {"CoCoOp": (80.0, 70.0), "ProGradCoCoOp": (81.0, 74.0)}
    for folder, method in METHODS:
        env = {"OUTPUT": str(tmp_path), "SEEDS": "1"}
        (train,) = dry_run(f"{folder}/base2new_train.sh", "dtd", **env)
        base, new = accuracies[method]
        write(Path(option(train, "--output-dir")), training_log(base))
        for line in dry_run(f"{folder}/base2new_test.sh", "dtd", **env):
            split = option(line, "DATASET.SUBSAMPLE_CLASSES")
            write(Path(option(line, "--output-dir")), eval_log(base if split == "base" else new))
    collection = collect_runs(tmp_path)
    assert not collection.problems
    stats = aggregate(collection.runs)
    found = {(s.trainer, s.split): stat.mean for s, stat in stats.items()}
    for method, (base, new) in accuracies.items():
        assert found[(method, "base")] == base and found[(method, "new")] == new
    tables = {table.title: table for table in base2new_tables(stats)}
    for method, (base, new) in accuracies.items():
        (title,) = [title for title in tables if f" {method}," in title]
        average = tables[title].rows[-1]
        assert average[1:3] == [f"{base:.2f}", f"{new:.2f}"]
        assert average[3] == f"{2 * base * new / (base + new):.2f}"
