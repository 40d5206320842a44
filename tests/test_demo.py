"""tools/demo.py, shortened (1 shot count, 1 epoch, 1 seed): TinyWorld and the shipped tiny CLIP
through the real run scripts, train.py and the results tools, on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from devkit.demo import main, script_environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--shots", "1", "--epochs", "1", "--base2new-shots", "1", "--base2new-epochs", "1",
         "--seeds", "1"]  # fmt: skip
FEWSHOT_RUN = "tinyworld/{method}/tiny_1shots/nctx16_cscFalse_ctpend_epochs1/seed1"
B2N_RUN = "base2new/{stage}/tinyworld/shots_1/{method}/tiny_epochs1/seed1"


def run_demo(workdir: Path) -> subprocess.CompletedProcess:
    """python tools/demo.py as a user runs it, from outside the repository."""
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--workdir", str(workdir), *SHORT],
        cwd=workdir.parent, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("demo") / "demo_output"
    return workdir, run_demo(workdir)


def test_demo_runs_every_protocol_through_the_scripts_and_prints_the_tables(demo):
    """One call: zero-shot, few-shot and base-to-new runs of the three methods on TinyWorld
    (generated on the way), with the shipped CLIP; the tables, the summary and the PNGs."""
    workdir, completed = demo
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    output = completed.stdout
    assert "TinyWorld: " in output and "generating it (3456 images)" in output
    assert '$ SUBS="all base new" bash scripts/zeroshot.sh tinyworld tiny' in output
    for method in ("ProGrad", "CoOp"):
        script = method.lower()
        assert f'$ EPOCHS="1" bash scripts/{script}/main.sh tinyworld tiny 1' in output
        assert f"bash scripts/{script}/base2new_test.sh tinyworld" in output
        assert f"Few-shot accuracy (%): {method}" in output  # parse_results.py's tables
        run_dir = workdir / "output" / FEWSHOT_RUN.format(method=method)
        log = (run_dir / "log.txt").read_text()
        assert "Finish training" in log and "* accuracy:" in log
        # The tiny config reached train.py: the shipped CLIP, not a download of RN50.
        assert "PATH: assets/tiny_clip_tinyworld.pt.gz" in log
        for stage in ("train_base", "test_base", "test_new"):
            assert (workdir / "output" / B2N_RUN.format(stage=stage, method=method)).is_dir()
        assert (workdir / f"curves_{method}.png").is_file()
    assert "Base-to-new accuracy (%): ZeroshotCLIP" in output
    summary = output[output.index("TinyWorld in miniature") :]
    for row in ("| Zero-shot CLIP ", "| CoOp ", "| ProGrad "):
        assert row in summary
    assert "| 1-shot " in summary and "| H " in summary
    for png in ("fewshot.png", "base2new.png"):
        assert (workdir / png).is_file()


def test_second_demo_run_skips_finished_runs_and_keeps_their_results(demo):
    """Run again: every run is skipped, the logs untouched, the tables printed again."""
    workdir, first = demo
    assert first.returncode == 0
    logs = {path: path.read_text() for path in (workdir / "output").rglob("log.txt*")}
    again = run_demo(workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("  skip: ") == 11  # 3 zero-shot, 2 few-shot, 2 + 4 base-to-new
    assert "  run: " not in again.stdout and "generating" not in again.stdout
    assert {path: path.read_text() for path in (workdir / "output").rglob("log.txt*")} == logs
    assert "| ProGrad " in again.stdout and "| CoOp " in again.stdout


def test_demo_refuses_a_workdir_it_did_not_make_or_made_with_another_clip(demo, tmp_path, capsys):
    """A non-empty foreign folder, or the demo's folder with --clip random: error, no writes."""
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert main(["--workdir", str(foreign), *SHORT]) == 1
    assert "was not made by the demo" in capsys.readouterr().err
    assert [path.name for path in foreign.iterdir()] == ["keep.txt"]

    workdir, _ = demo
    before = sorted(workdir.rglob("*"))
    assert main(["--workdir", str(workdir), *SHORT, "--clip", "random"]) == 1
    assert "was made with --clip pretrained" in capsys.readouterr().err
    assert sorted(workdir.rglob("*")) == before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--shots", "1 x"], '--shots is "1 x"'),
        (["--shots", "21"], "more than the 20 training images"),
        (["--seeds", "-1"], '--seeds is "-1"'),
    ],  # --epochs 0: refused by argparse (experiments/cli.py), probed by test_tool_flags.py
)
def test_bad_arguments_are_refused_before_anything_is_written(arguments, message, tmp_path, capsys):
    """Each bad argument: exit 1 with a message naming it; the workdir is not created."""
    workdir = tmp_path / "demo_output"
    assert main(["--workdir", str(workdir), *arguments]) == 1
    assert message in capsys.readouterr().err
    assert not workdir.exists()


def test_random_clip_mode_writes_its_clip_and_passes_it_to_every_script(tmp_path):
    """--clip random: a tiny random CLIP in the workdir, given to train.py via EXTRA_OPTS."""
    from devkit.demo import DemoSettings, ensure_random_clip, prepare_workdir

    workdir = tmp_path / "demo_output"
    prepare_workdir(workdir, DemoSettings("random"))
    assert json.loads((workdir / "demo.json").read_text()) == {"clip": "random"}
    clip_file = ensure_random_clip(workdir)
    assert clip_file.is_file() and clip_file.parent == workdir / "clip"
    environment = script_environment(workdir, [1], clip_file)
    assert environment["EXTRA_OPTS"] == f"MODEL.BACKBONE.PATH {clip_file}"
    assert environment["DATA"] == str(workdir / "data")
    assert "EXTRA_OPTS" not in script_environment(workdir, [1], None)
