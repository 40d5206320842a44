"""Training curves of one CoOp / ProGrad run as a PNG.

Usage (from the repository root):
    python tools/plot_curves.py RUN_DIR [-o FILE.png]

RUN_DIR is one seed's directory as train.py writes it, e.g.
output/caltech101/ProGrad/rn50_16shots/nctx16_cscFalse_ctpend/seed1. Panels, each drawn when the
run has its data: the cross-entropy loss (ProGrad's xe_loss, CoOp's loss), ProGrad's kl_loss,
the training accuracy (Dassl's running averages over each epoch, per iteration), the val/test
accuracy, and ProGrad's per-epoch share of conflicting steps and mean cos(g_ce, g_kl).

The values come from the run's tensorboard event files (Dassl writes them to RUN_DIR/tensorboard),
or, when there are none, from the lines train.py printed into RUN_DIR/log.txt*. The default
output is RUN_DIR/curves.png.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from experiments.atomic import save_figure

# tag -> [(step, value)], with Dassl's tag names and steps: "train/<loss>" at iteration
# epoch * num_batches + batch (0-based), "<split>/accuracy" at the 0-based epoch,
# "prograd/<statistic>" at the 1-based epoch.
Curves = dict[str, list[tuple[int, float]]]

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"
_TRAIN_LINE = re.compile(r"^epoch \[(\d+)/\d+\] batch \[(\d+)/(\d+)\] (.*)$")
_METER = re.compile(rf"(\w+) ({_NUMBER}) \(({_NUMBER})\)")
_LR = re.compile(rf"\blr ({_NUMBER})")
_PROGRAD_LINE = re.compile(
    rf"^ProGrad epoch (\d+): conflicting steps ({_NUMBER})%, mean cos\(g_ce, g_kl\) "
    rf"({_NUMBER}), mean norm removed by the projection ({_NUMBER})"
)
_EVALUATE = re.compile(r"^Evaluate on the \*(\w+)\* set")
_RESULT = re.compile(rf"^\* (accuracy|error|macro_f1): ({_NUMBER})%")
# The result lines of Dassl's Classification evaluator, by the key it writes to tensorboard.
_RESULT_TAGS = {"accuracy": "accuracy", "error": "error_rate", "macro_f1": "macro_f1"}
_TIMING_METERS = ("time", "data")  # printed as meters but not written to tensorboard


@dataclass(frozen=True)
class Panel:
    """One subplot: the tags it draws (those present), against iterations or epochs."""

    title: str
    tags: tuple[str, ...]
    per_epoch: bool  # steps are epochs (x = step + epoch_offset) rather than iterations
    epoch_offset: int = 0  # Dassl writes evaluation at the 0-based epoch, ProGrad's at 1-based
    scale: float = 1.0  # e.g. 100 to show a share in percent
    zero_line: bool = False


PANELS = (
    Panel("cross-entropy loss", ("train/xe_loss", "train/loss"), per_epoch=False),
    Panel("KL loss to zero-shot CLIP", ("train/kl_loss",), per_epoch=False),
    Panel("training accuracy (%)", ("train/acc",), per_epoch=False),
    Panel(
        "evaluation accuracy (%)", ("val/accuracy", "test/accuracy"), per_epoch=True, epoch_offset=1
    ),
    Panel(
        "ProGrad: conflicting steps (%)", ("prograd/conflict_share",), per_epoch=True, scale=100.0
    ),
    Panel(
        "ProGrad: mean cos(g_ce, g_kl)", ("prograd/mean_cosine",), per_epoch=True, zero_line=True
    ),
)


def event_files(run_dir: Path) -> list[Path]:
    """The run's tensorboard event files (RUN_DIR/tensorboard, or RUN_DIR itself)."""
    files = []
    for folder in (run_dir / "tensorboard", run_dir):
        files += sorted(folder.glob("events.out.tfevents.*"))
    return [file for file in files if file.is_file()]


def read_events(files: list[Path]) -> Curves:
    """Every scalar of the given event files, in step order."""
    # Imported here: tensorboard is slow to import and only the event path needs it.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: Curves = {}
    for file in files:
        accumulator = EventAccumulator(str(file), size_guidance={"scalars": 0})  # keep all
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            points = [(event.step, event.value) for event in accumulator.Scalars(tag)]
            curves.setdefault(tag, []).extend(points)
    return {tag: sorted(points) for tag, points in curves.items()}


def log_files(run_dir: Path) -> list[Path]:
    """log.txt, then the log.txt-<timestamp> files of resumed runs, oldest first."""
    logs = [run_dir / "log.txt"] + sorted(run_dir.glob("log.txt-*"))
    return [log for log in logs if log.is_file()]


def parse_log(text: str, curves: Curves | None = None) -> Curves:
    """The curves in a train.py log, with the tags and steps Dassl gives them in tensorboard.

    Args:
        text: the log's content.
        curves: curves to extend (the logs of a resumed run are read in turn).
    """
    curves = {} if curves is None else curves
    split = None
    epoch = 0  # the 1-based epoch of the last training line, for evaluation results
    for line in text.splitlines():
        if match := _TRAIN_LINE.match(line):
            epoch, batch, num_batches = (int(group) for group in match.groups()[:3])
            step = (epoch - 1) * num_batches + batch - 1
            for name, _, average in _METER.findall(match.group(4)):
                if name not in _TIMING_METERS:
                    curves.setdefault(f"train/{name}", []).append((step, float(average)))
            if lr := _LR.search(match.group(4)):
                curves.setdefault("train/lr", []).append((step, float(lr.group(1))))
        elif match := _PROGRAD_LINE.match(line):
            prograd_epoch = int(match.group(1))
            share, cosine, removed = (float(group) for group in match.groups()[1:])
            for name, value in (
                ("conflict_share", share / 100),
                ("mean_cosine", cosine),
                ("mean_removed_norm", removed),
            ):
                curves.setdefault(f"prograd/{name}", []).append((prograd_epoch, value))
        elif match := _EVALUATE.match(line):
            split = match.group(1)
        elif split and (match := _RESULT.match(line)):
            tag = f"{split}/{_RESULT_TAGS[match.group(1)]}"
            curves.setdefault(tag, []).append((max(epoch - 1, 0), float(match.group(2))))
    return curves


def load_curves(run_dir: Path | str) -> tuple[Curves, str]:
    """The run's curves and where they came from ("tensorboard events" or "log.txt").

    Raises:
        FileNotFoundError: `run_dir` is not a directory.
        ValueError: neither event files nor logs of `run_dir` hold any curve.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"Run directory {run_dir} does not exist. Give one seed's output directory of "
            f"train.py, e.g. output/caltech101/ProGrad/rn50_16shots/nctx16_cscFalse_ctpend/seed1."
        )
    files = event_files(run_dir)
    curves = read_events(files) if files else {}
    if curves:
        return curves, "tensorboard events"
    for log in log_files(run_dir):
        parse_log(log.read_text(errors="replace"), curves)
    if curves:
        return curves, "log.txt"
    below = sorted({log.parent for log in run_dir.rglob("log.txt")} - {run_dir})[:3]
    hint = (
        f" It holds runs below it, e.g. {', '.join(str(path) for path in below)}: give one of them."
        if below
        else " Give one seed's output directory of a train.py run that trained at least a step."
    )
    raise ValueError(
        f"No training curves in {run_dir}: no tensorboard scalars in {run_dir / 'tensorboard'} "
        f"and no training lines in a log.txt there.{hint}"
    )


def plot_curves(curves: Curves, path: Path | str, title: str = "") -> list[str]:
    """Draw the panels that `curves` has data for into a PNG; return their titles.

    Raises:
        ValueError: no panel has data (e.g. only train/lr was recorded).
    """
    # Imported here: matplotlib is slow to import and only the figure needs it. The Agg canvas
    # renders without a display and without pyplot's global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = [panel for panel in PANELS if any(curves.get(tag) for tag in panel.tags)]
    if not panels:
        raise ValueError(
            f"Nothing to plot: the run's curves ({', '.join(sorted(curves)) or 'none'}) include "
            f"none of {', '.join(tag for panel in PANELS for tag in panel.tags)}."
        )
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.4 * rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    # Epoch panels share one axis range, so a final test result sits at the last epoch.
    last_epoch = max(
        (
            step + panel.epoch_offset
            for panel in panels
            if panel.per_epoch
            for tag in panel.tags
            for step, _ in curves.get(tag, [])
        ),
        default=1,
    )
    for axis, panel in zip(axes.flat, panels, strict=False):
        for tag in panel.tags:
            points = curves.get(tag)
            if not points:
                continue
            steps = [step + (panel.epoch_offset if panel.per_epoch else 0) for step, _ in points]
            values = [value * panel.scale for _, value in points]
            # Single points (a final test accuracy) would be invisible as a line.
            marker = "o" if panel.per_epoch or len(points) < 30 else None
            axis.plot(steps, values, marker=marker, markersize=4, label=tag)
            if panel.per_epoch and len(points) == 1:
                axis.annotate(
                    f"{values[0]:.2f}",
                    (steps[0], values[0]),
                    textcoords="offset points",
                    xytext=(6, 6),
                )
        if panel.zero_line:
            axis.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
        axis.set_title(panel.title)
        axis.set_xlabel("epoch" if panel.per_epoch else "iteration")
        if panel.per_epoch:
            axis.set_xlim(0.5, last_epoch + 0.5)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    if title:
        figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    save_figure(figure, path, "the training curves plot", dpi=110)
    return [panel.title for panel in panels]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="one seed's output directory of train.py")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE.png",
        help="where to write the figure (default: RUN_DIR/curves.png)",
    )
    args = parser.parse_args(argv)
    output = args.output or args.run_dir / "curves.png"
    try:
        curves, source = load_curves(args.run_dir)
        title = f"{Path(*args.run_dir.resolve().parts[-5:])} (from {source})"
        drawn = plot_curves(curves, output, title)
    except (OSError, ValueError) as error:  # OSError: unreadable input, a failed write
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {output} ({', '.join(drawn)}; from {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
