"""Do our ProGrad and CoOp train as the official ProGrad code does, over whole train.py runs?

    python tools/prograd_parity.py --official /path/to/Prompt-align [--method ProGrad] [--epochs 2]

`--official` is a checkout of the official ProGrad code (https://github.com/BeierZhu/Prompt-align):
its ProGrad.public/ folder (train.py, trainers/, clip/) and its bundled Dassl fork,
Dassl.ProGrad.pytorch/, whose trainer has the `prograd_backward_and_update` their ProGrad calls
(upstream Dassl has not). None of their code is part of this repository; it is imported from there.

Each side's own train.py runs in its own process (devkit/whole_run.py) for `--epochs` on one
synthetic Caltech101 with a tiny RN CLIP, with the same config file (`configs/trainers/<method>/
rn50_ep50.yaml`, the same on both sides: constant warmup for one epoch, then cosine; SGD with
momentum), fp32, no augmentation, a sequential sampler, LOSS.LAMBDA `--lambda` for ProGrad. Their
side imports their bundled Dassl, with the adaptations to a CPU machine and current torch of
devkit/whole_run.py (`.cuda()` a no-op; the warmup scheduler built without `verbose`) and their
`load_clip_to_cpu` (which downloads by name) returning the tiny checkpoint's CLIP; nothing else
of theirs is changed. It checks that both saw the same batches and prints, per step, both
learning rates and the difference of the context update relative to theirs.

tests/test_prograd_parity.py runs it when PROGRAD_OFFICIAL names a checkout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from experiments.cli import positive_int, unit_float

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("CoOp", "ProGrad")
CONFIG = "configs/trainers/{method}/rn50_ep50.yaml"  # in both repositories


def official_folders(official: Path) -> tuple[Path, Path]:
    """(their ProGrad.public/ folder, their bundled Dassl) in a checkout of Prompt-align.

    Raises FileNotFoundError if `official` is not such a checkout.
    """
    code, dassl = official / "ProGrad.public", official / "Dassl.ProGrad.pytorch"
    if not (code / "trainers" / "prograd.py").is_file() or not (dassl / "dassl").is_dir():
        raise FileNotFoundError(
            f"{official} is not a checkout of the official ProGrad code (no ProGrad.public/"
            f"trainers/prograd.py or Dassl.ProGrad.pytorch/dassl/ there); clone "
            f"https://github.com/BeierZhu/Prompt-align and pass its folder"
        )
    return code, dassl


def whole_run_worker(args: argparse.Namespace) -> None:
    """One side's train.py (in its own process), with every step of the trainer recorded."""
    from devkit.whole_run import (
        cpu_adaptations,
        enter_side,
        run_recorded_train_py,
        whole_run_argv,
    )

    opts = ["LOSS.LAMBDA", str(args.lambda_)] if args.method == "ProGrad" else []
    if args.run_worker == "theirs":
        code, dassl = official_folders(Path(args.official))
        enter_side(code, extra_paths=[dassl])
        cpu_adaptations()
        import dassl as their_dassl
        from clip import clip as official_clip

        from trainers import coop, prograd

        if Path(their_dassl.__file__).resolve().parents[1] != dassl.resolve():
            raise RuntimeError(f"imported {their_dassl.__file__}, not the Dassl of {dassl}")

        def load_clip_to_cpu(cfg):
            """The checkpoint's CLIP as their loader returns it (fp16 weights, theirs .float()s
            it for fp32), for the student and ProGrad's zero-shot teacher alike."""
            state = torch.load(args.clip, map_location="cpu", weights_only=True)
            return official_clip.build_model(state)

        coop.load_clip_to_cpu = prograd.load_clip_to_cpu = load_clip_to_cpu
    else:  # their config has no MODEL.BACKBONE.PATH
        enter_side(ROOT)
        from trainers import coop, prograd

        opts += ["MODEL.BACKBONE.PATH", args.clip]
    trainer_class = prograd.ProGrad if args.method == "ProGrad" else coop.CoOp
    argv = whole_run_argv(
        args.method, CONFIG.format(method=args.method), args.root, args.out_dir, args.epochs,
        args.shots, args.batch_size, opts,
    )  # fmt: skip
    run_recorded_train_py(trainer_class, argv, args.epochs, args.output)


def compare_whole_runs(
    official: str | Path,
    method: str = "ProGrad",
    epochs: int = 2,
    lambda_: float = 1.0,
    shots: int = 8,
    batch: int = 32,
    num_classes: int = 4,
    images_per_class: int = 8,
    clip_file: str | None = None,
) -> dict:
    """Run both sides' train.py for `epochs` on one synthetic Caltech101 and compare the context
    after every step and epoch, relative to how far theirs moved (devkit/whole_run.py).

    The default data (4 classes of 8 images, 8 shots, batch 32) give one step per epoch; more
    classes give more. Raises ValueError for an unknown method, FileNotFoundError if `official`
    is not a checkout of Prompt-align.
    """
    from devkit.whole_run import compare_records, run_sides, whole_run_inputs

    if method not in METHODS:
        raise ValueError(f"method is {method!r}; use one of {', '.join(METHODS)}")
    official = Path(official).resolve()
    official_folders(official)
    with whole_run_inputs(clip_file, num_classes, images_per_class) as (folder, clip, root):
        commands, outputs = {}, {}
        for side in ("ours", "theirs"):
            outputs[side] = folder / f"{side}.pt"
            commands[side] = [
                sys.executable, "-m", "devkit.prograd_parity", "--official", str(official),
                "--run-worker", side, "--method", method, "--lambda", str(lambda_),
                "--clip", clip, "--root", root, "--out-dir", str(folder / side),
                "--output", str(outputs[side]), "--epochs", str(epochs), "--shots", str(shots),
                "--batch-size", str(batch),
            ]  # fmt: skip
        records = run_sides(commands, outputs)
    report = compare_records(records["ours"], records["theirs"], epochs)
    return {**report, "method": method, "lambda": lambda_ if method == "ProGrad" else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, help="a checkout of BeierZhu/Prompt-align")
    parser.add_argument("--method", choices=METHODS, default="ProGrad")
    parser.add_argument(
        "--lambda", dest="lambda_", type=unit_float, default=1.0, help="LOSS.LAMBDA"
    )
    parser.add_argument("--clip", default=None, help="a CLIP checkpoint (default: tiny random RN)")
    parser.add_argument("--epochs", type=positive_int, default=2, help="OPTIM.MAX_EPOCH")
    parser.add_argument("--shots", type=positive_int, default=8, help="DATASET.NUM_SHOTS")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per step")
    parser.add_argument(
        "--classes", type=positive_int, default=4, help="synthetic Caltech101 classes"
    )
    parser.add_argument("--images", type=positive_int, default=8, help="images per class")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--whole-run", action="store_true", help="accepted for symmetry with the other tools"
    )
    parser.add_argument("--run-worker", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_worker:
        whole_run_worker(args)
        return
    try:
        official_folders(Path(args.official))
    except FileNotFoundError as error:
        parser.error(str(error))
    from devkit.whole_run import print_whole_run

    report = compare_whole_runs(
        args.official, args.method, args.epochs, args.lambda_, args.shots, args.batch_size,
        args.classes, args.images, args.clip,
    )  # fmt: skip
    title = args.method + (f", λ {args.lambda_}" if args.method == "ProGrad" else "")
    print_whole_run(report, title, args.json)


if __name__ == "__main__":
    main()
