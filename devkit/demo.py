"""The paper in miniature, on a CPU in minutes: zero-shot CLIP, CoOp and ProGrad on TinyWorld.

Usage (from anywhere):
    python tools/demo.py [--workdir demo_output] [--shots "1 4 16"] [--epochs 10]
                         [--base2new-epochs 20] [--seeds "1"] [--clip pretrained|random]

Runs the real protocol scripts, as a user would, on TinyWorld (the project's procedural world of
64 coloured shapes, generated on first use) with the project's tiny CLIP, pretrained on another
domain of that world and shipped in assets/ (configs/trainers/*/tiny.yaml):

    SUBS="all base new" bash scripts/zeroshot.sh tinyworld tiny        zero-shot CLIP
    bash scripts/{coop,prograd}/main.sh tinyworld tiny K              few-shot, K in --shots
    CFG=tiny bash scripts/{coop,prograd}/base2new_{train,test}.sh tinyworld    base-to-new

with DATA, OUTPUT, SEEDS and EPOCHS set, then prints `python tools/parse_results.py OUTPUT`'s
tables and a summary (few-shot accuracy per shot count; base, new and their harmonic mean H),
and draws the accuracy-vs-shots figure, a base-to-new figure and the base-to-new training
curves of CoOp and ProGrad.

--clip random swaps in a tiny random CLIP (written to the workdir) for the fastest smoke run:
everything runs, nothing learns. Everything lands under --workdir: data/ (TinyWorld), output/
(the runs), logs/ (the scripts' output), *.png. Running the demo again skips finished runs; new
--shots, --epochs or --seeds add runs next to them, and nothing already there is overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # clip's own import

import yaml  # noqa: E402
from tabulate import tabulate  # noqa: E402

from experiments.atomic import save_figure, write_text  # noqa: E402
from experiments.cli import positive_int  # noqa: E402
from experiments.plots import load_curves, plot_curves  # noqa: E402
from experiments.results import (  # noqa: E402
    ZERO_SHOT,
    Setting,
    Stat,
    aggregate,
    collect_runs,
    format_stat,
    harmonic_mean,
)

DATASET = "tinyworld"
CFG = "tiny"
TRAINERS = ("CoOp", "ProGrad")
METHODS = (ZERO_SHOT, *TRAINERS)
CLIPS = ("pretrained", "random")
SETTINGS_FILE = "demo.json"
# Protocol settings a user may have exported for real runs; the demo sets its own.
CLEARED_VARIABLES = (
    "DRY_RUN",
    "LAMBDA",
    "NCTX",
    "CSC",
    "CTP",
    "CFG",
    "SHOTS",
    "LOADEP",
    "SUBS",
    "EPOCHS",
    "EXTRA_OPTS",
)
# The notes scripts/common.sh prints for each run directory.
RUN_NOTES = ("run: ", "skip: ", "rerun: ")


@dataclass(frozen=True)
class DemoSettings:
    """What the runs of a workdir share, so that a second call adds to them consistently."""

    clip: str


def parse_numbers(flag: str, text: str, minimum: int) -> list[int]:
    """Space-separated integers >= `minimum`; raises ValueError naming `flag`."""
    try:
        values = [int(value) for value in text.split()]
    except ValueError:
        values = []
    if not values or any(value < minimum for value in values):
        raise ValueError(
            f'{flag} is "{text}"; give integers >= {minimum}, separated by spaces, e.g. '
            f'{flag} "{max(minimum, 1)} {max(minimum, 1) + 1}".'
        )
    return values


def check_arguments(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    """(seeds, shots) after checking every argument; raises ValueError naming the bad one."""
    for name in ("epochs", "base2new_epochs", "base2new_shots"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is {getattr(args, name)}; give a positive integer.")
    shots = parse_numbers("--shots", args.shots, 1)
    train_images = 20  # per class in TinyWorld's train split (datasets/tinyworld_world.py)
    for value in [*shots, args.base2new_shots]:
        if value > train_images:
            raise ValueError(
                f"{value} shots is more than the {train_images} training images per class of "
                f"TinyWorld; pick shot counts from 1 to {train_images}."
            )
    return parse_numbers("--seeds", args.seeds, 0), shots


def prepare_workdir(workdir: Path, settings: DemoSettings) -> None:
    """Create `workdir`, or check that an existing one was made by the demo with `settings`.

    Raises:
        ValueError: the path holds whitespace (EXTRA_OPTS splits at it), is a non-empty folder
            the demo did not make, or was made with another CLIP.
    """
    if any(character.isspace() for character in str(workdir)):
        raise ValueError(
            f"--workdir {str(workdir)!r} contains whitespace; the demo passes paths inside it "
            f"to the scripts, which split options at whitespace. Choose a path without spaces."
        )
    settings_file = workdir / SETTINGS_FILE
    if settings_file.is_file():
        recorded = json.loads(settings_file.read_text())
        if recorded != {"clip": settings.clip}:
            shown = recorded.get("clip", "an older version of the demo")
            raise ValueError(
                f"{workdir} was made with --clip {shown}, and its runs were trained with that "
                f"CLIP. Rerun with --clip {shown}, or pass a new --workdir."
            )
        return
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise ValueError(
            f"{workdir} exists and was not made by the demo (it has no {SETTINGS_FILE}); pass "
            f"a new or empty --workdir so that nothing in it is overwritten."
        )
    workdir.mkdir(parents=True, exist_ok=True)
    write_text(
        settings_file, json.dumps({"clip": settings.clip}, indent=2) + "\n", "the demo's settings"
    )


def configured_clip() -> Path:
    """The pretrained tiny CLIP that configs/trainers/*/tiny.yaml load (MODEL.BACKBONE.PATH).

    Raises:
        ValueError: the file is not there.
    """
    config = yaml.safe_load((REPO_ROOT / "configs" / "trainers" / "CoOp" / f"{CFG}.yaml").open())
    path = REPO_ROOT / config["MODEL"]["BACKBONE"]["PATH"]
    if not path.is_file():
        raise ValueError(
            f"the pretrained tiny CLIP {path} is missing (it ships with the repository). "
            f"Restore it (git checkout -- {path.relative_to(REPO_ROOT)}), or write one with "
            f"python tools/pretrain_tiny_clip.py, or run the demo with --clip random."
        )
    return path


def ensure_random_clip(workdir: Path) -> Path:
    """A tiny random CLIP (ViT, 32x32 input) in OpenAI's format, written on the first call."""
    # The test suite's helper (one copy for both); it imports torch and CLIP: only this mode
    # needs them.
    from devkit.tiny_clip import write_tiny_clip

    path = workdir / "clip" / "tiny_random_ViT.pt"
    if path.is_file():
        print(f"Reusing the tiny random CLIP {path}")
        return path
    partial = write_tiny_clip(path.with_suffix(".partial"), "ViT")
    partial.rename(path)
    print(f"Wrote a tiny random CLIP (OpenAI's state-dict format) to {path}")
    return path


def script_environment(workdir: Path, seeds: list[int], random_clip: Path | None) -> dict[str, str]:
    """The environment of every script call: the demo's data, output, seeds and options."""
    environment = {k: v for k, v in os.environ.items() if k not in CLEARED_VARIABLES}
    environment.update(
        DATA=str(workdir / "data"),
        OUTPUT=str(workdir / "output"),
        SEEDS=" ".join(str(seed) for seed in seeds),
        PYTHON=sys.executable,
        OUTDATED_IGNORE="1",  # no PyPI version check when train.py imports Dassl
    )
    # The tiny CLIP's tensors are too small to gain from several threads, and on cores shared
    # with other jobs OpenMP's waiting threads make a run several times slower.
    environment.setdefault("OMP_NUM_THREADS", "1")
    if random_clip is not None:
        environment["EXTRA_OPTS"] = f"MODEL.BACKBONE.PATH {random_clip}"
    return environment


def run_script(
    script: str,
    arguments: list[str],
    settings: dict[str, str],
    environment: dict[str, str],
    log: Path,
) -> list[Path]:
    """Run `bash scripts/<script> ARGUMENTS` with `settings` added to the environment.

    Returns its run directories (new, resumed or skipped); its output is appended to `log`,
    its per-run notes are printed.

    Raises:
        RuntimeError: the script failed; the message holds the end of its output.
    """
    shown = " ".join([*(f'{k}="{v}"' for k, v in settings.items()), "bash", f"scripts/{script}"])
    shown = f"{shown} {' '.join(arguments)}"
    print(f"\n$ {shown}    (output: {log})", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    with log.open("a") as output:
        output.write(f"$ {shown}\n")
        output.flush()
        completed = subprocess.run(
            ["bash", f"scripts/{script}", *arguments],
            cwd=REPO_ROOT,
            env={**environment, **settings},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    with log.open("rb") as output:
        output.seek(start)
        this_call = output.read().decode(errors="replace").splitlines()
    notes = [line for line in this_call if line.startswith(RUN_NOTES)]
    for line in this_call:
        if line.startswith(RUN_NOTES) or line.startswith("TinyWorld: "):
            print(f"  {line}")
    if completed.returncode != 0:
        tail = "\n".join(this_call[-25:])
        raise RuntimeError(
            f"{shown} failed (exit {completed.returncode}); the end of {log}:\n{tail}"
        )
    # Each note is "<kind>: <run directory>[ has ...]"; the directory holds no spaces.
    return [Path(note.split(": ", 1)[1].split(" ", 1)[0]) for note in notes]


@dataclass
class DemoRuns:
    """The run directories of one demo call, per protocol and method."""

    fewshot: dict[str, list[Path]]
    base2new_train: dict[str, list[Path]]
    evaluations: list[Path]  # zero-shot runs and base-to-new tests

    def all(self) -> set[Path]:
        paths = [
            path
            for group in (self.fewshot, self.base2new_train)
            for p in group.values()
            for path in p
        ]
        return {path.resolve() for path in [*paths, *self.evaluations]}


def run_protocols(
    environment: dict[str, str],
    shots: list[int],
    epochs: int,
    base2new: tuple[int, int],
    logs: Path,
) -> DemoRuns:
    """Zero-shot, few-shot at each of `shots`, and base-to-new (shots, epochs), in that order."""
    b2n_shots, b2n_epochs = base2new
    runs = DemoRuns({trainer: [] for trainer in TRAINERS}, {}, [])
    runs.evaluations += run_script(
        "zeroshot.sh",
        [DATASET, CFG],
        {"SUBS": "all base new"},
        environment,
        logs / "ZeroshotCLIP.log",
    )
    for k in shots:
        for trainer in TRAINERS:
            runs.fewshot[trainer] += run_script(
                f"{trainer.lower()}/main.sh",
                [DATASET, CFG, str(k)],
                {"EPOCHS": str(epochs)},
                environment,
                logs / f"{trainer}.log",
            )
    b2n = {"CFG": CFG, "SHOTS": str(b2n_shots), "EPOCHS": str(b2n_epochs)}
    for trainer in TRAINERS:
        log = logs / f"{trainer}_base2new.log"
        script = f"{trainer.lower()}/base2new"
        runs.base2new_train[trainer] = run_script(
            f"{script}_train.sh", [DATASET], b2n, environment, log
        )
        runs.evaluations += run_script(f"{script}_test.sh", [DATASET], b2n, environment, log)
    return runs


def _method_rank(trainer: str) -> int:
    return METHODS.index(trainer) if trainer in METHODS else len(METHODS)


def summary(stats: dict[Setting, Stat], shots: list[int]) -> tuple[str, dict[str, list]]:
    """The paper in miniature: a row per method, few-shot columns, then base / new / H.

    Returns:
        the table as text, and per method its base-to-new (base, new, H) means (None if missing).
    """
    few = {(s.trainer, s.shots): stat for s, stat in stats.items() if s.protocol == "fewshot"}
    b2n = {(s.trainer, s.split): stat for s, stat in stats.items() if s.protocol == "base2new"}
    rows, base2new = [], {}
    for method in sorted({s.trainer for s in stats}, key=_method_rank):
        if method == ZERO_SHOT:
            fewshot_cells = [format_stat(few.get((method, 0)))] * len(shots)
        else:
            fewshot_cells = [format_stat(few.get((method, k))) for k in shots]
        base, new = b2n.get((method, "base")), b2n.get((method, "new"))
        h = harmonic_mean(base.mean, new.mean) if base and new else None
        base2new[method] = [None if stat is None else stat.mean for stat in (base, new)] + [h]
        label = "Zero-shot CLIP" if method == ZERO_SHOT else method
        h_cell = "–" if h is None else f"{h:.2f}"
        rows.append([label, *fewshot_cells, format_stat(base), format_stat(new), h_cell])
    headers = ["Method", *(f"{k}-shot" for k in shots), "Base", "New", "H"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), base2new


def plot_base2new(base2new: dict[str, list], path: Path) -> None:
    """Grouped bars: base, new and H accuracy of each method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = [m for m in METHODS if m in base2new]
    figure = Figure(figsize=(6, 3.6))
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    width = 0.8 / len(methods)
    for index, method in enumerate(methods):
        values = [value if value is not None else 0.0 for value in base2new[method]]
        positions = [group + (index - (len(methods) - 1) / 2) * width for group in range(3)]
        label = "Zero-shot CLIP" if method == ZERO_SHOT else method
        bars = axis.bar(positions, values, width, label=label)
        axis.bar_label(bars, fmt="%.1f", fontsize="x-small")
    axis.set_xticks(range(3), ["base classes", "new classes", "H"])
    axis.set_ylabel("accuracy (%)")
    axis.set_title("TinyWorld base-to-new (trained on the base classes)")
    axis.legend(fontsize="small", loc="lower left")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path, "the demo's base-to-new plot", dpi=110)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO_ROOT / "demo_output",
        help="where everything is written (default: demo_output/ in the repo)",
    )
    parser.add_argument("--shots", default="1 4 16", help='few-shot shot counts ("1 4 16")')
    parser.add_argument(
        "--epochs", type=positive_int, default=10, help="few-shot training epochs (10)"
    )
    parser.add_argument(
        "--base2new-shots", type=positive_int, default=4, help="base-to-new shots per class (4)"
    )
    parser.add_argument(
        "--base2new-epochs", type=positive_int, default=20, help="base-to-new training epochs (20)"
    )
    parser.add_argument("--seeds", default="1", help='seeds, space-separated ("1")')
    parser.add_argument(
        "--clip",
        choices=CLIPS,
        default="pretrained",
        help="the shipped pretrained tiny CLIP (default), or a random one (fastest smoke run: "
        "nothing learns)",
    )
    args = parser.parse_args(argv)

    workdir = args.workdir.expanduser().resolve()
    try:
        seeds, shots = check_arguments(args)
        prepare_workdir(workdir, DemoSettings(args.clip))
        if args.clip == "pretrained":
            print(f"CLIP: the pretrained tiny CLIP {configured_clip()} (configs: {CFG}.yaml)")
            random_clip = None
        else:
            random_clip = ensure_random_clip(workdir)
        environment = script_environment(workdir, seeds, random_clip)
        runs = run_protocols(
            environment,
            shots,
            args.epochs,
            (args.base2new_shots, args.base2new_epochs),
            workdir / "logs",
        )
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

    wanted = runs.all()
    found = collect_runs(output).runs
    stats = aggregate(run for run in found if run.log.parent.resolve() in wanted)
    table, base2new = summary(stats, shots)
    what = "a random CLIP: the numbers show the pipeline only" if random_clip else "tiny CLIP"
    print(
        f"TinyWorld in miniature ({what}; seeds {args.seeds}; few-shot {args.epochs} epochs; "
        f"base-to-new {args.base2new_shots} shots, {args.base2new_epochs} epochs; accuracy %)"
        f"\n\n{table}\n"
    )
    base2new_png = workdir / "base2new.png"
    plot_base2new(base2new, base2new_png)
    print(f"wrote {base2new_png}")
    print("Training curves of base-to-new (python tools/plot_curves.py RUN_DIR):")
    for trainer, directories in runs.base2new_train.items():
        png = workdir / f"curves_{trainer}.png"
        try:
            curves, source = load_curves(directories[0])
            plot_curves(curves, png, f"{trainer}, base-to-new {directories[0].name} ({source})")
        except ValueError as error:
            print(f"  no curves for {trainer}: {error}")
            continue
        print(f"  wrote {png}")
    print(
        f"\nNext (from the repository root): the words nearest to ProGrad's learned context:\n"
        f"  python tools/interpret_prompt.py {runs.base2new_train['ProGrad'][0]}\n"
        f"The main job on TinyWorld: DATA={workdir / 'data'} bash scripts/prograd/main.sh "
        f"{DATASET} {CFG} 16"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
