"""A method declared from a module of its own (devkit/toy_method.py, through PROGRAD_PLUGINS) is
seen by train.py, the scripts' protocols, the sweep's dry run and the tables, with no other file
edited."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.logs import training_log, write
from devkit.script_runs import option

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = {"PROGRAD_PLUGINS": "devkit.toy_method"}


def run_tool(*argv: str, **env: str) -> subprocess.CompletedProcess:
    """A tools/ command as a user runs it, from the repository root, with PROGRAD_PLUGINS set."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env={**os.environ, **PLUGIN, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_train_py_registers_the_toy_trainer_and_declares_its_key(
    monkeypatch, tmp_path, tiny_clip_files
):
    """train.py builds ToyCoOp and reads TRAINER.TOY.SCALE: scale 0 (no weight decay) leaves the
    context as it was, where CoOp's step would move it."""
    pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
    from devkit.synthetic_data import write_caltech101
    from devkit.train_runs import build, snapshot

    monkeypatch.setenv("PROGRAD_PLUGINS", PLUGIN["PROGRAD_PLUGINS"])
    data = write_caltech101(tmp_path / "data", num_classes=4, images_per_class=8)
    trainer = build(
        monkeypatch, "ToyCoOp", "configs/trainers/CoOp/rn50.yaml", tmp_path / "run", data,
        tiny_clip_files["RN"], "TRAINER.TOY.SCALE", "0.0", "OPTIM.WEIGHT_DECAY", "0.0", epochs=1,
    )  # fmt: skip
    assert type(trainer).__name__ == "ToyCoOp" and trainer.cfg.TRAINER.TOY.SCALE == 0.0
    before = snapshot(trainer.prompt_learner)
    trainer.train()
    assert snapshot(trainer.prompt_learner)["ctx"].equal(before["ctx"])
    assert (tmp_path / "run" / "prompt_learner" / "model.pth.tar-1").is_file()


def test_the_scripts_and_the_sweep_plan_its_runs_from_its_declaration(tmp_path):
    """The scripts' planner gives its trainer and epochs; the sweep's dry run lists its run."""
    planned = run_tool(
        "tools/protocols.py", "run", "fewshot", "Toy", "caltech101", "rn50", "4",
        DRY_RUN="1", DATA=str(tmp_path), SEEDS="1", OUTPUT=str(tmp_path / "out"),
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    (command,) = [shlex.split(line) for line in planned.stdout.splitlines()]
    assert option(command, "--trainer") == "ToyCoOp" and option(command, "OPTIM.MAX_EPOCH") == "2"
    run_dir = tmp_path / "out/caltech101/Toy/rn50_4shots/nctx16_cscFalse_ctpend/seed1"
    assert option(command, "--output-dir") == str(run_dir)

    swept = run_tool(
        "tools/sweep.py", "fewshot", "--trainers", "Toy", "--datasets", "caltech101",
        "--shots", "4", "--seeds", "1", "--dry-run",
        DATA=str(tmp_path), OUTPUT=str(tmp_path / "out"),
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    assert f"new        train {run_dir}" in swept.stdout


def compared_rows(tables: str) -> list[str]:
    """The method column of the "methods compared" table of a tables tool's output."""
    compared = tables.split("methods compared", 1)[1]
    cells = [line.split("|")[1].strip() for line in compared.splitlines() if line.startswith("| ")]
    return [cell for cell in cells if cell != "Method"]


def test_the_tables_give_it_its_declared_row(tmp_path):
    """Its runs are a row of the few-shot table, placed by its declared row (after CoCoOp)."""
    for method, accuracy in (("CoOp", 70.0), ("KD", 72.0), ("Toy", 71.0)):
        run_dir = tmp_path / f"caltech101/{method}/rn50_4shots/nctx16_cscFalse_ctpend/seed1"
        write(run_dir, training_log(accuracy))
    tables = run_tool("tools/parse_results.py", str(tmp_path))
    assert tables.returncode == 0, tables.stderr
    assert compared_rows(tables.stdout) == ["CoOp", "Toy", "KD"]
    undeclared = run_tool("tools/parse_results.py", str(tmp_path), PROGRAD_PLUGINS="")
    assert compared_rows(undeclared.stdout) == ["CoOp", "KD", "Toy"]  # after the declared ones


def dry_run(script: str, *args: str, **env: str) -> str:
    """What ``bash scripts/<script> args`` prints with DRY_RUN=1 (its commands)."""
    completed = subprocess.run(
        ["bash", f"scripts/{script}", *args],
        cwd=ROOT,
        env={**os.environ, "DRY_RUN": "1", "DATA": "/datasets", "SEEDS": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.parametrize(
    ("method", "script", "args"),
    [
        ("ProGrad", "main", ("caltech101", "rn50", "16")),
        ("KgCoOp", "base2new_train", ("dtd",)),
        ("CoCoOp", "base2new_test", ("dtd",)),
        ("KD", "xd_train", ()),
        ("LinearProbeCLIP", "xd_test", ("imagenetv2",)),
    ],
)
def test_scripts_run_sh_is_each_methods_own_script(method, script, args):
    """scripts/run.sh METHOD SCRIPT gives the commands of scripts/<method>/<SCRIPT>.sh."""
    own = dry_run(f"{method.lower()}/{script}.sh", *args)
    assert own and dry_run("run.sh", method, script, *args) == own


def test_scripts_run_sh_runs_a_method_without_script_files():
    """The toy method has no scripts/ folder; scripts/run.sh plans its runs all the same."""
    (line,) = dry_run("run.sh", "Toy", "main", "caltech101", "rn50", "4", **PLUGIN).splitlines()
    assert option(shlex.split(line), "--trainer") == "ToyCoOp"
