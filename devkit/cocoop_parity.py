"""Our CoCoOp trainer against the CoOp repository's, step for step, on identical input.

Both trainers are built by Dassl on the same tiny CLIP file (OpenAI's format), the same synthetic
Caltech101 folder and the same config (fp32, no augmentation, SGD with momentum and weight decay,
cosine schedule), and start from the same prompt-learner checkpoint (MODEL.INIT_WEIGHTS). Each
then takes `--steps` steps through its own `forward_backward` on the same batches, evaluates one
test batch through its own `model_inference`, and saves its prompt learner with Dassl's
`save_model`. Finally each side loads the other's checkpoint with its own `load_model` and
evaluates the same batch again: checkpoints are interchangeable both ways.

Their code is imported at run time from a checkout of https://github.com/KaiyangZhou/CoOp given by
`--coop-repo` or the COOP_REPO environment variable; none of it is part of this repository. Each
side runs in its own interpreter (both register a trainer named "CoCoOp", and both repositories
have top-level `trainers` and `datasets` packages). Their CLIP loader fetches weights by name, so
their `load_clip_to_cpu` is pointed at the tiny checkpoint; nothing else of theirs is changed.

    COOP_REPO=/path/to/CoOp python tools/cocoop_parity.py --arch ViT --steps 8

`--whole-run` compares whole training runs instead (devkit/whole_run.py): each side's own train.py
for `--epochs` on one synthetic Caltech101 with a tiny RN CLIP, with CoCoOp's
vit_b16_c4_ep10_batch1_ctxv1 config (the same file on both sides), fp32, no augmentation and a
sequential sampler; their side with `.cuda()` a no-op, Dassl's warmup scheduler built on current
torch, and their CLIP loader pointed at the file. It checks that both saw the same batches and
prints, per step, both learning rates and the difference of the update of the prompt learner's
trainable tensors (context and meta-net, as one vector) relative to theirs.

    COOP_REPO=/path/to/CoOp python tools/cocoop_parity.py --whole-run --epochs 2 --batch 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from devkit import worker_environment
from experiments.cli import positive_float, positive_int

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET_YAML = "configs/datasets/caltech101.yaml"
COCOOP_YAML = "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"
EVAL_BATCH = 8


def opts(work: Path, args: argparse.Namespace) -> list[str]:
    """The config options both sides run with (on top of the same two YAML files)."""
    return [
        "DATASET.ROOT", str(work / "data"), "OUTPUT_DIR", str(work / "unused"),
        "MODEL.INIT_WEIGHTS", str(work / "start.pth"),
        "INPUT.SIZE", "(32, 32)", "INPUT.TRANSFORMS", "['normalize']",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", str(args.batch),
        "DATALOADER.TEST.BATCH_SIZE", str(EVAL_BATCH),
        "OPTIM.LR", str(args.lr), "OPTIM.MAX_EPOCH", "4", "OPTIM.WARMUP_EPOCH", "0",
        "TRAINER.COCOOP.PREC", "fp32", "SEED", "1",
    ]  # fmt: skip


def prepare(work: Path, arch: str, classes: int) -> None:
    """The shared input: tiny CLIP, synthetic Caltech101, starting prompt-learner checkpoint."""
    import torch

    from devkit.synthetic_data import write_caltech101
    from devkit.tiny_clip import write_tiny_clip
    from trainers.clip_prompt import load_clip
    from trainers.cocoop_prompt import CoCoOpPromptLearner
    from trainers.dassl_compat import without_token_buffers

    write_caltech101(work / "data", num_classes=classes, images_per_class=8)
    write_tiny_clip(work / "clip.pt", arch)
    clip_model = load_clip("", str(work / "clip.pt")).float()
    torch.manual_seed(3)
    learner = CoCoOpPromptLearner(clip_model, ["start"], n_ctx=4, init_words="a photo of a")
    with torch.no_grad():  # a start away from the word embeddings and from the default init
        for param in learner.parameters():
            param.add_(0.05 * torch.randn_like(param))
        # The tiny meta-net has 2 hidden units: keep them active, so every tensor gets gradients.
        learner.meta_net.linear1.bias.add_(1.0)
    state = without_token_buffers(learner.state_dict())
    torch.save({"state_dict": state, "epoch": 0}, work / "start.pth")


def build_ours(work: Path, args: argparse.Namespace):
    sys.path[:0] = [str(REPO_ROOT)]
    os.chdir(REPO_ROOT)
    from train import build_parser, seed_and_build, setup_cfg

    argv = ["--trainer", "CoCoOp", "--dataset-config-file", DATASET_YAML]
    argv += ["--config-file", COCOOP_YAML, *opts(work, args)]
    argv += ["MODEL.BACKBONE.PATH", str(work / "clip.pt")]  # theirs: see build_theirs
    return seed_and_build(setup_cfg(build_parser().parse_args(argv)))


def build_theirs(work: Path, args: argparse.Namespace, coop_repo: Path):
    """Their trainer, built as their train.py builds it; only its CLIP file is redirected."""
    sys.path.insert(0, str(coop_repo))
    os.chdir(coop_repo)
    from clip import clip as their_clip
    from dassl.config import get_cfg_default
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    import train as their_train  # registers their datasets and trainers
    import trainers.cocoop as their_cocoop

    clip_file = work / "clip.pt"

    def load_clip_to_cpu(cfg):  # theirs downloads MODEL.BACKBONE.NAME; same build_model call
        import torch

        return their_clip.build_model(torch.load(clip_file, map_location="cpu"))

    their_cocoop.load_clip_to_cpu = load_clip_to_cpu
    cfg = get_cfg_default()
    their_train.extend_cfg(cfg)
    cfg.merge_from_file(str(coop_repo / DATASET_YAML))
    cfg.merge_from_file(str(coop_repo / COCOOP_YAML))
    cfg.merge_from_list(opts(work, args))
    cfg.TRAINER.NAME = "CoCoOp"
    cfg.freeze()
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def drive(side: str, work: Path, args: argparse.Namespace) -> None:
    """Run one side: the steps, an evaluation, save; then evaluate the other side's checkpoint."""
    import torch

    if side == "theirs":
        trainer = build_theirs(work, args, Path(args.coop_repo).resolve())
    else:
        trainer = build_ours(work, args)
    batches_file = work / "batches.pt"
    if not batches_file.exists():  # the first side draws them from its (deterministic) loaders
        train = iter(trainer.train_loader_x)
        batches = [next(train) for _ in range(args.steps)]
        test = next(iter(trainer.test_loader))
        torch.save(
            {
                "train": [{"img": b["img"], "label": b["label"]} for b in batches],
                "test": test["img"],
            },
            batches_file,
        )
    batches = torch.load(batches_file)
    if not (work / f"{side}.pt").exists():
        learner = trainer._models["prompt_learner"]
        trajectory = []
        trainer.num_batches = args.steps_per_epoch
        for step, batch in enumerate(batches["train"]):
            trainer.set_model_mode("train")
            trainer.epoch, trainer.batch_idx = divmod(step, args.steps_per_epoch)
            trainer.forward_backward(batch)
            trajectory.append(trainable_state(learner))
        trainer.set_model_mode("eval")
        with torch.no_grad():
            logits = trainer.model_inference(batches["test"].to(trainer.device)).cpu()
        trainer.save_model(args.steps - 1, str(work / side))  # Dassl names it epoch + 1
        torch.save({"trajectory": trajectory, "logits": logits}, work / f"{side}.pt")

    other = "ours" if side == "theirs" else "theirs"
    if (work / other).is_dir():
        trainer.load_model(str(work / other), epoch=args.steps)
        trainer.set_model_mode("eval")
        with torch.no_grad():
            cross = trainer.model_inference(batches["test"].to(trainer.device)).cpu()
        torch.save(cross, work / f"{side}_evaluates_{other}.pt")


def trainable_state(learner) -> dict:
    return {
        name: param.detach().cpu().clone()
        for name, param in learner.named_parameters()
        if param.requires_grad
    }


def relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


def compare(work: Path) -> dict:
    """The figures: parameter and logit differences between the two sides."""
    import torch

    ours, theirs = torch.load(work / "ours.pt"), torch.load(work / "theirs.pt")
    start = torch.load(work / "start.pth")["state_dict"]
    steps = []
    for mine, reference in zip(ours["trajectory"], theirs["trajectory"], strict=True):
        if set(mine) != set(reference):
            raise ValueError(f"different trainable tensors: {sorted(mine)} vs {sorted(reference)}")
        steps.append({name: relative(mine[name], reference[name]) for name in reference})
    last_ours, last_theirs = ours["trajectory"][-1], theirs["trajectory"][-1]
    return {
        "steps": len(steps),
        "max_relative_parameter_difference_per_step": [max(s.values()) for s in steps],
        "relative_parameter_difference_at_end": steps[-1],
        # How far the parameters moved, relative to where they started: the differences above
        # must be tiny next to these.
        "relative_distance_travelled": {
            name: relative(last_theirs[name], start[name].float()) for name in last_theirs
        },
        "max_abs_parameter_difference_at_end": max(
            float((last_ours[n] - last_theirs[n]).abs().max()) for n in last_theirs
        ),
        "max_abs_logit_difference": float((ours["logits"] - theirs["logits"]).abs().max()),
        "logit_scale_of_reference": float(theirs["logits"].abs().max()),
        "same_predictions": bool(
            torch.equal(ours["logits"].argmax(-1), theirs["logits"].argmax(-1))
        ),
        "theirs_evaluating_our_checkpoint_max_abs_difference": float(
            (torch.load(work / "theirs_evaluates_ours.pt") - ours["logits"]).abs().max()
        ),
        "ours_evaluating_their_checkpoint_max_abs_difference": float(
            (torch.load(work / "ours_evaluates_theirs.pt") - theirs["logits"]).abs().max()
        ),
    }


def run_parity(
    coop_repo: Path, arch: str = "ViT", steps: int = 8, batch: int = 1, lr: float = 0.05
) -> dict:
    """Run both sides in fresh interpreters on shared input; return the figures."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        prepare(work, arch, classes=5)
        common = [
            "--coop-repo", str(coop_repo), "--arch", arch, "--steps", str(steps),
            "--batch", str(batch), "--lr", str(lr), "--work", str(work),
        ]  # fmt: skip
        env = worker_environment()  # the worker imports the repository's packages
        for side in ("ours", "theirs", "ours"):
            result = subprocess.run(
                [sys.executable, __file__, "--side", side, *common],
                capture_output=True, text=True, env=env, timeout=600,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"the {side} side failed:\n{result.stderr[-4000:]}")
        return {"arch": arch, "batch": batch, "lr": lr, **compare(work)}


# --- Whole training runs: both sides' train.py for N epochs (devkit/whole_run.py). ---

WHOLE_RUN_CONFIG = "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"  # on both sides


def whole_run_worker(args: argparse.Namespace) -> None:
    """One side's train.py (in its own process) with every step recorded: the context is all of
    the prompt learner's trainable tensors (ctx and the meta-net) as one vector. Their side with
    the CPU adaptations of devkit/whole_run.py and their CLIP loader pointed at the file."""
    import torch

    from devkit.whole_run import (
        cpu_adaptations,
        enter_side,
        run_recorded_train_py,
        whole_run_argv,
    )

    opts = ["TRAINER.COCOOP.PREC", "fp32"]
    if args.run_worker == "theirs":
        enter_side(Path(args.coop_repo))
        cpu_adaptations()
        from clip import clip as their_clip

        from trainers import cocoop

        def load_clip_to_cpu(cfg):  # theirs downloads MODEL.BACKBONE.NAME; same build_model call
            return their_clip.build_model(torch.load(args.clip, map_location="cpu"))

        cocoop.load_clip_to_cpu = load_clip_to_cpu
    else:  # their config has no MODEL.BACKBONE.PATH
        enter_side(REPO_ROOT)
        from trainers import cocoop

        opts += ["MODEL.BACKBONE.PATH", args.clip]
    names: list[str] = []

    def context(trainer) -> torch.Tensor:
        learner = trainer.model.prompt_learner
        if not names:
            names.extend(n for n, p in learner.named_parameters() if p.requires_grad)
        parameters = dict(learner.named_parameters())
        return torch.cat([parameters[name].detach().flatten() for name in names])

    def saved_context(state: dict) -> torch.Tensor:
        return torch.cat([state[name].flatten() for name in names])

    argv = whole_run_argv(
        "CoCoOp", WHOLE_RUN_CONFIG, args.root, args.out_dir, args.epochs, args.shots, args.batch,
        opts,
    )  # fmt: skip
    run_recorded_train_py(cocoop.CoCoOp, argv, args.epochs, args.output, context, saved_context)
    record = torch.load(args.output, weights_only=True)
    torch.save({**record, "tensor_names": names}, args.output)


def compare_whole_runs(
    coop_repo: Path,
    epochs: int = 2,
    shots: int = 8,
    batch: int = 1,
    num_classes: int = 4,
    images_per_class: int = 8,
    clip_file: str | None = None,
) -> dict:
    """Run both sides' train.py for `epochs` on one synthetic Caltech101 with a tiny RN CLIP and
    compare the prompt learner's trainable tensors after every step and epoch, relative to how
    far theirs moved (devkit/whole_run.py). Raises ValueError if the two prompt learners train
    different tensors."""

    from devkit.whole_run import compare_records, run_sides, whole_run_inputs

    with whole_run_inputs(clip_file, num_classes, images_per_class) as (folder, clip, root):
        commands, outputs = {}, {}
        for side in ("ours", "theirs"):
            outputs[side] = folder / f"{side}.pt"
            commands[side] = [
                sys.executable, "-m", "devkit.cocoop_parity",
                "--coop-repo", str(Path(coop_repo).resolve()), "--run-worker", side,
                "--clip", clip, "--root", root, "--out-dir", str(folder / side),
                "--output", str(outputs[side]), "--epochs", str(epochs), "--shots", str(shots),
                "--batch", str(batch),
            ]  # fmt: skip
        records = run_sides(commands, outputs)
    ours, theirs = records["ours"], records["theirs"]
    if ours["tensor_names"] != theirs["tensor_names"]:
        raise ValueError(
            f"different trainable tensors: {ours['tensor_names']} vs {theirs['tensor_names']}"
        )
    report = compare_records(ours, theirs, epochs)
    report["tensor_names"] = theirs["tensor_names"]
    report["batch"] = batch
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--coop-repo", default=os.environ.get("COOP_REPO", ""),
        help="a checkout of KaiyangZhou/CoOp (default: $COOP_REPO)",
    )  # fmt: skip
    parser.add_argument("--arch", choices=("RN", "ViT"), default="ViT", help="tiny CLIP variant")
    parser.add_argument("--steps", type=positive_int, default=8, help="training steps on each side")
    parser.add_argument("--batch", type=positive_int, default=1, help="images per step (CoCoOp: 1)")
    parser.add_argument("--lr", type=positive_float, default=0.05, help="OPTIM.LR")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
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
        "--classes", type=positive_int, default=4, help="--whole-run: Caltech101 classes"
    )
    parser.add_argument(
        "--images", type=positive_int, default=8, help="--whole-run: images per class"
    )
    parser.add_argument("--clip", default=None, help="--whole-run: a CLIP file (default: tiny RN)")
    parser.add_argument("--side", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    parser.add_argument("--run-worker", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps_per_epoch = max(1, args.steps // 2)  # so the schedule ticks during the run
    if not args.coop_repo or not (Path(args.coop_repo) / "trainers" / "cocoop.py").is_file():
        parser.error(
            f"--coop-repo / COOP_REPO is '{args.coop_repo}', not a checkout of KaiyangZhou/CoOp "
            f"(no trainers/cocoop.py there); clone https://github.com/KaiyangZhou/CoOp and pass "
            f"its path"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side:
        drive(args.side, args.work, args)
        return
    if args.run_worker:
        whole_run_worker(args)
        return
    if args.whole_run:
        from devkit.whole_run import print_whole_run

        report = compare_whole_runs(
            Path(args.coop_repo), args.epochs, args.shots, args.batch, args.classes, args.images,
            args.clip,
        )  # fmt: skip
        title = f"CoCoOp, batch {args.batch}, tensors {', '.join(report['tensor_names'])}"
        print_whole_run(report, title, args.json)
        return
    figures = run_parity(Path(args.coop_repo), args.arch, args.steps, args.batch, args.lr)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
