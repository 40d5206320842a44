"""The whole pipeline in minutes on a CPU, with no downloads: data, training, tables, plots.

Usage (from anywhere):
    python tools/demo.py [--workdir demo_output] [--epochs 2] [--classes 5] [--shots 2]
                         [--seeds "1 2"] [--images-per-class 10]

Writes a small synthetic dataset in Caltech101's real layout and a small random CLIP checkpoint
in OpenAI's format, then runs the real protocol scripts as a user would,

    bash scripts/prograd/main.sh caltech101 rn50 SHOTS
    bash scripts/coop/main.sh caltech101 rn50 SHOTS

with DATA, OUTPUT, SEEDS, EPOCHS and EXTRA_OPTS (the tiny CLIP file, 32x32 images, fp32, small
batches) set, then prints `python tools/parse_results.py OUTPUT`'s tables and a ProGrad vs CoOp
summary, and draws the accuracy-vs-shots figure and each method's training curves.

The CLIP is random, so the accuracies say nothing about the methods: the demo shows what runs,
what is written where, and what the tools make of it. Everything lands under --workdir:
data/, clip/, output/ (the runs), logs/ (the scripts' output), *.png. Running the demo again
reuses the data and skips finished runs; a new --epochs, --shots or --seeds adds runs next to
them, and nothing already there is overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    # Run as a file (python tools/demo.py): make the repository root importable.
    sys.path.insert(0, str(REPO_ROOT))
# The synthetic dataset and the tiny CLIP are the test suite's helpers (tests/synthetic_data.py,
# tests/tiny_clip.py): one copy of each, used by the tests and by this demo alike.
sys.path.insert(0, str(REPO_ROOT / "tests"))
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # clip's own import

from synthetic_data import split_counts, write_caltech101  # noqa: E402
from tabulate import tabulate  # noqa: E402
from tiny_clip import IMAGE_SIZE, write_tiny_clip  # noqa: E402

from tools.plot_curves import load_curves, plot_curves  # noqa: E402
from tools.results import TRAINER_ORDER, aggregate, collect_runs, format_stat  # noqa: E402

DATASET = "caltech101"
CFG = "rn50"
TRAINERS = ("ProGrad", "CoOp")
SETTINGS_FILE = "demo.json"
# Fixed options for the tiny CLIP on a CPU. The LR is above the paper's 0.002 and warmup is off
# so that a two-epoch run visibly moves the prompt.
DEMO_OPTIONS = (
    ("INPUT.SIZE", f"({IMAGE_SIZE},{IMAGE_SIZE})"),  # the tiny CLIP's resolution
    ("TRAINER.COOP.PREC", "fp32"),  # fp16 matmuls are slow or missing on CPUs
    ("DATALOADER.NUM_WORKERS", "0"),
    ("DATALOADER.TRAIN_X.BATCH_SIZE", "4"),
    ("DATALOADER.TEST.BATCH_SIZE", "32"),
    ("OPTIM.LR", "0.05"),
    ("OPTIM.WARMUP_EPOCH", "0"),
    ("TRAIN.PRINT_FREQ", "1"),
)
# Protocol settings a user may have exported for real runs; the demo uses the defaults instead.
CLEARED_VARIABLES = ("DRY_RUN", "LAMBDA", "NCTX", "CSC", "CTP", "CFG", "SHOTS", "LOADEP", "SUBS")
# The notes scripts/common.sh prints for each run directory.
RUN_NOTES = ("run: ", "skip: ", "rerun: ")


@dataclass(frozen=True)
class DataSettings:
    """What the synthetic dataset of a workdir was made with; its runs were trained on it."""

    classes: int
    images_per_class: int


def check_arguments(args: argparse.Namespace) -> list[int]:
    """The seeds, after checking every argument; raises ValueError naming the bad one."""
    for name in ("epochs", "classes", "shots", "images_per_class"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is {getattr(args, name)}; give a positive integer.")
    try:
        seeds = [int(seed) for seed in args.seeds.split()]
    except ValueError:
        seeds = []
    if not seeds or any(seed < 0 for seed in seeds):
        raise ValueError(f'--seeds is "{args.seeds}"; give integers >= 0, e.g. --seeds "1 2".')
    n_train = split_counts(args.images_per_class)[0]  # raises below 4 images per class
    if args.shots > n_train:
        raise ValueError(
            f"--shots {args.shots} is more than the {n_train} training images per class that "
            f"--images-per-class {args.images_per_class} gives; lower --shots or raise "
            f"--images-per-class (half of the images are for training)."
        )
    return seeds


def prepare_workdir(workdir: Path, settings: DataSettings) -> None:
    """Create `workdir`, or check that an existing one was made by the demo with `settings`.

    Raises:
        ValueError: the path holds whitespace (EXTRA_OPTS splits at it), is a non-empty folder
            the demo did not make, or was made with other data settings.
    """
    if any(character.isspace() for character in str(workdir)):
        raise ValueError(
            f"--workdir {str(workdir)!r} contains whitespace; the demo passes the CLIP file "
            f"inside it through EXTRA_OPTS, which splits at whitespace. Choose a path without "
            f"spaces."
        )
    settings_file = workdir / SETTINGS_FILE
    if settings_file.is_file():
        recorded = DataSettings(**json.loads(settings_file.read_text()))
        if recorded != settings:
            raise ValueError(
                f"{workdir} was made with --classes {recorded.classes} --images-per-class "
                f"{recorded.images_per_class}, and its runs were trained on that data. Rerun "
                f"with those values, or pass a new --workdir."
            )
        return
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise ValueError(
            f"{workdir} exists and was not made by the demo (it has no {SETTINGS_FILE}); pass "
            f"a new or empty --workdir so that nothing in it is overwritten."
        )
    workdir.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps(asdict(settings), indent=2) + "\n")


def ensure_dataset(workdir: Path, settings: DataSettings) -> Path:
    """The synthetic Caltech101 root (DATA), written on the first call and reused after."""
    root = workdir / "data"
    if root.is_dir():
        print(f"Reusing the synthetic Caltech101 in {root}")
        return root
    # Written next to its final place and renamed, so an interrupted demo leaves no half dataset.
    partial = workdir / "data.partial"
    shutil.rmtree(partial, ignore_errors=True)
    write_caltech101(partial, settings.classes, settings.images_per_class, IMAGE_SIZE)
    partial.rename(root)
    n_train, n_val, n_test = split_counts(settings.images_per_class)
    print(
        f"Wrote a synthetic Caltech101 to {root}: {settings.classes} classes, "
        f"{n_train}/{n_val}/{n_test} train/val/test images per class, {IMAGE_SIZE}x{IMAGE_SIZE}"
    )
    return root


def ensure_clip(workdir: Path) -> Path:
    """A tiny random CLIP state dict in OpenAI's format, written on the first call."""
    path = workdir / "clip" / "tiny_RN.pt"
    if path.is_file():
        print(f"Reusing the tiny random CLIP {path}")
        return path
    partial = write_tiny_clip(path.with_suffix(".partial"), "RN")
    partial.rename(path)
    print(f"Wrote a tiny random CLIP (modified ResNet, OpenAI's state-dict format) to {path}")
    return path


def script_environment(
    workdir: Path, clip_file: Path, seeds: list[int], epochs: int
) -> dict[str, str]:
    """The environment for scripts/*/main.sh: the demo's data, output, seeds and options."""
    environment = {k: v for k, v in os.environ.items() if k not in CLEARED_VARIABLES}
    extra = [("MODEL.BACKBONE.PATH", str(clip_file)), *DEMO_OPTIONS]
    environment.update(
        DATA=str(workdir / "data"),
        OUTPUT=str(workdir / "output"),
        SEEDS=" ".join(str(seed) for seed in seeds),
        EPOCHS=str(epochs),
        PYTHON=sys.executable,
        EXTRA_OPTS=" ".join(f"{key} {value}" for key, value in extra),
        OUTDATED_IGNORE="1",  # no PyPI version check when train.py imports Dassl
    )
    return environment


def run_protocol(trainer: str, shots: int, environment: dict[str, str], log: Path) -> list[Path]:
    """Run scripts/<trainer>/main.sh; return its run directories (new, resumed or skipped).

    The script's output is appended to `log`; its per-run notes are printed.

    Raises:
        RuntimeError: the script failed; the message holds the end of its output.
    """
    command = ["bash", f"scripts/{trainer.lower()}/main.sh", DATASET, CFG, str(shots)]
    print(f"\n$ {' '.join(command)}    (output: {log})", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    with log.open("a") as output:
        output.write(f"$ {' '.join(command)}\n")
        output.flush()
        completed = subprocess.run(
            command, cwd=REPO_ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    with log.open("rb") as output:
        output.seek(start)
        this_call = output.read().decode(errors="replace").splitlines()
    notes = [line for line in this_call if line.startswith(RUN_NOTES)]
    for note in notes:
        print(f"  {note}")
    if completed.returncode != 0:
        tail = "\n".join(this_call[-25:])
        raise RuntimeError(
            f"{' '.join(command)} failed (exit {completed.returncode}); the end of {log}:\n{tail}"
        )
    # Each note is "<kind>: <run directory>[ has ...]"; the directory holds no spaces.
    return [Path(note.split(": ", 1)[1].split(" ", 1)[0]) for note in notes]


def _trainer_rank(trainer: str) -> int:
    return TRAINER_ORDER.index(trainer) if trainer in TRAINER_ORDER else len(TRAINER_ORDER)


def summary_table(output: Path, shots: int, run_dirs: dict[str, list[Path]]) -> str:
    """ProGrad and CoOp side by side for the runs of this call: mean ± std over the seeds."""
    wanted = {path.resolve() for paths in run_dirs.values() for path in paths}
    runs = [run for run in collect_runs(output).runs if run.log.parent.resolve() in wanted]
    stats = sorted(aggregate(runs).items(), key=lambda item: _trainer_rank(item[0].trainer))
    rows = [
        [setting.trainer, setting.shots, " ".join(map(str, stat.seeds)), format_stat(stat)]
        for setting, stat in stats
    ]
    headers = ["Method", "Shots", "Seeds", "Accuracy (%)"]
    body = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    title = f"Demo summary, {shots} shots (a random tiny CLIP: the numbers show the pipeline only)"
    return f"{title}\n\n{body}"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO_ROOT / "demo_output",
        help="where everything is written (default: demo_output/ in the repo)",
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per run (2)")
    parser.add_argument("--classes", type=int, default=5, help="synthetic classes (5)")
    parser.add_argument("--shots", type=int, default=2, help="training images per class (2)")
    parser.add_argument("--seeds", default="1 2", help='seeds, space-separated ("1 2")')
    parser.add_argument(
        "--images-per-class",
        type=int,
        default=10,
        help="synthetic images per class, half for training (10)",
    )
    args = parser.parse_args(argv)

    workdir = args.workdir.expanduser().resolve()
    settings = DataSettings(args.classes, args.images_per_class)
    try:
        seeds = check_arguments(args)
        prepare_workdir(workdir, settings)
        ensure_dataset(workdir, settings)
        clip_file = ensure_clip(workdir)
        environment = script_environment(workdir, clip_file, seeds, args.epochs)
        logs = workdir / "logs"
        run_dirs = {
            trainer: run_protocol(trainer, args.shots, environment, logs / f"{trainer}.log")
            for trainer in TRAINERS
        }
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    output = workdir / "output"
    fewshot_png = workdir / "fewshot.png"
    command = [sys.executable, "tools/parse_results.py", str(output), "--plot", str(fewshot_png)]
    print(f"\n$ python tools/parse_results.py {output} --plot {fewshot_png}\n", flush=True)
    if subprocess.run(command, cwd=REPO_ROOT).returncode != 0:
        print("error: tools/parse_results.py failed; see its message above.", file=sys.stderr)
        return 1
    print(summary_table(output, args.shots, run_dirs))

    print("\nTraining curves (python tools/plot_curves.py RUN_DIR):")
    for trainer, directories in run_dirs.items():
        png = workdir / f"curves_{trainer}.png"
        try:
            curves, source = load_curves(directories[0])
            plot_curves(curves, png, f"{trainer}, {directories[0].name} (from {source})")
        except ValueError as error:
            print(f"  no curves for {trainer}: {error}")
            continue
        print(f"  wrote {png}")
    prograd_run = run_dirs["ProGrad"][0]
    print(
        f"\nNext: the words nearest to ProGrad's learned context (random here, meaningful with "
        f"real CLIP weights):\n  python tools/interpret_prompt.py {prograd_run}\n"
        f"Real runs: DATA=/path/to/datasets bash scripts/prograd/main.sh caltech101 rn50 16"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
