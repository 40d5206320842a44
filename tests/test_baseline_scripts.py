"""The run scripts of KgCoOp, KD and linear-probe CLIP (scripts/{kgcoop,kd,linearprobeclip}/),
checked through DRY_RUN=1 in a copy of the repository with its real config files; and one real
run through a script, read back by the tables tool."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.script_runs import FAKE_TRAIN_PY, commands, option, run_script
from experiments.protocols import DG_TARGETS
from experiments.results import aggregate, collect_runs, fewshot_comparison_tables

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "kgcoop": ("main", "base2new_train", "base2new_test", "xd_train", "xd_test"),
    "kd": ("main", "base2new_train", "base2new_test", "xd_train", "xd_test"),
    "linearprobeclip": ("main", "xd_train", "xd_test"),
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository copy with the scripts, tools, experiments, the declarations (trainers/,
    datasets/), the real configs and a placeholder train.py."""
    root = tmp_path / "repo"
    for folder in ("scripts", "tools", "experiments", "configs", "trainers", "datasets"):
        shutil.copytree(
            REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    (root / "train.py").write_text(FAKE_TRAIN_PY.format(log="placeholder"))
    return root


def test_every_new_script_passes_bash_syntax_check_and_checks_its_arguments(repo):
    """bash -n accepts them; a wrong argument count is an error with the usage."""
    for method, protocols in SCRIPTS.items():
        for protocol in protocols:
            script = REPO_ROOT / "scripts" / method / f"{protocol}.sh"
            completed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert completed.returncode == 0, f"{script}: {completed.stderr}"
            completed = run_script(repo, f"{method}/{protocol}.sh", "a", "b", "c", "d")
            assert completed.returncode != 0 and "Usage: bash" in completed.stderr


def test_kgcoop_main_trains_with_its_official_w_context_and_epochs(repo):
    """KgCoOp few-shot: W 8.0, 4 context vectors, 100 epochs at any shots, its own directory."""
    lines = commands(repo, "kgcoop/main.sh", "caltech101", "rn50_ep100", "1")
    assert len(lines) == 3
    line = lines[0]
    assert option(line, "--trainer") == "KgCoOp"
    assert option(line, "--config-file") == "configs/trainers/KgCoOp/rn50_ep100.yaml"
    assert [option(line, key) for key in ("TRAINER.COOP.W", "TRAINER.COOP.N_CTX")] == ["8.0", "4"]
    assert option(line, "OPTIM.MAX_EPOCH") == "100" and "LOSS.LAMBDA" not in line
    assert option(line, "--output-dir") == (
        "output/caltech101/KgCoOp/rn50_ep100_1shots/nctx4_cscFalse_ctpend/seed1"
    )


def test_kgcoop_base2new_follows_the_official_scripts(repo):
    """16 shots, vit_b16_ep100_ctxv1, 100 epochs; the test loads epoch 100 for base and new."""
    (train, *_) = commands(repo, "kgcoop/base2new_train.sh", "dtd")
    assert option(train, "--config-file") == "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml"
    assert [option(train, k) for k in ("DATASET.NUM_SHOTS", "DATASET.SUBSAMPLE_CLASSES")] == [
        "16",
        "base",
    ]
    base, new, *_ = commands(repo, "kgcoop/base2new_test.sh", "dtd")
    assert option(base, "--model-dir") == option(train, "--output-dir")
    assert option(base, "--load-epoch") == "100" and option(new, "DATASET.SUBSAMPLE_CLASSES") == (
        "new"
    )


def test_kd_scripts_run_the_kd_trainer_on_prograds_configs_in_kd_directories(repo):
    """KD: --trainer KD, ProGrad's configs, no λ, output under KD/."""
    for script, args in (("main.sh", ("dtd", "rn50", "16")), ("xd_train.sh", ())):
        line = commands(repo, f"kd/{script}", *args)[0]
        assert option(line, "--trainer") == "KD"
        assert option(line, "--config-file").startswith("configs/trainers/ProGrad/")
        assert "LOSS.LAMBDA" not in line and "/KD/" in option(line, "--output-dir")
    (test, *_) = commands(repo, "kd/xd_test.sh", "imagenet_r")
    assert option(test, "--trainer") == "KD" and option(test, "--load-epoch") == "50"


def test_linear_probe_scripts_hold_out_imagenet_validation_and_evaluate_only_its_variants(repo):
    """No prompt or epoch options; ImageNet validates on held-out train images; xd_test loads
    linear_probe/model.pth.tar-1 and takes only ImageNet's variants."""
    (dtd, *_) = commands(repo, "linearprobeclip/main.sh", "dtd", "vit_l14", "4")
    assert option(dtd, "--trainer") == "LinearProbeCLIP"
    assert not any(word.startswith(("TRAINER.", "OPTIM.", "LOSS.")) for word in dtd)
    assert option(dtd, "--output-dir") == "output/dtd/LinearProbeCLIP/vit_l14_4shots/default/seed1"
    (source, *_) = commands(repo, "linearprobeclip/xd_train.sh")
    assert option(source, "TRAINER.LINEAR_PROBE.VALIDATION") == "train"
    assert option(source, "DATASET.NUM_SHOTS") == "16"
    for target in DG_TARGETS:
        (test, *_) = commands(repo, "linearprobeclip/xd_test.sh", target)
        assert option(test, "--model-dir") == option(source, "--output-dir")
        assert option(test, "--load-epoch") == "1"
    completed = run_script(repo, "linearprobeclip/xd_test.sh", "imagenet_a")
    assert f"{option(source, '--output-dir')}/linear_probe/model.pth.tar-1" in completed.stderr
    completed = run_script(repo, "linearprobeclip/xd_test.sh", "caltech101")
    assert completed.returncode != 0
    assert "LinearProbeCLIP cannot be evaluated on caltech101" in completed.stderr


def test_a_real_linear_probe_run_through_its_script_lands_in_the_tables(tmp_path, tiny_clip_files):
    """scripts/linearprobeclip/main.sh with the real train.py: a finished run in the output tree
    that the script then skips and the tables tool reads as the LinearProbeCLIP row."""
    pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
    from devkit.synthetic_data import write_caltech101

    data = write_caltech101(tmp_path / "data", num_classes=4, images_per_class=10)
    output = tmp_path / "output"
    extra = (
        f"MODEL.BACKBONE.PATH {tiny_clip_files['RN']} INPUT.SIZE (32,32) "
        f"DATALOADER.NUM_WORKERS 0 TRAINER.COOP.PREC fp32 "
        f"TRAINER.LINEAR_PROBE.FEATURE_CACHE {tmp_path / 'cache'}"
    )
    environment = {
        **os.environ, "DATA": str(data), "SEEDS": "1", "OUTPUT": str(output),
        "PYTHON": sys.executable, "EXTRA_OPTS": extra,
    }  # fmt: skip
    environment.pop("DRY_RUN", None)
    script = ["bash", "scripts/linearprobeclip/main.sh", "caltech101", "rn50", "2"]
    completed = subprocess.run(
        script, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    again = subprocess.run(
        script, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert "skip:" in again.stderr
    (table,) = fewshot_comparison_tables(aggregate(collect_runs(output).runs))
    (row,) = table.rows
    assert row[0] == "LinearProbeCLIP" and table.headers == ["Method", "Caltech101", "Average"]
    assert 0.0 <= float(row[1]) <= 100.0


def test_an_xd_sweep_evaluates_the_linear_probe_on_imagenets_variants_only():
    """tools/sweep.py xd: LinearProbeCLIP's ImageNet probe is evaluated on the variants, and the
    other targets are left out with a note (a probe classifies only its own classes)."""
    pytest.importorskip("submitit", reason="submitit is not installed")
    from experiments import sweep as sweep_tool
    from experiments.protocols import Settings

    settings = Settings(data="/d", output="/o", dry_run=True, seeds=(1,))
    units, notes = sweep_tool.plan_sweep(
        "xd", ["LinearProbeCLIP"], ["imagenet_a", "dtd"], None, settings
    )
    ((train, test),) = units
    assert train.dataset == "imagenet" and test.dataset == "imagenet_a"
    assert test.checkpoint == f"{train.run_dir}/linear_probe/model.pth.tar-1"
    assert any("LinearProbeCLIP is not evaluated on dtd" in note for note in notes)
