"""experiments/plots.py (tools/plot_curves.py): a run's curves from tensorboard events or
log.txt, drawn into a PNG."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.plots import load_curves, main, parse_log

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROGRAD_PANELS = ["ProGrad: conflicting steps (%)", "ProGrad: mean cos(g_ce, g_kl)"]


@pytest.fixture(scope="module")
def prograd_run(tmp_path_factory, tiny_clip_files) -> Path:
    """A real two-epoch ProGrad run of train.py (tiny CLIP, synthetic Caltech101, CPU)."""
    pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
    from devkit.synthetic_data import write_caltech101

    folder = tmp_path_factory.mktemp("prograd_run")
    data = write_caltech101(folder / "data", num_classes=3, images_per_class=8)
    run_dir = folder / "run"
    command = [
        sys.executable, "train.py", "--root", str(data), "--seed", "1", "--trainer", "ProGrad",
        "--dataset-config-file", "configs/datasets/caltech101.yaml",
        "--config-file", "configs/trainers/ProGrad/rn50.yaml", "--output-dir", str(run_dir),
        "MODEL.BACKBONE.PATH", str(tiny_clip_files["RN"]), "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
        "DATALOADER.TEST.BATCH_SIZE", "16", "DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "2",
        "TRAINER.COOP.PREC", "fp32", "TRAIN.PRINT_FREQ", "1",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_real_prograd_run_gives_a_png_with_every_panel(prograd_run, tmp_path, capsys):
    """A ProGrad run's events give a PNG with losses, accuracies and the conflict panels."""
    output = tmp_path / "curves.png"
    assert main([str(prograd_run), "-o", str(output)]) == 0
    assert output.read_bytes().startswith(PNG_MAGIC)
    printed = capsys.readouterr().out
    for panel in ["cross-entropy loss", "KL loss to zero-shot CLIP", "training accuracy (%)",
                  "evaluation accuracy (%)", *PROGRAD_PANELS]:  # fmt: skip
        assert panel in printed
    assert "from tensorboard events" in printed
    curves, _ = load_curves(prograd_run)
    assert [step for step, _ in curves["prograd/conflict_share"]] == [1, 2]
    assert [step for step, _ in curves["test/accuracy"]] == [1]  # Dassl's 0-based last epoch


def test_log_fallback_reads_the_same_curves_as_the_events(prograd_run, tmp_path):
    """Without event files, log.txt gives the same tags, steps and (rounded) values."""
    from_events, _ = load_curves(prograd_run)
    log_only = tmp_path / "seed1"
    log_only.mkdir()
    shutil.copy(prograd_run / "log.txt", log_only / "log.txt")
    from_log, source = load_curves(log_only)
    assert source == "log.txt"
    assert set(from_log) == set(from_events)
    for tag, points in from_events.items():
        assert [step for step, _ in from_log[tag]] == [step for step, _ in points], tag
        # The log rounds percentages to 1 decimal, losses to 4, the removed norm to 4 digits.
        percent = tag.endswith(("acc", "accuracy", "error_rate", "macro_f1"))
        for (_, logged), (_, written) in zip(from_log[tag], points, strict=True):
            assert logged == pytest.approx(written, rel=1e-3, abs=0.05 if percent else 1e-3), tag
    assert main([str(log_only)]) == 0 and (log_only / "curves.png").is_file()


def test_coop_events_draw_loss_without_prograd_panels(tmp_path, capsys):
    """Synthetic CoOp events (train/loss, train/acc, test/accuracy): no ProGrad panels."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "run" / "tensorboard"))
    for step in range(6):
        writer.add_scalar("train/loss", 2.0 - 0.1 * step, step)
        writer.add_scalar("train/acc", 10.0 * step, step)
        writer.add_scalar("train/lr", 0.002, step)
    writer.add_scalar("test/accuracy", 55.0, 2)
    writer.close()
    assert main([str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "cross-entropy loss" in printed and "evaluation accuracy (%)" in printed
    assert not any(panel in printed for panel in PROGRAD_PANELS + ["KL loss to zero-shot CLIP"])
    assert (tmp_path / "run" / "curves.png").read_bytes().startswith(PNG_MAGIC)


def test_log_parser_reads_resumed_runs_in_order():
    """Two logs of a resumed run extend the same curves; the epoch steps continue."""
    first = "epoch [1/2] batch [1/1] time 1.0 (1.0) data 0.1 (0.1) loss 2.0000 (2.0000) lr 1e-05\n"
    second = (
        "epoch [2/2] batch [1/1] time 1.0 (1.0) data 0.1 (0.1) loss 1.5000 (1.5000) lr 2e-03\n"
        "Finish training\nEvaluate on the *test* set\n=> result\n* total: 9\n* accuracy: 40.0%\n"
    )
    curves = parse_log(second, parse_log(first))
    assert curves["train/loss"] == [(0, 2.0), (1, 1.5)]
    assert curves["train/lr"] == [(0, 1e-05), (1, 2e-03)]
    assert curves["test/accuracy"] == [(1, 40.0)]
    assert "train/time" not in curves


def test_missing_or_empty_run_directory_is_a_clear_error(tmp_path, capsys):
    """A missing directory, or one without events or training lines, exits 2 saying why."""
    assert main([str(tmp_path / "no-such-run")]) == 2
    assert "no-such-run does not exist" in capsys.readouterr().err
    (tmp_path / "output" / "caltech101" / "seed1").mkdir(parents=True)
    (tmp_path / "output" / "caltech101" / "seed1" / "log.txt").write_text("Loading trainer\n")
    assert main([str(tmp_path / "output")]) == 2
    error = capsys.readouterr().err
    assert "No training curves" in error and "caltech101/seed1: give one of them" in error
    assert not (tmp_path / "output" / "curves.png").exists()
