"""tools/demo.py, shortened (1 epoch, 1 seed, 3 classes, 1 shot): synthetic data and a tiny CLIP
through the real run scripts, train.py and the results tools, on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from tools.demo import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--epochs", "1", "--seeds", "1", "--classes", "3", "--shots", "1",
         "--images-per-class", "4"]  # fmt: skip
RUN = "caltech101/{trainer}/rn50_1shots/nctx16_cscFalse_ctpend_epochs1/seed1"


def run_demo(workdir: Path) -> subprocess.CompletedProcess:
    """python tools/demo.py as a user runs it, from outside the repository."""
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--workdir", str(workdir), *SHORT],
        cwd=workdir.parent, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("demo") / "demo_output"
    return workdir, run_demo(workdir)


def test_demo_trains_both_methods_through_the_scripts_and_prints_their_tables(demo):
    """One call: ProGrad and CoOp runs with logs and checkpoints, tables with both, PNGs."""
    workdir, completed = demo
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    output = completed.stdout
    assert "$ bash scripts/prograd/main.sh caltech101 rn50 1" in output
    assert "$ bash scripts/coop/main.sh caltech101 rn50 1" in output
    for trainer in ("ProGrad", "CoOp"):
        assert f"Few-shot accuracy (%): {trainer} [" in output  # parse_results.py's tables
        assert f"| {trainer} " in output  # a row of the demo's summary table
        run_dir = workdir / "output" / RUN.format(trainer=trainer)
        log = (run_dir / "log.txt").read_text()
        assert "Finish training" in log and "* accuracy:" in log
        # EXTRA_OPTS reached train.py: the tiny CLIP file, not a download of RN50.
        assert f"PATH: {workdir / 'clip' / 'tiny_RN.pt'}" in log
        assert (run_dir / "prompt_learner" / "model.pth.tar-1").is_file()
        assert (workdir / f"curves_{trainer}.png").is_file()
    assert (workdir / "fewshot.png").is_file()


def test_second_demo_run_skips_finished_runs_and_keeps_their_results(demo):
    """Run again: both runs are skipped, their logs untouched, the tables printed again."""
    workdir, first = demo
    assert first.returncode == 0
    logs = {path: path.read_text() for path in (workdir / "output").rglob("log.txt*")}
    again = run_demo(workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("  skip: ") == 2
    assert "Reusing the synthetic Caltech101" in again.stdout
    assert {path: path.read_text() for path in (workdir / "output").rglob("log.txt*")} == logs
    assert "| ProGrad " in again.stdout and "| CoOp " in again.stdout


def test_demo_refuses_a_workdir_it_did_not_make_or_made_with_other_data(demo, tmp_path, capsys):
    """A non-empty foreign folder, or the demo's folder with other --classes: error, no writes."""
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert main(["--workdir", str(foreign), *SHORT]) == 1
    assert "was not made by the demo" in capsys.readouterr().err
    assert [path.name for path in foreign.iterdir()] == ["keep.txt"]

    workdir, _ = demo
    assert main(["--workdir", str(workdir), *SHORT[:4], "--classes", "4"]) == 1
    assert "was made with --classes 3" in capsys.readouterr().err
