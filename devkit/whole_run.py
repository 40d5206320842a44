"""Whole training runs of two codebases compared step by step: the parity tools' `--whole-run`.

Each side's own train.py runs in its own process (their modules never meet ours), from its own
folder as `python train.py` runs, for a few epochs on one synthetic Caltech101
(devkit/synthetic_data.py) with a tiny RN CLIP (devkit/tiny_clip.py), with deterministic input:
fp32, INPUT.TRANSFORMS ('normalize',), a sequential sampler, no data-loader workers, no test. The
trainer's `forward_backward` is wrapped to record, per step, the epoch, the learning rate, the
batch (labels and an image checksum) and the context after it. The two records must show the same
batches; the report is the difference of the context updates relative to theirs.

A tool supplies what differs per method: the train.py options, the trainer class and, on their
side, the adaptations to a CPU machine (`cpu_adaptations`, plus their CLIP loader pointed at the
tiny checkpoint). Used by devkit/kgcoop_parity.py, devkit/prograd_parity.py and
devkit/cocoop_parity.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from devkit import worker_environment

ROOT = Path(__file__).resolve().parents[1]
DATASET_CONFIG = "configs/datasets/caltech101.yaml"  # the same file on both sides


def whole_run_argv(
    trainer: str,
    config_file: str,
    root: str,
    output_dir: str,
    epochs: int,
    shots: int,
    batch: int,
    opts: Sequence[str] = (),
) -> list[str]:
    """train.py's command line, the same on both sides (each reads its own copy of the configs):
    deterministic input (no augmentation, sequential sampler), fp32, no test; `opts` last."""
    return [
        "train.py", "--root", root, "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", DATASET_CONFIG, "--config-file", config_file,
        "--output-dir", output_dir, "INPUT.SIZE", "(32, 32)",
        "INPUT.TRANSFORMS", "('normalize',)", "DATALOADER.TRAIN_X.SAMPLER", "SequentialSampler",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch),
        "DATASET.NUM_SHOTS", str(shots), "OPTIM.MAX_EPOCH", str(epochs),
        "TRAINER.COOP.PREC", "fp32", "TEST.NO_TEST", "True",
        *opts,
    ]  # fmt: skip


def enter_side(folder: Path, extra_paths: Sequence[Path] = ()) -> None:
    """Make this process import as `python train.py` run from `folder` would (then `extra_paths`,
    e.g. a bundled Dassl), and no longer from this repository's root: both have top-level
    `trainers` and `datasets` packages."""
    folder = folder.resolve()
    os.chdir(folder)
    if folder != ROOT:
        sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != ROOT]
    sys.path[:0] = [str(folder), *(str(Path(p).resolve()) for p in extra_paths)]


def cpu_adaptations() -> None:
    """What the official codebases need on a CPU machine with current torch, and nothing else:
    `.cuda()` is a no-op, and Dassl's warmup scheduler (upstream's and the forks') is built
    without the `verbose` argument that current torch's LRScheduler no longer takes."""
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.cuda = lambda self, *a, **k: self
    from dassl.optim import lr_scheduler
    from torch.optim.lr_scheduler import LRScheduler

    def warmup_init(self, optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        LRScheduler.__init__(self, optimizer, last_epoch)

    lr_scheduler._BaseWarmupScheduler.__init__ = warmup_init


def new_record() -> dict:
    """An empty record for `record_steps`."""
    return {
        "contexts": [],
        "epochs": [],
        "lrs": [],
        "labels": [],
        "image_sums": [],
        "summaries": [],
        "batchnorm_training": False,
    }


def record_steps(trainer_class: type, record: dict, context: Callable | None = None) -> None:
    """Wrap `trainer_class.forward_backward` to record, per step, the epoch, the LR it used, the
    batch (labels and an image checksum), the loss summary and the context after it
    (`context(trainer)`, default the prompt learner's `ctx`); and whether any BatchNorm layer of
    the model ran in training mode (the tiny RN has BatchNorm; Dassl's set_model_mode("train")
    reaches only the registered prompt learner)."""
    step = trainer_class.forward_backward
    if context is None:

        def context(trainer) -> torch.Tensor:
            return trainer.model.prompt_learner.ctx

    def forward_backward(self, batch):
        if not record["contexts"]:
            record["contexts"].append(context(self).detach().clone())
        record["epochs"].append(self.epoch)
        record["lrs"].append(self.optim.param_groups[0]["lr"])
        record["labels"].append(batch["label"].tolist())
        record["image_sums"].append(batch["img"].double().sum().item())
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        record["batchnorm_training"] |= any(m.training for m in norms)
        summary = step(self, batch)
        record["summaries"].append({name: float(value) for name, value in summary.items()})
        record["contexts"].append(context(self).detach().clone())
        return summary

    trainer_class.forward_backward = forward_backward


def run_recorded_train_py(
    trainer_class: type,
    argv: list[str],
    epochs: int,
    output: str,
    context: Callable | None = None,
    saved_context: Callable | None = None,
) -> None:
    """Run ./train.py with `argv` (after `enter_side`), every step of `trainer_class` recorded, and
    save the record to `output`, with whether the last epoch's checkpoint (as --eval-only reads
    it) holds the last recorded context. `context(trainer)` is what is recorded (default: the
    prompt learner's `ctx`), `saved_context(state_dict)` the same read from the prompt learner's
    checkpoint (default: its "ctx")."""
    record = new_record()
    record["trainer_file"] = sys.modules[trainer_class.__module__].__file__
    record_steps(trainer_class, record, context)
    sys.argv = list(argv)
    with contextlib.redirect_stdout(io.StringIO()):
        runpy.run_path("train.py", run_name="__main__")
    record["contexts"] = torch.stack(record["contexts"])
    output_dir = Path(argv[argv.index("--output-dir") + 1])
    checkpoint = output_dir / "prompt_learner" / f"model.pth.tar-{epochs}"
    # weights_only=False: the official checkpoints pickle their scheduler.
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    saved = saved_context(state) if saved_context else state["ctx"]
    record["checkpoint_is_last_context"] = torch.equal(saved, record["contexts"][-1])
    torch.save(record, output)


@contextlib.contextmanager
def whole_run_inputs(
    clip_file: str | None, num_classes: int, images_per_class: int
) -> Iterator[tuple[Path, str, str]]:
    """(a temporary folder, the tiny RN CLIP file or `clip_file`, the synthetic DATASET.ROOT)."""
    from devkit.synthetic_data import write_caltech101
    from devkit.tiny_clip import write_tiny_clip

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if clip_file is None:
            clip_file = str(write_tiny_clip(folder / "tiny_rn.pt", "RN"))
        root = str(write_caltech101(folder / "data", num_classes, images_per_class))
        yield folder, str(Path(clip_file).resolve()), root


def run_sides(commands: dict[str, list[str]], outputs: dict[str, Path]) -> dict[str, dict]:
    """Run each side's worker command from the repository root; their records, by side."""
    env = worker_environment()  # the worker imports the repository's packages
    records = {}
    for side, command in commands.items():
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"{side} train.py failed:\n{result.stderr[-4000:]}")
        records[side] = torch.load(outputs[side], weights_only=True)
    return records


def compare_records(ours: dict, theirs: dict, epochs: int) -> dict:
    """The context after every step and epoch, relative to how far theirs moved.

    Raises RuntimeError if the two runs did not see the same batches (labels, epochs, image
    checksums).
    """
    same_input = (
        ours["labels"] == theirs["labels"]
        and ours["epochs"] == theirs["epochs"]
        and torch.allclose(
            torch.tensor(ours["image_sums"]), torch.tensor(theirs["image_sums"]), rtol=1e-6
        )
    )
    if not same_input:
        raise RuntimeError(
            f"the two train.py runs did not see the same batches (labels {ours['labels']} vs "
            f"{theirs['labels']}); check that both read the same DATASET.ROOT and sampler"
        )
    start = theirs["contexts"][0]
    dims = tuple(range(1, start.dim() + 1))
    # Per step: max |Δ(update)| / max |their update so far|.
    moved = (theirs["contexts"] - start).abs().amax(dim=dims)
    difference = ((ours["contexts"] - start) - (theirs["contexts"] - start)).abs().amax(dim=dims)
    relative = (difference / moved.clamp_min(1e-30)).tolist()
    steps = len(ours["epochs"])
    last_steps = [
        i for i in range(steps) if i + 1 == steps or ours["epochs"][i + 1] != ours["epochs"][i]
    ]
    ends = [i + 1 for i in last_steps]
    return {
        "epochs": epochs,
        "steps_per_epoch": steps // epochs,
        "same_start": torch.equal(ours["contexts"][0], start),
        "start_difference": (ours["contexts"][0] - start).abs().max().item(),
        "trainer_files": [ours["trainer_file"], theirs["trainer_file"]],
        "batchnorm_training": [ours["batchnorm_training"], theirs["batchnorm_training"]],
        "checkpoints_hold_the_last_context": (
            ours["checkpoint_is_last_context"] and theirs["checkpoint_is_last_context"]
        ),
        "our_lrs": ours["lrs"],
        "their_lrs": theirs["lrs"],
        "our_summaries": ours["summaries"],
        "their_summaries": theirs["summaries"],
        "relative_update_difference_per_step": relative[1:],
        "relative_update_difference_per_epoch": [relative[i] for i in ends],
        "relative_update_difference": relative[-1],
        "context_moved": moved[-1].item(),
    }


def print_whole_run(report: dict, title: str, json_file: Path | None = None) -> None:
    """The whole-run report: per step, the LRs and the difference of the context update."""
    print(
        f"train.py on both sides, {report['epochs']} epochs of {report['steps_per_epoch']} "
        f"steps, {title}"
    )
    print("step  our LR      their LR    max|Δ update| / max|their update|")
    for step, relative in enumerate(report["relative_update_difference_per_step"]):
        print(
            f"{step + 1:>4}  {report['our_lrs'][step]:.6e}  {report['their_lrs'][step]:.6e}  "
            f"{relative:.2e}"
        )
    print(
        f"after {report['epochs']} epochs the context moved by up to "
        f"{report['context_moved']:.3e}; the two updates differ by "
        f"{report['relative_update_difference']:.2e} of that"
    )
    if json_file:
        json_file.write_text(json.dumps(report, indent=2))
