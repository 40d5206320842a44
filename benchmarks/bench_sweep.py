"""The paper in miniature, timed with evaluation sharing off and on; and the real paper's cost.

Part 1 runs every protocol for every method that has it, one seed, through the real protocol
plans (experiments/protocols.py) and ``train.py``, on the demo's world with its tiny CLIP
(configs/trainers/*/tiny.yaml, CFG tiny):

    few-shot         TinyWorld at two shot counts (--shots)
    base-to-new      TinyWorld: train on the base half, evaluate base and new
    DG/cross-dataset the xd protocol on synthetic copies of ImageNet (source) and of
                     ImageNet-V2, ImageNet-Sketch, Caltech101 and EuroSAT (targets), in their
                     real layouts
    zero-shot        TinyWorld (all, base, new) and every xd target

twice, each time into a fresh output and feature cache: *unshared* (``TEST.SHARED_FEATURES
False``, ``EVAL_BATCH=0``: today's one process per run, each encoding its test images) and
*shared* (the defaults: test features computed once per split and read by every run; a plan's
evaluations in one process, the xd targets of all seeds of a method in one plan). It prints the
training phase (the training runs, their final tests included), the evaluation phase (the
``--eval-only`` runs) and the total of each, side by side, with their ratios (targets: evaluation
≤ 0.25×, total ≤ 0.7×).

Part 2 estimates the real paper's compute per method from the step benchmark's figures: the runs
of the paper's protocols (the same plans, dry), their optimizer steps and test images from the
datasets' published sizes, each step timed by bench_step.py's measured step (interpolated in the
class count), each test image by the image encoder's measured pass, divided by an assumed GPU
speed-up over that CPU measurement (benchmarks/README.md has the formula and the assumptions).

Run from the repository root:
    python benchmarks/bench_sweep.py                      # both parts (~20 min on 2 CPU cores)
    python benchmarks/bench_sweep.py --estimate-only      # part 2 alone (a second)
    python benchmarks/bench_sweep.py --epochs 2 --shots 1 4 --workdir /tmp/bench_sweep
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import _root  # noqa: F401  (the repository root on sys.path)
import yaml

from experiments import catalog, protocols
from experiments.cli import positive_float, positive_int
from experiments.protocols import ZERO_SHOT, Plan, Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET = "tinyworld"
CFG = "tiny"
# ImageNet-A and -R hold other classes in their synthetic copies, which a linear probe trained
# on the synthetic ImageNet cannot classify: the two variants that keep ImageNet's classes.
DG_TARGETS = ("imagenetv2", "imagenet_sketch")
XD_TARGETS = ("caltech101", "eurosat")
SYNTHETIC = ("imagenet", *DG_TARGETS, *XD_TARGETS)


# ----------------------------------------------------------------------------------------------
# Part 1: the miniature


def miniature_methods() -> list[str]:
    """Every declared method with a tiny config (zero-shot CLIP apart), in table order."""
    return [
        name
        for name, method in protocols.METHODS.items()
        if name != ZERO_SHOT
        and (REPO_ROOT / "configs" / "trainers" / method.config_folder / f"{CFG}.yaml").is_file()
    ]


def write_data(root: Path, classes: int, images: int) -> None:
    """TinyWorld (generated) and the synthetic xd datasets under ``root``."""
    from datasets.tinyworld_world import ensure_tinyworld
    from devkit.synthetic_data import write_dataset

    ensure_tinyworld(root)
    for name in SYNTHETIC:
        if not (root / catalog.dataset(name).layout.folder).exists():
            registry = catalog.dataset(name).layout.name
            try:
                write_dataset(registry, root, num_classes=classes, images_per_class=images)
            except ValueError:  # a synthetic copy with fewer real class names (EuroSAT: 10)
                write_dataset(registry, root, num_classes=10, images_per_class=images)


def settings_for(mode: str, workdir: Path, data: Path, epochs: int, shots: int) -> Settings:
    """The scripts' settings of one mode: its own output and feature caches."""
    cache = workdir / mode / "cache"
    extra = [
        "DATALOADER.NUM_WORKERS", "0", "TEST.FEATURE_CACHE", str(cache),
        "TRAINER.LINEAR_PROBE.FEATURE_CACHE", str(cache),
    ]  # fmt: skip
    if mode == "unshared":
        extra += ["TEST.SHARED_FEATURES", "False"]
    return protocols.settings_from_environment(
        {
            "DATA": str(data),
            "OUTPUT": str(workdir / mode / "output"),
            "SEEDS": "1",
            "EPOCHS": str(epochs),
            "SHOTS": str(shots),
            "CFG": CFG,
            "PYTHON": sys.executable,
            "EVAL_BATCH": "1" if mode == "shared" else "0",
            "EXTRA_OPTS": " ".join(extra),
        }
    )


def plans(settings: Settings, methods: list[str], shots: list[int]) -> dict[str, list[Plan]]:
    """{"training": plans, "evaluation": plans} of the miniature paper."""
    root = REPO_ROOT
    training, evaluation = [], []
    for name in methods:
        defaults = protocols.METHODS[name].defaults
        if "fewshot" in defaults:
            for k in shots:
                training.append(protocols.plan_fewshot(name, DATASET, CFG, k, settings, root))
        if "base2new" in defaults:
            training.append(protocols.plan_base2new_train(name, DATASET, settings, root))
            evaluation.append(protocols.plan_base2new_test(name, DATASET, settings, root))
        if "xd" in defaults:
            training.append(protocols.plan_xd_train(name, settings, root))
            accepted = protocols.xd_targets(protocols.METHODS[name])
            targets = [t for t in (*DG_TARGETS, *XD_TARGETS) if accepted is None or t in accepted]
            # Every seed on every target: one plan, so one process in the shared mode.
            merged = Plan()
            for target in targets:
                merged.runs += protocols.plan_xd_test(name, target, settings, root).runs
            evaluation.append(merged)
    zero_shot = Plan()
    subs = replace(settings, subs=("all", "base", "new"))
    zero_shot.runs += protocols.plan_zeroshot(DATASET, CFG, subs, root).runs
    for target in (*DG_TARGETS, *XD_TARGETS):
        only_all = replace(settings, subs=("all",))
        zero_shot.runs += protocols.plan_zeroshot(target, CFG, only_all, root).runs
    evaluation.append(zero_shot)
    return {"training": training, "evaluation": evaluation}


@contextlib.contextmanager
def output_to(path: Path):
    """Within: this process's stdout and stderr (and its children's) go to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)


def run_mode(mode: str, args: argparse.Namespace, data: Path) -> dict[str, float]:
    """Seconds of each phase of one mode, and the runs of each."""
    settings = settings_for(mode, args.workdir, data, args.epochs, args.base2new_shots)
    phases = plans(settings, miniature_methods(), args.shots)
    log = args.workdir / f"{mode}.log"
    figures: dict[str, float] = {}
    for phase, phase_plans in phases.items():
        started = time.perf_counter()
        with output_to(log):
            for plan in phase_plans:
                protocols.execute(plan, settings)
        figures[phase] = time.perf_counter() - started
        figures[f"{phase} runs"] = sum(len(plan.runs) for plan in phase_plans)
        print(f"  {mode} {phase}: {figures[phase]:.0f} s ({figures[f'{phase} runs']} runs)")
    figures["total"] = figures["training"] + figures["evaluation"]
    return figures


def miniature(args: argparse.Namespace) -> None:
    from tabulate import tabulate

    data = args.workdir / "data"
    print(f"Writing the data under {data} ...")
    with output_to(args.workdir / "data.log"):
        write_data(data, args.classes, args.images)
    os.environ["OMP_NUM_THREADS"] = "1"  # as the demo: tiny tensors gain nothing from threads
    os.chdir(REPO_ROOT)
    print(f"Methods: {', '.join(miniature_methods())}, and {ZERO_SHOT}")
    results = {}
    for mode in ("shared", "unshared") if args.shared_first else ("unshared", "shared"):
        shutil.rmtree(args.workdir / mode, ignore_errors=True)
        results[mode] = run_mode(mode, args, data)
    rows = []
    for phase in ("training", "evaluation", "total"):
        off, on = results["unshared"][phase], results["shared"][phase]
        runs = results["unshared"].get(f"{phase} runs", "")
        target = {"evaluation": "≤ 0.25", "total": "≤ 0.70"}.get(phase, "")
        rows.append([phase, runs, f"{off:.0f}", f"{on:.0f}", f"{on / off:.2f}", target])
    print()
    print(
        f"The paper in miniature: {len(miniature_methods())} methods + zero-shot, one seed, "
        f"{args.epochs} epochs, few-shot at {' and '.join(map(str, args.shots))} shots, "
        f"base-to-new and xd at {args.base2new_shots} shots (wall seconds)"
    )
    print(
        tabulate(
            rows,
            headers=["phase", "runs", "unshared s", "shared s", "shared / unshared", "target"],
            tablefmt="github",
        )
    )


# ----------------------------------------------------------------------------------------------
# Part 2: the real paper's cost, from the step benchmark's figures

# bench_step.py's medians (benchmarks/README.md, CPU fp32, 2-core VM, batch 32): ms per step of
# our CoOp and ProGrad at 10, 100 and 1000 classes; KgCoOp and KD measured at CoOp's (0.9-1.1×).
STEP_MS = {
    ("rn50", "CoOp"): {10: 2248, 100: 2354, 1000: 7285},
    ("rn50", "ProGrad"): {10: 2236, 100: 2624, 1000: 10936},
    ("vit_b16", "CoOp"): {10: 5828, 100: 5692, 1000: 10271},
    ("vit_b16", "ProGrad"): {10: 6185, 100: 6180, 1000: 14030},
}
# bench_cocoop.py (same VM, 1 thread, ViT-B/16): ms per CoCoOp step of batch 1.
COCOOP_STEP_MS = {10: 1317, 100: 2524, 1000: 16287}
# The image encoder's forward pass of a batch of 32 (README: "image pass ≈ 1.9 s" for RN50; for
# ViT-B/16 its CoOp step at 10 classes, nearly all image pass): ms per test image.
IMAGE_MS = {"rn50": 1900 / 32, "vit_b16": 5400 / 32}
# Which measured step stands for each method's (KD and KgCoOp cost CoOp's step, ProGradCoCoOp
# is CoCoOp's step with ProGrad's second backward: ProGrad / CoOp's ratio applied).
STEP_OF = {"KD": "CoOp", "KgCoOp": "CoOp", "CoOp": "CoOp", "ProGrad": "ProGrad"}


def interpolate(points: dict[int, float], x: float) -> float:
    """Piecewise-linear in the class count (clamped outside the measured range)."""
    keys = sorted(points)
    x = min(max(x, keys[0]), keys[-1])
    for low, high in zip(keys, keys[1:], strict=False):
        if x <= high:
            return points[low] + (points[high] - points[low]) * (x - low) / (high - low)
    return points[keys[-1]]


def step_seconds(method: str, arch: str, classes: int) -> float:
    """Seconds of one training step (CPU, measured) of a method at a class count."""
    if method in ("CoCoOp", "ProGradCoCoOp"):
        seconds = interpolate(COCOOP_STEP_MS, classes) / 1000
        if method == "ProGradCoCoOp":
            seconds *= interpolate(STEP_MS[("vit_b16", "ProGrad")], classes) / interpolate(
                STEP_MS[("vit_b16", "CoOp")], classes
            )
        return seconds
    base = STEP_OF.get(method, "CoOp")
    arch = arch if (arch, base) in STEP_MS else "rn50"
    return interpolate(STEP_MS[(arch, base)], classes) / 1000


def config_value(method: protocols.Method, cfg: str, *keys: str, default=None):
    """A value of configs/trainers/<folder>/<cfg>.yaml (e.g. the batch size), or ``default``."""
    node = yaml.safe_load(
        (REPO_ROOT / f"configs/trainers/{method.config_folder}/{cfg}.yaml").open()
    )
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def option(command: tuple[str, ...], key: str, default: str) -> str:
    """The value after ``key`` in a train.py command (its last occurrence)."""
    values = [command[i + 1] for i, word in enumerate(command[:-1]) if word == key]
    return values[-1] if values else default


def paper_runs(name: str) -> list[protocols.Run]:
    """The runs of the paper's protocols for a method (3 seeds, paper defaults), planned dry."""
    settings = Settings(data="/datasets", output="/output", dry_run=True)
    root = REPO_ROOT
    method = protocols.METHODS[name]
    runs: list[protocols.Run] = []
    if name == ZERO_SHOT:
        for dataset in (*protocols.FEWSHOT_DATASETS, *protocols.DG_TARGETS):
            subs = ("all", "base", "new") if dataset in protocols.FEWSHOT_DATASETS else ("all",)
            local = replace(settings, subs=subs)
            runs += protocols.plan_zeroshot(dataset, "rn50", local, root).runs
        return runs
    defaults = method.defaults
    if "fewshot" in defaults:
        for dataset in protocols.FEWSHOT_DATASETS:
            for k in protocols.PAPER_SHOTS:
                cfg = defaults["fewshot"].cfg
                runs += protocols.plan_fewshot(name, dataset, cfg, k, settings, root).runs
    if "base2new" in defaults:
        for dataset in protocols.BASE2NEW_DATASETS:
            runs += protocols.plan_base2new_train(name, dataset, settings, root).runs
            runs += protocols.plan_base2new_test(name, dataset, settings, root).runs
    if "xd" in defaults:
        runs += protocols.plan_xd_train(name, settings, root).runs
        accepted = protocols.xd_targets(method)
        for target in (*protocols.DG_TARGETS, *protocols.XD_TARGETS):
            if accepted is None or target in accepted:
                runs += protocols.plan_xd_test(name, target, settings, root).runs
    return runs


def run_cost(name: str, run: protocols.Run) -> tuple[float, float, tuple, int]:
    """(training CPU-seconds, evaluation CPU-seconds unshared, the test split's identity, its
    images) of one planned run, from the published sizes and the measured figures."""
    from experiments.results import architecture

    method = protocols.METHODS[name]
    sizes = catalog.dataset(run.dataset).layout.published
    cfg = Path(option(run.command, "--config-file", "x/rn50.yaml")).stem
    arch = architecture(protocols.backbone_of(cfg))
    arch = arch if arch in IMAGE_MS else "rn50"
    subsample = option(run.command, "DATASET.SUBSAMPLE_CLASSES", "all")
    fraction = 1.0 if subsample == "all" else 0.5
    classes = max(1, round(sizes.classes * fraction)) if sizes else 100
    test_images = round((sizes.test if sizes else 1000) * fraction)
    training = 0.0
    if run.training and name != ZERO_SHOT:
        shots = int(option(run.command, "DATASET.NUM_SHOTS", "16"))
        epochs = int(option(run.command, "OPTIM.MAX_EPOCH", "1"))
        if name == "LinearProbeCLIP":  # the fit: seconds; the features are counted below
            training = 0.0
        else:
            batch = config_value(method, cfg, "DATALOADER", "TRAIN_X", "BATCH_SIZE", default=32)
            steps = epochs * math.ceil(shots * classes / batch)
            training = steps * step_seconds(name, arch, classes)
    # Every run ends with a test (a training run's final one, or the evaluation itself).
    evaluation = test_images * IMAGE_MS[arch] / 1000
    return training, evaluation, (run.dataset, subsample, arch), test_images


def estimate(args: argparse.Namespace) -> None:
    from tabulate import tabulate

    rows = []
    speedup = args.gpu_speedup
    for name in protocols.METHODS:
        runs = paper_runs(name)
        if not runs:
            continue
        training = evaluation = 0.0
        splits: dict[tuple, float] = {}
        for run in runs:
            train_s, eval_s, split, _ = run_cost(name, run)
            training += train_s
            evaluation += eval_s
            splits[split] = eval_s  # shared: each test split encoded once
        if name == "LinearProbeCLIP":  # the full train (+ val) split encoded once per dataset
            for dataset in {run.dataset for run in runs if run.training}:
                sizes = catalog.dataset(dataset).layout.published
                images = (sizes.train + (sizes.val or 0)) if sizes else 0
                training += images * IMAGE_MS["rn50"] / 1000
        shared = sum(splits.values())
        trainings = sum(run.training for run in runs)
        rows.append(
            [
                name, len(runs), trainings, f"{training / 3600 / speedup:.1f}",
                f"{evaluation / 3600 / speedup:.2f}", f"{shared / 3600 / speedup:.2f}",
                f"{(training + evaluation) / 3600 / speedup:.1f}",
                f"{(training + shared) / 3600 / speedup:.1f}",
            ]
        )  # fmt: skip
    print()
    print(
        f"The real paper's cost per method, in GPU hours: the runs of its protocols (3 seeds, "
        f"paper defaults, published dataset sizes), bench_step's CPU step and image times "
        f"divided by an assumed GPU speed-up of {speedup:g}× (--gpu-speedup; see "
        f"benchmarks/README.md)"
    )
    print(
        tabulate(
            rows,
            headers=[
                "method",
                "runs",
                "trainings",
                "training h",
                "evaluation h unshared",
                "evaluation h shared",
                "total h unshared",
                "total h shared",
            ],
            tablefmt="github",
        )  # fmt: skip
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="where data and runs go (default: a temp)")
    parser.add_argument(
        "--epochs", type=positive_int, default=1, help="training epochs of every run"
    )
    parser.add_argument(
        "--shots", type=positive_int, nargs=2, default=[1, 4], help="few-shot counts"
    )
    parser.add_argument(
        "--base2new-shots", type=positive_int, default=4, help="base2new and xd shots"
    )
    parser.add_argument(
        "--classes", type=positive_int, default=64, help="classes of the xd datasets"
    )
    parser.add_argument(
        "--images", type=positive_int, default=20, help="images per class (xd datasets)"
    )
    parser.add_argument(
        "--gpu-speedup", type=positive_float, default=30.0, help="GPU / this CPU, assumed"
    )
    parser.add_argument("--estimate-only", action="store_true", help="part 2 only")
    parser.add_argument(
        "--shared-first", action="store_true", help="run the shared mode first (load drift)"
    )
    args = parser.parse_args(argv)
    if not args.estimate_only:
        keep = args.workdir is not None
        args.workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_sweep-"))).resolve()
        args.workdir.mkdir(parents=True, exist_ok=True)
        print(f"Workdir: {args.workdir} (logs: unshared.log, shared.log)")
        try:
            miniature(args)
        finally:
            if not keep:
                shutil.rmtree(args.workdir, ignore_errors=True)
    estimate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
