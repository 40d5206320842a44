"""Our MaPLe against the official code (muzairkhattak/multimodal-prompt-learning), step for step
on identical input.

Both trainers are built by Dassl on the same tiny ViT CLIP (devkit/tiny_clip.py
`build_maple_width_clip`: ViT-B/16's tower widths, which their prompt learner hard-codes, 3
layers, 32x32 images), the same synthetic Caltech101 folder and the same config (their
vit_b16_c2_ep5_batch4_2ctx with fp32, prompt depth 3, no augmentation, SGD with momentum and
weight decay, cosine schedule), and start from the same prompt-learner checkpoint
(MODEL.INIT_WEIGHTS, keys ``prompt_learner.*``). Each then takes `--steps` steps through its own
`forward_backward` on the same batches, evaluates one test batch through its own
`model_inference`, and saves with Dassl's `save_model` (MultiModalPromptLearner/model.pth.tar-N).
Finally each side loads the other's checkpoint with its own `load_model` and evaluates the same
batch again: checkpoints are interchangeable both ways.

Their code is imported at run time from a checkout given by `--maple-repo` or the MAPLE_OFFICIAL
environment variable; none of it is part of this repository. Each side runs in its own
interpreter (both register a trainer named "MaPLe", and their repository has its own `clip`,
`trainers` and `datasets` packages). Two adaptations on their side, nothing else changed:
their CLIP loader (which downloads MODEL.BACKBONE.NAME) is pointed at the tiny file, and their
`proj` layer, which their code always casts to fp16 (so that their fp32 setting fails with a
dtype error), is cast back to fp32 after building (the start checkpoint's `proj` is chosen
fp16-representable, so both sides start from the same values).

    MAPLE_OFFICIAL=/path/to/multimodal-prompt-learning python tools/maple_parity.py --steps 6
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
from devkit.cocoop_parity import compare
from experiments.cli import positive_float, positive_int

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET_YAML = "configs/datasets/caltech101.yaml"
MAPLE_YAML = "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"
EVAL_BATCH = 8
DEPTH = 3  # the tiny CLIP's towers have 3 layers: prompts in every one of them


def opts(work: Path, args: argparse.Namespace) -> list[str]:
    """The config options both sides run with (on top of the same two YAML files)."""
    return [
        "DATASET.ROOT", str(work / "data"), "OUTPUT_DIR", str(work / "unused"),
        "MODEL.INIT_WEIGHTS", str(work / "start.pth"),
        "INPUT.SIZE", "(32, 32)", "INPUT.TRANSFORMS", "['normalize']",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", str(args.batch),
        "DATALOADER.TEST.BATCH_SIZE", str(EVAL_BATCH),
        "OPTIM.LR", str(args.lr), "OPTIM.MAX_EPOCH", "4", "OPTIM.WARMUP_EPOCH", "0",
        "TRAINER.MAPLE.PREC", "fp32", "TRAINER.MAPLE.PROMPT_DEPTH", str(DEPTH), "SEED", "1",
    ]  # fmt: skip


def prepare(work: Path, classes: int) -> None:
    """The shared input: tiny CLIP, synthetic Caltech101, starting prompt-learner checkpoint."""
    import torch

    from devkit.synthetic_data import write_caltech101
    from devkit.tiny_clip import build_maple_width_clip
    from trainers.clip_prompt import load_clip
    from trainers.maple_prompt import MaPLePromptLearner

    write_caltech101(work / "data", num_classes=classes, images_per_class=16)
    torch.save(build_maple_width_clip(DEPTH).state_dict(), work / "clip.pt")
    clip_model = load_clip("", str(work / "clip.pt")).float()
    torch.manual_seed(3)
    learner = MaPLePromptLearner(clip_model, ["start"], 2, "a photo of a", DEPTH)
    with torch.no_grad():  # a start away from the word embeddings and from the default init
        for param in learner.parameters():
            param.add_(0.05 * torch.randn_like(param))
        for param in learner.proj.parameters():  # theirs loads it into an fp16 layer
            param.copy_(param.half().float())
    state = {f"prompt_learner.{key}": value for key, value in learner.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 0}, work / "start.pth")


def build_ours(work: Path, args: argparse.Namespace):
    sys.path[:0] = [str(REPO_ROOT)]
    os.chdir(REPO_ROOT)
    from train import build_parser, seed_and_build, setup_cfg

    argv = ["--trainer", "MaPLe", "--dataset-config-file", DATASET_YAML]
    argv += ["--config-file", MAPLE_YAML, *opts(work, args)]
    argv += ["MODEL.BACKBONE.PATH", str(work / "clip.pt")]  # theirs: see build_theirs
    argv += ["MODEL.TEXT_ENCODER", "reference" if args.reference else "packed"]
    return seed_and_build(setup_cfg(build_parser().parse_args(argv)))


def build_theirs(work: Path, args: argparse.Namespace, maple_repo: Path):
    """Their trainer, built as their train.py builds it, with the two adaptations above."""
    sys.path.insert(0, str(maple_repo))
    os.chdir(maple_repo)
    import torch
    from clip import clip as their_clip
    from dassl.config import get_cfg_default
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    import train as their_train  # registers their datasets and trainers
    import trainers.maple as their_maple

    clip_file = work / "clip.pt"

    def load_clip_to_cpu(cfg):  # theirs downloads MODEL.BACKBONE.NAME; same build_model call
        design_details = {
            "trainer": "MaPLe", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0,
            "language_ctx": 0, "maple_length": cfg.TRAINER.MAPLE.N_CTX,
        }  # fmt: skip
        state_dict = torch.load(clip_file, map_location="cpu")
        return their_clip.build_model(state_dict, design_details)

    their_maple.load_clip_to_cpu = load_clip_to_cpu
    cfg = get_cfg_default()
    their_train.extend_cfg(cfg)
    cfg.merge_from_file(str(maple_repo / DATASET_YAML))
    cfg.merge_from_file(str(maple_repo / MAPLE_YAML))
    cfg.merge_from_list(opts(work, args))
    cfg.TRAINER.NAME = "MaPLe"
    cfg.freeze()
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    trainer.model.prompt_learner.proj.float()  # their .half() fails under fp32 (same values)
    return trainer


def drive(side: str, work: Path, args: argparse.Namespace) -> None:
    """Run one side: the steps, an evaluation, save; then evaluate the other side's checkpoint."""
    import torch

    if side == "theirs":
        trainer = build_theirs(work, args, Path(args.maple_repo).resolve())
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
        learner = trainer._models["MultiModalPromptLearner"]
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


def trainable_state(model) -> dict:
    return {
        name: param.detach().cpu().float().clone()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def run_parity(
    maple_repo: Path, steps: int = 6, batch: int = 4, lr: float = 0.05, reference: bool = False
) -> dict:
    """Run both sides in fresh interpreters on shared input; return the figures."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        prepare(work, classes=5)
        common = [
            "--maple-repo", str(maple_repo), "--steps", str(steps), "--batch", str(batch),
            "--lr", str(lr), "--work", str(work), *(["--reference"] if reference else []),
        ]  # fmt: skip
        env = worker_environment()  # the worker imports the repository's packages
        for side in ("ours", "theirs", "ours"):
            result = subprocess.run(
                [sys.executable, __file__, "--side", side, *common],
                capture_output=True, text=True, env=env, timeout=600,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"the {side} side failed:\n{result.stderr[-4000:]}")
        figures = compare(work)  # the same figures as CoCoOp's parity
        return {
            "batch": batch,
            "lr": lr,
            "ours": "reference" if reference else "fast",
            "tensors": sorted(figures["relative_parameter_difference_at_end"]),
            **figures,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--maple-repo", default=os.environ.get("MAPLE_OFFICIAL", ""),
        help="a checkout of muzairkhattak/multimodal-prompt-learning (default: $MAPLE_OFFICIAL)",
    )  # fmt: skip
    parser.add_argument("--steps", type=positive_int, default=6, help="training steps on each side")
    parser.add_argument("--batch", type=positive_int, default=4, help="images per step (MaPLe: 4)")
    parser.add_argument("--lr", type=positive_float, default=0.05, help="OPTIM.LR")
    parser.add_argument(
        "--reference", action="store_true",
        help="our side with MODEL.TEXT_ENCODER reference (the official computation)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--side", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps_per_epoch = max(1, args.steps // 2)  # so the schedule ticks during the run
    if not args.maple_repo or not (Path(args.maple_repo) / "trainers" / "maple.py").is_file():
        parser.error(
            f"--maple-repo / MAPLE_OFFICIAL is '{args.maple_repo}', not a checkout of "
            f"muzairkhattak/multimodal-prompt-learning (no trainers/maple.py there); clone it and "
            f"pass its path"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side:
        drive(args.side, args.work, args)
        return
    figures = run_parity(Path(args.maple_repo), args.steps, args.batch, args.lr, args.reference)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
