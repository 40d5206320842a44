"""train.py runs for the end-to-end tests: its command line for a short CPU run on a synthetic
Caltech101 copy and a tiny CLIP, a trainer built in-process from that command line, a run as a
subprocess, and what the tests read back (accuracy, a model's state). Needs Dassl."""

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

import train
from train import build_parser, seed_and_build, setup_cfg

ROOT = Path(__file__).resolve().parents[1]
DATASET_YAML = "configs/datasets/caltech101.yaml"


def cli_args(trainer, config, output_dir, data_root, clip_file, *opts, seed=1, epochs=2, flags=()):
    """train.py's command line for a short CPU run (`flags` go before the KEY VALUE opts)."""
    return [
        "--root", str(data_root), "--seed", str(seed), "--trainer", trainer,
        "--dataset-config-file", DATASET_YAML, "--config-file", config,
        "--output-dir", str(output_dir), *flags,
        "MODEL.BACKBONE.PATH", str(clip_file), "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "DATALOADER.TEST.BATCH_SIZE", "8", "DATASET.NUM_SHOTS", "4",
        "OPTIM.MAX_EPOCH", str(epochs), "OPTIM.LR", "0.5", "OPTIM.WARMUP_EPOCH", "0",
        "TRAINER.COOP.PREC", "fp32", "TRAIN.PRINT_FREQ", "1", *opts,
    ]  # fmt: skip


def build(monkeypatch, *args, **kwargs):
    """A Dassl trainer built in this process from train.py's own config path."""
    monkeypatch.chdir(ROOT)
    return seed_and_build(setup_cfg(build_parser().parse_args(cli_args(*args, **kwargs))))


def run_train_py(*args) -> str:
    """Run train.py as a user does; return its log.txt."""
    result = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


class KeepOpen(io.TextIOBase):
    """A stdout for Dassl's setup_logger, whose Logger closes its console when it is
    garbage-collected (that would close pytest's capture file)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        pass


def run_in_process(args) -> None:
    """train.py's command line in this process (no interpreter start-up), from the repository
    root; a refusal raises SystemExit with its `error: ...` message."""
    before = os.getcwd()  # contextlib.chdir is Python 3.11+; we support 3.10
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(KeepOpen(sys.stdout)):
            train.run([str(arg) for arg in args])
    finally:
        os.chdir(before)


def accuracy(log: str) -> float:
    return float(re.findall(r"\* accuracy: ([\d.]+)%", log)[-1])


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
