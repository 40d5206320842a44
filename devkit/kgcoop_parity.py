"""Does our KgCoOp take the same steps as the official code on identical input?

    python tools/kgcoop_parity.py --official /path/to/KgCoOp-checkout/KgCoOp [--steps 5]

`--official` is the folder of the official code (htyao89/KgCoOp) that holds trainers/kgcoop.py and
its clip/ package; none of its code is part of this repository, it is imported from there.

Both trainers are built the same way, without a dataset: a Dassl trainer object whose
`build_model()` runs (theirs: their PromptLearner, CustomCLIP, optimizer; ours: the same through
our layers), on the same tiny random CLIP checkpoint in OpenAI's format (`--clip`, default: one
written by devkit/tiny_clip.py), the same config (fp32, SGD from Dassl's `build_optimizer`,
CTX_INIT True, W), the same class names, then `forward_backward` on the same batches of random
images (no augmentation) and labels. Their side runs in a subprocess, so that their modules (and
their `KgCoOp` registry entry, their `clip` package) never meet ours. Two adaptations to a CPU
machine, and nothing else: `.cuda()` is a no-op there, and their `load_clip_to_cpu` (which
downloads by name) returns the checkpoint's CLIP.

Their hand-crafted prompts are encoded by a second CLIP kept in fp16 whatever PREC is, ours by the
run's CLIP in its precision. `--teacher fp16` (default) keeps theirs as it is; `--teacher fp32`
gives their teacher CLIP fp32 weights, which isolates the rest of the step.

Prints, per step, both losses and the largest difference of the context vectors, relative to
their size; then whether each side's checkpoint (Dassl's prompt_learner/model.pth.tar-N, theirs
with its unused bias_vectors and meta_net) loads through the other side's load_model exactly.

`--whole-run` compares whole training runs instead: each side's own train.py (theirs with the same
CPU adaptations, plus upstream Dassl's warmup scheduler built without the `verbose` argument that
current torch rejects) for `--epochs` on one synthetic Caltech101 (devkit/synthetic_data.py), with
KgCoOp's rn50_ep100 config, fp32, no augmentation and a sequential sampler. It checks that both
saw the same batches and prints, per step, both learning rates and the difference of the context
update relative to theirs; `--teacher` as above.
    python tools/kgcoop_parity.py --official /path/to/KgCoOp --whole-run --weight 0 --teacher fp32

tests/test_kgcoop_parity.py runs both modes when KGCOOP_OFFICIAL names a checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

from devkit import worker_environment
from experiments.cli import non_negative_float, positive_float, positive_int

ROOT = Path(__file__).resolve().parents[1]
CLASSNAMES = ["face", "leopard", "motor bike", "water lilly", "great crested grebe bird"]
DATASET = "OxfordPets"  # a template that differs between ProGrad's and KgCoOp's tables


def parity_cfg(clip_file: str, weight: float, lr: float):
    """The config both trainers are built with (Dassl's defaults + the keys KgCoOp reads)."""
    from dassl.config import get_cfg_default
    from yacs.config import CfgNode as CN

    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 4
    cfg.TRAINER.COOP.CSC = False
    cfg.TRAINER.COOP.CTX_INIT = True
    cfg.TRAINER.COOP.PREC = "fp32"
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"
    cfg.TRAINER.COOP.W = weight
    cfg.TRAINER.COCOOP = CN()  # read by the official PromptLearner
    cfg.TRAINER.COCOOP.PREC = "fp32"
    cfg.DATASET.NAME = DATASET
    cfg.INPUT.SIZE = (32, 32)
    cfg.MODEL.BACKBONE.NAME = "RN50"
    cfg.MODEL.BACKBONE.PATH = clip_file
    cfg.MODEL.TEXT_ENCODER = "packed"  # read by ours (trainers/config.py declares it)
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = lr
    cfg.OPTIM.MAX_EPOCH = 10
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 0
    return cfg


def headless_trainer(trainer_class, cfg):
    """A Dassl trainer of `trainer_class` with cfg, CPU and class names, whose build_model ran
    (Dassl's __init__ would also build data loaders, which parity does not need)."""
    from dassl.engine.trainer import TrainerBase

    trainer = trainer_class.__new__(trainer_class)
    TrainerBase.__init__(trainer)
    trainer.cfg = cfg
    trainer.device = torch.device("cpu")
    trainer.epoch = 0
    trainer.output_dir = ""
    trainer.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=list(CLASSNAMES)))
    trainer.check_cfg(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.build_model()
    return trainer


def run_steps(trainer, batches: list[dict], checkpoint_dir: Path) -> dict:
    """forward_backward on each batch; the context and loss after each step. The trained prompt
    is saved as a Dassl checkpoint, <checkpoint_dir>/prompt_learner/model.pth.tar-<steps>."""
    contexts, losses = [trainer.model.prompt_learner.ctx.detach().clone()], []
    for index, batch in enumerate(batches):
        trainer.batch_idx, trainer.num_batches = index, len(batches) + 1  # no LR tick
        losses.append(trainer.forward_backward(batch)["loss"])
        contexts.append(trainer.model.prompt_learner.ctx.detach().clone())
    path = checkpoint_dir / "prompt_learner" / f"model.pth.tar-{len(batches)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = trainer.model.prompt_learner.state_dict()
    torch.save({"state_dict": state, "epoch": len(batches)}, path)
    return {"contexts": torch.stack(contexts), "losses": losses}


def loaded_context(trainer, checkpoint_dir: Path, epoch: int) -> torch.Tensor:
    """The context after the trainer's own load_model (what --eval-only does) reads a checkpoint."""
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.load_model(str(checkpoint_dir), epoch=epoch)
    return trainer.model.prompt_learner.ctx.detach().clone()


def official_worker(args: argparse.Namespace) -> None:
    """Their side (in its own process): their trainers.kgcoop and clip, our inputs."""
    sys.path.insert(0, str(Path(args.official).resolve()))
    torch.nn.Module.cuda = lambda self, *a, **k: self  # a CPU machine
    torch.Tensor.cuda = lambda self, *a, **k: self
    from clip import clip as official_clip

    from trainers import kgcoop

    loads = []

    def load_clip_to_cpu(cfg):
        """The checkpoint's CLIP as their loader returns it (fp16 weights); the second call is
        their teacher's CLIP, fp32 under --teacher fp32."""
        state = torch.load(args.clip, map_location="cpu", weights_only=True)
        model = official_clip.build_model(state)
        loads.append(model)
        return model.float() if len(loads) == 2 and args.teacher == "fp32" else model

    kgcoop.load_clip_to_cpu = load_clip_to_cpu
    inputs = torch.load(args.inputs, weights_only=True)
    cfg = parity_cfg(args.clip, args.weight, args.lr)
    trainer = headless_trainer(kgcoop.KgCoOp, cfg)
    folder = Path(args.output).parent
    result = run_steps(trainer, inputs["batches"], folder / "theirs")
    # Ours, read by their load_model (strict=False, token buffers dropped).
    steps = len(inputs["batches"])
    result["our_checkpoint_loaded"] = loaded_context(trainer, folder / "ours", steps)
    torch.save(result, args.output)


def our_trainer(clip_file: str, weight: float, lr: float):
    from trainers.kgcoop import KgCoOp

    return headless_trainer(KgCoOp, parity_cfg(clip_file, weight, lr))


def compare(
    official: str,
    clip_file: str | None = None,
    steps: int = 5,
    weight: float = 8.0,
    lr: float = 0.02,
    teacher: str = "fp16",
    batch: int = 8,
) -> dict:
    """Run both sides; per step, the losses and max |ctx_ours − ctx_theirs| / max |ctx_theirs|."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if clip_file is None:
            from devkit.tiny_clip import write_tiny_clip

            clip_file = str(write_tiny_clip(folder / "tiny_rn.pt", "RN"))
        generator = torch.Generator().manual_seed(0)
        batches = [
            {
                "img": torch.randn(batch, 3, 32, 32, generator=generator),
                "label": torch.randint(len(CLASSNAMES), (batch,), generator=generator),
            }
            for _ in range(steps)
        ]
        torch.save({"batches": batches}, folder / "inputs.pt")
        ours = run_steps(our_trainer(clip_file, weight, lr), batches, folder / "ours")
        command = [
            sys.executable, __file__, "--official", official, "--worker",
            "--clip", clip_file, "--inputs", str(folder / "inputs.pt"),
            "--output", str(folder / "theirs.pt"), "--weight", str(weight), "--lr", str(lr),
            "--teacher", teacher,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, env=worker_environment())
        if result.returncode != 0:
            raise RuntimeError(f"the official side failed:\n{result.stderr[-4000:]}")
        theirs = torch.load(folder / "theirs.pt", weights_only=True)
        # Theirs, read by our load_model (CheckpointMixin: bias_vectors and meta_net ignored).
        their_checkpoint_loaded = loaded_context(
            our_trainer(clip_file, weight, lr), folder / "theirs", steps
        )
    scale = theirs["contexts"].abs().amax(dim=(1, 2))
    difference = (ours["contexts"] - theirs["contexts"]).abs().amax(dim=(1, 2))
    moved = (theirs["contexts"][-1] - theirs["contexts"][0]).abs().max().item()
    return {
        "steps": steps,
        "teacher": teacher,
        "weight": weight,
        "lr": lr,
        "relative_context_difference": (difference / scale).tolist(),
        "context_moved": moved,
        "max_difference_of_the_move": difference[-1].item() / moved,
        "our_losses": ours["losses"],
        "their_losses": theirs["losses"],
        # Checkpoints both ways: each side's trained context as the other's load_model reads it.
        "their_checkpoint_loads_here": torch.equal(their_checkpoint_loaded, theirs["contexts"][-1]),
        "our_checkpoint_loads_there": torch.equal(
            theirs["our_checkpoint_loaded"], ours["contexts"][-1]
        ),
    }


# --- Whole training runs: both sides' train.py for N epochs (devkit/whole_run.py). ---

WHOLE_RUN_CONFIG = "configs/trainers/KgCoOp/rn50_ep100.yaml"  # the same file on both sides


def whole_run_worker(args: argparse.Namespace) -> None:
    """One side's train.py (in its own process), with every step recorded; their side with the
    CPU adaptations of devkit/whole_run.py, their CLIP loader pointed at the checkpoint, their
    teacher CLIP in fp32 under --teacher fp32."""
    from devkit.whole_run import (
        cpu_adaptations,
        enter_side,
        run_recorded_train_py,
        whole_run_argv,
    )

    theirs = args.run_worker == "theirs"
    enter_side(Path(args.official) if theirs else ROOT)
    opts = ["TRAINER.COOP.W", str(args.weight)]
    if theirs:  # their config has no MODEL.BACKBONE.PATH
        cpu_adaptations()
        from clip import clip as official_clip

        from trainers import kgcoop

        loads = []

        def load_clip_to_cpu(cfg):
            state = torch.load(args.clip, map_location="cpu", weights_only=True)
            model = official_clip.build_model(state)
            loads.append(model)
            teacher = len(loads) % 2 == 0  # build_model's CLIP, then their PromptLearner's
            return model.float() if teacher and args.teacher == "fp32" else model

        kgcoop.load_clip_to_cpu = load_clip_to_cpu
    else:
        from trainers import kgcoop

        opts += ["MODEL.BACKBONE.PATH", args.clip]
    argv = whole_run_argv(
        "KgCoOp", WHOLE_RUN_CONFIG, args.root, args.out_dir, args.epochs, args.shots,
        args.batch_size, opts,
    )  # fmt: skip
    run_recorded_train_py(kgcoop.KgCoOp, argv, args.epochs, args.output)


def compare_whole_runs(
    official: str,
    epochs: int = 2,
    weight: float = 8.0,
    teacher: str = "fp32",
    shots: int = 8,
    batch: int = 32,
    num_classes: int = 4,
    images_per_class: int = 8,
    clip_file: str | None = None,
) -> dict:
    """Run both sides' train.py for `epochs` on one synthetic Caltech101 (devkit/synthetic_data.py)
    and compare the context after every step and epoch, relative to how far theirs moved.

    Both read the same DATASET.ROOT (so the same few-shot split) and must see the same batches
    (labels and image checksums are compared; a mismatch raises). The default data (4 classes of
    8 images, 8 shots, batch 32) give one step per epoch; more classes give more.
    """
    from devkit.whole_run import compare_records, run_sides, whole_run_inputs

    with whole_run_inputs(clip_file, num_classes, images_per_class) as (folder, clip, root):
        commands, outputs = {}, {}
        for side in ("ours", "theirs"):
            outputs[side] = folder / f"{side}.pt"
            commands[side] = [
                sys.executable, "-m", "devkit.kgcoop_parity",
                "--official", str(Path(official).resolve()), "--run-worker", side,
                "--clip", clip, "--root", root, "--out-dir", str(folder / side),
                "--output", str(outputs[side]), "--weight", str(weight), "--teacher", teacher,
                "--epochs", str(epochs), "--shots", str(shots), "--batch-size", str(batch),
            ]  # fmt: skip
        records = run_sides(commands, outputs)
    report = compare_records(records["ours"], records["theirs"], epochs)
    return {**report, "weight": weight, "teacher": teacher}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, help="the official KgCoOp/ folder")
    parser.add_argument("--clip", default=None, help="a CLIP checkpoint (default: tiny random)")
    parser.add_argument("--steps", type=positive_int, default=5)
    parser.add_argument("--weight", type=non_negative_float, default=8.0, help="TRAINER.COOP.W")
    parser.add_argument("--lr", type=positive_float, default=0.02)
    parser.add_argument("--teacher", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--whole-run", action="store_true", help="compare both train.py runs, not single steps"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=2, help="--whole-run: OPTIM.MAX_EPOCH"
    )
    parser.add_argument(
        "--shots", type=positive_int, default=8, help="--whole-run: DATASET.NUM_SHOTS"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="--whole-run: batch size"
    )
    parser.add_argument(
        "--classes", type=positive_int, default=4, help="--whole-run: Caltech101 classes"
    )
    parser.add_argument(
        "--images", type=positive_int, default=8, help="--whole-run: images per class"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-worker", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    if args.worker:
        official_worker(args)
        return
    if args.run_worker:
        whole_run_worker(args)
        return
    if not (Path(args.official) / "trainers" / "kgcoop.py").is_file():
        sys.exit(f"error: {args.official} has no trainers/kgcoop.py; give the KgCoOp/ folder")
    if args.whole_run:
        from devkit.whole_run import print_whole_run

        report = compare_whole_runs(
            args.official,
            args.epochs,
            args.weight,
            args.teacher,
            args.shots,
            args.batch_size,
            args.classes,
            args.images,
            args.clip,
        )
        title = f"W {report['weight']}, their teacher CLIP {report['teacher']}"
        print_whole_run(report, title, args.json)
        return
    report = compare(args.official, args.clip, args.steps, args.weight, args.lr, args.teacher)
    print(f"teacher CLIP of the official side: {report['teacher']}; W {report['weight']}")
    print("step  our loss      their loss    max|Δctx| / max|ctx|")
    for step, relative in enumerate(report["relative_context_difference"]):
        losses = (
            f"{report['our_losses'][step - 1]:.8f}  {report['their_losses'][step - 1]:.8f}"
            if step
            else "(start)                   "
        )
        print(f"{step:>4}  {losses}  {relative:.2e}")
    print(
        f"after {report['steps']} steps the context moved by up to {report['context_moved']:.3e}; "
        f"the two differ by {report['max_difference_of_the_move']:.2e} of that move"
    )
    print(
        f"their checkpoint read by our load_model gives their context exactly: "
        f"{report['their_checkpoint_loads_here']}; ours read by theirs gives ours: "
        f"{report['our_checkpoint_loads_there']}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
