"""The run scripts' command lines, checked through DRY_RUN=1 in a throwaway copy of the repo."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.script_runs import FAKE_TRAIN_PY, commands, option, run_script

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS = (
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
    "imagenet",
    "imagenetv2",
    "imagenet_sketch",
    "imagenet_a",
    "imagenet_r",
)
CONFIGS = ("rn50", "rn50_ep50", "rn50_ep100", "vit_b16", "vit_b16_ep50", "vit_b16_ep100")
VARIANT = "nctx16_cscFalse_ctpend"
COMPLETE_TRAINING_LOG = """Loading trainer: ProGrad
epoch [200/200] batch [5/5] loss 0.1 (0.1) acc 100.0 (98.0) lr 1.0e-07 eta 0:00:00
{marker}
Deploy the last-epoch model
Evaluate on the *test* set
=> result
* total: 1,000
* correct: 912
* accuracy: 91.2%
* error: 8.8%
* macro_f1: 90.1%
Elapsed: 0:01:02
"""
# Stopped mid-training: the only result block is a validation one, before training finished.
UNFINISHED_TRAINING_LOG = """Loading trainer: ProGrad
Evaluate on the *val* set
=> result
* total: 100
* correct: 50
* accuracy: 50.0%
epoch [3/200] batch [5/5] loss 1.0 (1.0)
"""
EVAL_LOG = """Loading trainer: CoOp
Evaluate on the *test* set
=> result
* total: 500
* correct: 300
* accuracy: 60.0%
* error: 40.0%
* macro_f1: 59.0%
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository copy holding the scripts, every config name and a placeholder train.py."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "scripts", root / "scripts")
    # The scripts read the protocols through tools/protocols.py from experiments/protocols.py,
    # which reads the method and dataset declarations of trainers/ and datasets/
    for folder in ("tools", "experiments", "trainers", "datasets"):
        shutil.copytree(
            REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    (root / "configs" / "datasets").mkdir(parents=True)
    for dataset in DATASETS:
        (root / "configs" / "datasets" / f"{dataset}.yaml").touch()
    for trainer in ("ProGrad", "CoOp"):
        (root / "configs" / "trainers" / trainer).mkdir(parents=True)
        for config in CONFIGS:
            (root / "configs" / "trainers" / trainer / f"{config}.yaml").touch()
    (root / "train.py").write_text(
        FAKE_TRAIN_PY.format(log=COMPLETE_TRAINING_LOG.format(marker="Finish training"))
    )
    return root


def test_every_script_passes_bash_syntax_check():
    """bash -n accepts every protocol script and the shared file."""
    protocols = ("main", "base2new_train", "base2new_test", "xd_train", "xd_test")
    names = [f"{method}/{protocol}.sh" for method in ("prograd", "coop") for protocol in protocols]
    for name in names + ["zeroshot.sh", "common.sh"]:
        script = REPO_ROOT / "scripts" / name
        completed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert completed.returncode == 0, f"{script}: {completed.stderr}"


def test_prograd_main_prints_official_command_per_seed(repo):
    """main.sh prints one CoOp-style train.py command per default seed 1 2 3."""
    lines = commands(repo, "prograd/main.sh", "caltech101", "rn50", "16")
    directory = f"output/caltech101/ProGrad/rn50_16shots/{VARIANT}/seed1"
    assert lines[0] == [
        "python",
        "train.py",
        "--root",
        "/datasets",
        "--seed",
        "1",
        "--trainer",
        "ProGrad",
        "--dataset-config-file",
        "configs/datasets/caltech101.yaml",
        "--config-file",
        "configs/trainers/ProGrad/rn50.yaml",
        "--output-dir",
        directory,
        "LOSS.LAMBDA",
        "1.0",
        "TRAINER.COOP.N_CTX",
        "16",
        "TRAINER.COOP.CSC",
        "False",
        "TRAINER.COOP.CLASS_TOKEN_POSITION",
        "end",
        "DATASET.NUM_SHOTS",
        "16",
        "OPTIM.MAX_EPOCH",
        "200",
    ]
    assert [option(line, "--seed") for line in lines] == ["1", "2", "3"]
    assert [option(line, "--output-dir") for line in lines] == [
        directory.replace("seed1", f"seed{seed}") for seed in (1, 2, 3)
    ]


@pytest.mark.parametrize("shots", [1, 2, 4, 8, 16])
@pytest.mark.parametrize(
    "dataset", ["oxford_flowers", "dtd", "eurosat", "caltech101", "food101", "imagenet"]
)
def test_prograd_lambda_is_0_8_only_for_flowers_dtd_eurosat_at_8_and_16_shots(repo, dataset, shots):
    """λ = 0.8 exactly for oxford_flowers/dtd/eurosat at 8 and 16 shots, 1.0 otherwise."""
    lines = commands(repo, "prograd/main.sh", dataset, "rn50", str(shots), SEEDS="1")
    special = dataset in ("oxford_flowers", "dtd", "eurosat") and shots >= 8
    assert option(lines[0], "LOSS.LAMBDA") == ("0.8" if special else "1.0")
    # The paper-default λ is not part of the directory name (the official layout).
    assert option(lines[0], "--output-dir").endswith(f"/{VARIANT}/seed1")


def test_coop_main_passes_no_lambda(repo):
    """CoOp's main.sh has no LOSS.LAMBDA, even with LAMBDA exported, and says so."""
    completed = run_script(repo, "coop/main.sh", "dtd", "rn50", "16", LAMBDA="0.5")
    assert completed.returncode == 0, completed.stderr
    assert "LOSS.LAMBDA" not in completed.stdout
    assert "--trainer CoOp" in completed.stdout
    assert "configs/trainers/CoOp/rn50.yaml" in completed.stdout
    assert "LAMBDA=0.5 is ignored" in completed.stderr


@pytest.mark.parametrize(
    ("dataset", "shots", "epochs"),
    [
        ("caltech101", 1, "50"),
        ("caltech101", 2, "100"),
        ("caltech101", 4, "100"),
        ("caltech101", 8, "200"),
        ("caltech101", 16, "200"),
        ("imagenet", 1, "50"),
        ("imagenet", 4, "50"),
        ("imagenet", 16, "50"),
    ],
)
def test_epochs_follow_shots_and_imagenet_is_always_50(repo, dataset, shots, epochs):
    """OPTIM.MAX_EPOCH: 1 shot 50, 2-4 shots 100, 8-16 shots 200; ImageNet 50 at any shots."""
    for script in ("prograd/main.sh", "coop/main.sh"):
        lines = commands(repo, script, dataset, "rn50", str(shots), SEEDS="1")
        assert option(lines[0], "OPTIM.MAX_EPOCH") == epochs


def test_environment_overrides_every_setting(repo):
    """SEEDS, NCTX, CSC, CTP, EPOCHS, LAMBDA, OUTPUT, PYTHON replace the defaults."""
    lines = commands(
        repo,
        "prograd/main.sh",
        "dtd",
        "vit_b16",
        "2",
        SEEDS="5 9",
        NCTX="4",
        CSC="True",
        CTP="middle",
        EPOCHS="7",
        LAMBDA="0.5",
        OUTPUT="/runs",
        PYTHON="python3",
    )
    assert [option(line, "--seed") for line in lines] == ["5", "9"]
    first = lines[0]
    assert first[:2] == ["python3", "train.py"]
    assert option(first, "--config-file") == "configs/trainers/ProGrad/vit_b16.yaml"
    assert [
        option(first, key)
        for key in (
            "TRAINER.COOP.N_CTX",
            "TRAINER.COOP.CSC",
            "TRAINER.COOP.CLASS_TOKEN_POSITION",
            "OPTIM.MAX_EPOCH",
            "LOSS.LAMBDA",
        )
    ] == ["4", "True", "middle", "7", "0.5"]
    # Overrides of λ and epochs get their own directory, never the paper-default run's.
    assert option(first, "--output-dir") == (
        "/runs/dtd/ProGrad/vit_b16_2shots/nctx4_cscTrue_ctpmiddle_lambda0.5_epochs7/seed5"
    )


def test_lambda_equal_to_the_default_keeps_the_official_directory(repo):
    """LAMBDA=0.80 on flowers at 16 shots is the default: same directory, no suffix."""
    lines = commands(
        repo, "prograd/main.sh", "oxford_flowers", "rn50", "16", SEEDS="1", LAMBDA="0.80"
    )
    assert option(lines[0], "--output-dir").endswith(f"rn50_16shots/{VARIANT}/seed1")


def write_log(run_dir: Path, text: str, name: str = "log.txt") -> None:
    """Puts a log (and a checkpoint, as Dassl would) into a run directory."""
    (run_dir / "prompt_learner").mkdir(parents=True, exist_ok=True)
    (run_dir / "prompt_learner" / "model.pth.tar-3").write_text("checkpoint")
    (run_dir / name).write_text(text)


@pytest.mark.parametrize("marker", ["Finish training", "Finished training"])
@pytest.mark.parametrize("name", ["log.txt", "log.txt-2024-05-01-12-00-00"])
def test_finished_run_is_skipped(repo, marker, name):
    """A seed whose directory has a complete log (either Dassl marker, any log name) is skipped."""
    seed2 = repo / "output" / "caltech101" / "ProGrad" / "rn50_16shots" / VARIANT / "seed2"
    if name != "log.txt":
        write_log(seed2, UNFINISHED_TRAINING_LOG)
    write_log(seed2, COMPLETE_TRAINING_LOG.format(marker=marker), name)
    completed = run_script(repo, "prograd/main.sh", "caltech101", "rn50", "16")
    seeds = [option(shlex.split(line), "--seed") for line in completed.stdout.splitlines()]
    assert seeds == ["1", "3"]
    assert f"skip: output/caltech101/ProGrad/rn50_16shots/{VARIANT}/seed2" in completed.stderr


def test_unfinished_run_is_rerun_and_nothing_is_deleted(repo):
    """A directory without a complete log gets its command again; its files stay."""
    seed1 = repo / "output" / "dtd" / "CoOp" / "rn50_4shots" / VARIANT / "seed1"
    write_log(seed1, UNFINISHED_TRAINING_LOG)
    completed = run_script(repo, "coop/main.sh", "dtd", "rn50", "4", SEEDS="1")
    assert completed.returncode == 0, completed.stderr
    (line,) = completed.stdout.splitlines()
    assert option(shlex.split(line), "--output-dir").endswith("rn50_4shots/" + VARIANT + "/seed1")
    assert "rerun:" in completed.stderr
    assert (seed1 / "log.txt").read_text() == UNFINISHED_TRAINING_LOG
    assert (seed1 / "prompt_learner" / "model.pth.tar-3").exists()


def test_data_unset_is_a_clear_error(repo):
    """Without DATA every script stops before printing any command, naming DATA."""
    for script, args in (
        ("prograd/main.sh", ("dtd", "rn50", "1")),
        ("coop/base2new_train.sh", ("dtd",)),
        ("zeroshot.sh", ("dtd", "rn50")),
    ):
        completed = run_script(repo, script, *args, DATA=None)
        assert completed.returncode != 0
        assert completed.stdout == ""
        assert "DATA is not set" in completed.stderr


def test_missing_data_directory_is_an_error_outside_dry_run(repo):
    """A real run checks that DATA is a directory."""
    completed = run_script(
        repo, "prograd/main.sh", "dtd", "rn50", "1", DRY_RUN=None, DATA=str(repo / "no-such-dir")
    )
    assert completed.returncode != 0
    assert "no-such-dir is not a directory" in completed.stderr


def test_bad_names_and_values_are_clear_errors(repo):
    """Unknown dataset or config, bad shots/CSC and wrong argument counts are rejected."""
    cases = [
        (("prograd/main.sh", "caltech", "rn50", "1"), "configs/datasets/caltech.yaml"),
        (("prograd/main.sh", "dtd", "rn51", "1"), "configs/trainers/ProGrad/rn51.yaml"),
        (("prograd/main.sh", "dtd", "rn50", "four"), "SHOTS=four"),
        (("prograd/main.sh", "dtd", "rn50"), "Usage: bash scripts/prograd/main.sh DATASET CFG"),
        (("coop/xd_test.sh",), "expected 1 argument"),
    ]
    for args, message in cases:
        completed = run_script(repo, *args)
        assert completed.returncode != 0 and message in completed.stderr, (args, completed)
    completed = run_script(repo, "prograd/main.sh", "dtd", "rn50", "1", CSC="yes")
    assert "CSC=yes is not one of: True False" in completed.stderr


def test_scripts_must_run_from_the_repository_root(repo):
    """Run from elsewhere, a script says to cd to the repository root."""
    completed = subprocess.run(
        ["bash", str(repo / "scripts/prograd/main.sh"), "dtd", "rn50", "1"],
        cwd=repo.parent,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "DATA": "/d", "DRY_RUN": "1"},
    )
    assert completed.returncode != 0 and "repository root" in completed.stderr


@pytest.mark.parametrize("trainer", ["ProGrad", "CoOp"])
def test_base2new_train_uses_official_settings(repo, trainer):
    """4 shots, rn50_ep100 for 100 epochs on base classes (ImageNet: rn50_ep50, 50 epochs)."""
    script = f"{trainer.lower()}/base2new_train.sh"
    (line, *_) = commands(repo, script, "caltech101")
    assert option(line, "--trainer") == trainer
    assert option(line, "--config-file") == f"configs/trainers/{trainer}/rn50_ep100.yaml"
    assert option(line, "--output-dir") == (
        f"output/base2new/train_base/caltech101/shots_4/{trainer}/rn50_ep100/seed1"
    )
    assert [
        option(line, key)
        for key in ("DATASET.NUM_SHOTS", "DATASET.SUBSAMPLE_CLASSES", "OPTIM.MAX_EPOCH")
    ] == ["4", "base", "100"]
    assert ("LOSS.LAMBDA" in line) == (trainer == "ProGrad")
    if trainer == "ProGrad":
        assert option(line, "LOSS.LAMBDA") == "1.0"
    (line, *_) = commands(repo, script, "imagenet")
    assert option(line, "--config-file") == f"configs/trainers/{trainer}/rn50_ep50.yaml"
    assert option(line, "OPTIM.MAX_EPOCH") == "50"


@pytest.mark.parametrize("trainer", ["ProGrad", "CoOp"])
def test_base2new_test_evaluates_base_and_new_with_the_trained_model(repo, trainer):
    """Per seed: --eval-only on base then new, loading the train_base model at epoch 100."""
    lines = commands(repo, f"{trainer.lower()}/base2new_test.sh", "dtd")
    assert len(lines) == 6
    for line, (seed, sub) in zip(
        lines, [(s, sub) for s in (1, 2, 3) for sub in ("base", "new")], strict=True
    ):
        common = f"dtd/shots_4/{trainer}/rn50_ep100/seed{seed}"
        assert "--eval-only" in line
        assert option(line, "--model-dir") == f"output/base2new/train_base/{common}"
        assert option(line, "--load-epoch") == "100"
        assert option(line, "--output-dir") == f"output/base2new/test_{sub}/{common}"
        assert option(line, "DATASET.SUBSAMPLE_CLASSES") == sub
        assert option(line, "DATASET.NUM_SHOTS") == "4"


def test_base2new_test_skips_finished_evaluation_and_honours_subs(repo):
    """An eval log with a result block is finished; SUBS=new evaluates new classes only."""
    done = repo / "output/base2new/test_new/dtd/shots_4/ProGrad/rn50_ep100/seed1"
    write_log(done, EVAL_LOG)
    lines = commands(repo, "prograd/base2new_test.sh", "dtd", SUBS="new")
    assert [option(line, "--seed") for line in lines] == ["2", "3"]
    assert all(option(line, "DATASET.SUBSAMPLE_CLASSES") == "new" for line in lines)


def test_evaluation_without_checkpoint_is_an_error_outside_dry_run(repo):
    """A real base2new_test / xd_test run needs the trained checkpoint and says how to get it."""
    (repo / "data").mkdir()
    completed = run_script(
        repo, "prograd/base2new_test.sh", "dtd", DRY_RUN=None, DATA=str(repo / "data")
    )
    assert completed.returncode != 0
    assert "prompt_learner/model.pth.tar-100" in completed.stderr
    assert "bash scripts/prograd/base2new_train.sh dtd" in completed.stderr
    completed = run_script(
        repo, "coop/xd_test.sh", "imagenet_a", DRY_RUN=None, DATA=str(repo / "data")
    )
    assert "bash scripts/coop/xd_train.sh" in completed.stderr


@pytest.mark.parametrize("trainer", ["ProGrad", "CoOp"])
def test_xd_train_trains_imagenet_with_4_shots_for_50_epochs(repo, trainer):
    """xd_train.sh is the few-shot protocol on ImageNet, all classes: 4 shots, rn50, 50 epochs."""
    lines = commands(repo, f"{trainer.lower()}/xd_train.sh")
    assert len(lines) == 3
    line = lines[0]
    assert option(line, "--dataset-config-file") == "configs/datasets/imagenet.yaml"
    assert option(line, "--output-dir") == f"output/imagenet/{trainer}/rn50_4shots/{VARIANT}/seed1"
    assert [option(line, key) for key in ("DATASET.NUM_SHOTS", "OPTIM.MAX_EPOCH")] == ["4", "50"]
    assert "DATASET.SUBSAMPLE_CLASSES" not in line


@pytest.mark.parametrize("trainer", ["ProGrad", "CoOp"])
def test_xd_test_evaluates_the_imagenet_model_on_a_target(repo, trainer):
    """xd_test.sh loads the xd_train model at epoch 50 and evaluates it on the target."""
    lines = commands(repo, f"{trainer.lower()}/xd_test.sh", "imagenet_sketch")
    common = f"{trainer}/rn50_4shots/{VARIANT}"
    assert [option(line, "--output-dir") for line in lines] == [
        f"output/evaluation/{common}/imagenet_sketch/seed{seed}" for seed in (1, 2, 3)
    ]
    line = lines[0]
    assert option(line, "--dataset-config-file") == "configs/datasets/imagenet_sketch.yaml"
    assert option(line, "--model-dir") == f"output/imagenet/{common}/seed1"
    assert option(line, "--load-epoch") == "50" and "--eval-only" in line
    completed = run_script(repo, f"{trainer.lower()}/xd_test.sh", "imagenet")
    assert completed.returncode != 0 and "imagenet is the source" in completed.stderr


def test_zeroshot_evaluates_with_coop_config_without_seed(repo):
    """zeroshot.sh: ZeroshotCLIP, CoOp's config, --eval-only; SUBS adds base/new directories."""
    (line,) = commands(repo, "zeroshot.sh", "dtd", "rn50")
    assert line == [
        "python",
        "train.py",
        "--root",
        "/datasets",
        "--trainer",
        "ZeroshotCLIP",
        "--dataset-config-file",
        "configs/datasets/dtd.yaml",
        "--config-file",
        "configs/trainers/CoOp/rn50.yaml",
        "--output-dir",
        "output/ZeroshotCLIP/rn50/dtd",
        "--eval-only",
    ]
    base, new = commands(repo, "zeroshot.sh", "dtd", "rn50", SUBS="base new")
    assert option(base, "--output-dir") == "output/base2new/test_base/dtd/shots_0/ZeroshotCLIP/rn50"
    assert option(new, "DATASET.SUBSAMPLE_CLASSES") == "new"


def test_real_run_calls_train_py_then_skips_the_finished_runs(repo):
    """Without DRY_RUN the command runs; a second call finds complete logs and runs nothing."""
    (repo / "data").mkdir()
    settings = {
        "DRY_RUN": None,
        "DATA": str(repo / "data"),
        "SEEDS": "1 2",
        "PYTHON": sys.executable,
    }
    completed = run_script(repo, "prograd/main.sh", "eurosat", "rn50", "8", **settings)
    assert completed.returncode == 0, completed.stderr
    calls = (repo / "calls.txt").read_text().splitlines()
    assert len(calls) == 2 and "LOSS.LAMBDA 0.8" in calls[0]
    completed = run_script(repo, "prograd/main.sh", "eurosat", "rn50", "8", **settings)
    assert completed.returncode == 0, completed.stderr
    assert (repo / "calls.txt").read_text().splitlines() == calls
    assert completed.stderr.count("skip:") == 2


def test_failed_run_stops_the_script_with_its_directory(repo):
    """A train.py failure ends the script non-zero, naming the run to look at."""
    (repo / "data").mkdir()
    (repo / "train.py").write_text("raise SystemExit(3)\n")
    completed = run_script(
        repo,
        "coop/main.sh",
        "dtd",
        "rn50",
        "1",
        DRY_RUN=None,
        DATA=str(repo / "data"),
        PYTHON=sys.executable,
    )
    assert completed.returncode != 0
    assert "the run in output/dtd/CoOp/rn50_1shots" in completed.stderr
    assert "seed2" not in completed.stderr


def test_extra_opts_end_every_train_py_command_of_every_protocol(repo):
    """EXTRA_OPTS KEY VALUE pairs close every protocol's commands; a lone word is an error."""
    extra = ["MODEL.BACKBONE.PATH", "/models/RN50.pt", "INPUT.SIZE", "(32,32)"]
    calls = [
        ("prograd/main.sh", "dtd", "rn50", "1"),
        ("coop/main.sh", "dtd", "rn50", "1"),
        ("prograd/base2new_train.sh", "dtd"),
        ("coop/base2new_test.sh", "dtd"),
        ("prograd/xd_train.sh",),
        ("coop/xd_test.sh", "imagenetv2"),
        ("zeroshot.sh", "dtd", "rn50"),
    ]
    for call in calls:
        lines = commands(repo, *call, EXTRA_OPTS="  ".join(extra))
        assert lines and all(line[-len(extra) :] == extra for line in lines), call
        assert commands(repo, *call)[0][-1] != extra[-1]  # unset: nothing appended
    completed = run_script(
        repo, "prograd/main.sh", "dtd", "rn50", "1", EXTRA_OPTS="MODEL.BACKBONE.PATH"
    )
    assert completed.returncode != 0 and completed.stdout == ""
    assert 'EXTRA_OPTS="MODEL.BACKBONE.PATH" has 1 words, not KEY VALUE pairs' in completed.stderr


def test_extra_opts_accept_dassl_top_level_keys(repo):
    """USE_CUDA, SEED and OUTPUT_DIR (no dot in the key) pass through to every command."""
    extra = ["USE_CUDA", "False", "SEED", "7", "OUTPUT_DIR", "/tmp/x"]
    lines = commands(repo, "coop/main.sh", "dtd", "rn50", "1", EXTRA_OPTS=" ".join(extra))
    assert lines and all(line[-len(extra) :] == extra for line in lines)
    completed = run_script(repo, "coop/main.sh", "dtd", "rn50", "1", EXTRA_OPTS="/models/x.pt A")
    assert completed.returncode != 0 and "'/models/x.pt' where a config key" in completed.stderr


def test_self_generating_dataset_runs_without_data(repo):
    """DATA unset: tinyworld defaults to <repo>/data with a note; other datasets still need DATA."""
    (repo / "configs" / "datasets" / "tinyworld.yaml").touch()
    completed = run_script(repo, "prograd/main.sh", "tinyworld", "rn50", "1", DATA=None)
    assert completed.returncode == 0, completed.stderr
    lines = [shlex.split(line) for line in completed.stdout.splitlines()]
    assert [option(line, "--root") for line in lines] == [str(repo.resolve() / "data")] * 3
    assert f"DATA is not set; using {repo.resolve() / 'data'}" in completed.stderr
    completed = run_script(repo, "coop/xd_test.sh", "tinyworld", DATA=None)
    assert completed.returncode == 0, completed.stderr
    completed = run_script(repo, "prograd/main.sh", "dtd", "rn50", "1", DATA=None)
    assert completed.returncode != 0 and "DATA is not set; export" in completed.stderr


def test_real_run_without_data_creates_the_self_generating_root(repo):
    """A real tinyworld run without DATA creates <repo>/data and passes it to train.py."""
    (repo / "configs" / "datasets" / "tinyworld.yaml").touch()
    settings = {"DRY_RUN": None, "DATA": None, "SEEDS": "1", "PYTHON": sys.executable}
    completed = run_script(repo, "coop/main.sh", "tinyworld", "rn50", "2", **settings)
    assert completed.returncode == 0, completed.stderr
    assert (repo / "data").is_dir()
    assert f"--root {repo.resolve() / 'data'}" in (repo / "calls.txt").read_text()


def test_a_run_held_by_another_process_is_skipped(repo):
    """A run whose lock a live process holds is not started twice; the others run."""
    held = repo / "output" / "dtd" / "CoOp" / "rn50_1shots" / VARIANT / "seed1"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK.format(run_dir=str(held))],
        cwd=REPO_ROOT,  # python -c imports from the current folder
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        (repo / "data").mkdir()
        settings = {"DRY_RUN": None, "DATA": str(repo / "data"), "PYTHON": sys.executable}
        completed = run_script(repo, "coop/main.sh", "dtd", "rn50", "1", SEEDS="1 2", **settings)
    finally:
        holder.kill()
        holder.wait()
    assert completed.returncode == 0, completed.stderr
    assert f"busy: output/dtd/CoOp/rn50_1shots/{VARIANT}/seed1 is being run by pid" in (
        completed.stderr
    )
    (call,) = (repo / "calls.txt").read_text().splitlines()
    assert "--seed 2" in call


HOLD_LOCK = """
import time
from experiments.locks import RunLock
print(RunLock({run_dir!r}).acquire(), flush=True)
time.sleep(60)
"""
