"""Time and size one MaPLe training step: ours against the official code's way (issue #20).

On CLIP with the real ViT-B/16 shapes (random weights, nothing is downloaded), MaPLe's prompt
learner (2 tokens from "a photo of a", prompt depth 9: vit_b16_c2_ep5_batch4_2ctx), synthetic
class names of realistic BPE lengths (benchmarks/bench_step.py), batch 4, CPU fp32, these steps
on the same batches:

    straightforward  as the official code computes it (`ReferenceMaPLeCLIP`): every class's
                     prompt over all 77 positions and both towers through CLIP's own blocks
                     (nn.MultiheadAttention, sequence-first), F.cross_entropy, loss.backward(),
                     optimizer.step().
    maple            our MaPLe trainer's step: trainers.steps.coop_gradients on MaPLeCLIP (the
                     shared [SOS][ctx][of a] positions once, each class up to its end-of-text
                     token; the vision tower batch-first with SDPA) + Precision.step.
    prograd_maple    our ProGradMaPLe step: trainers.steps.prograd_gradients (one extra frozen
                     pass of the image encoder for the teacher, two gradients, the projection).

The methods run interleaved, one step each per round: `--warmup` untimed rounds (the first one
measures each step's peak memory under the torch profiler), then `--repeats` timed rounds; the
figures are the medians of wall and process CPU time. Targets: maple <= 0.5x the straightforward
time and <= 0.7x its peak memory; prograd_maple <= 1.5x maple's time.

Run from the repository root:
    python benchmarks/bench_maple.py                  # ~10 min on 2 busy CPU cores
    python benchmarks/bench_maple.py --threads 1       # steadier on a shared machine
    python benchmarks/bench_maple.py --classes 10 --repeats 2 --json out.json
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from pathlib import Path

import _root  # noqa: F401  (the repository root on sys.path)
import torch
import torch.nn.functional as F
from bench_step import (
    SGD,
    build_clip,
    finish,
    machine,
    ratio,
    step_peak_memory,
    synthetic_classnames,
)
from tabulate import tabulate

from experiments.cli import positive_int
from trainers.clip_prompt import zero_shot_text_features
from trainers.maple_prompt import MaPLeCLIP, MaPLePromptLearner, ReferenceMaPLeCLIP
from trainers.precision import Precision
from trainers.steps import coop_gradients, prograd_gradients

N_CTX, INIT_WORDS, DEPTH = 2, "a photo of a", 9  # vit_b16_c2_ep5_batch4_2ctx
TEMPLATE = "a photo of a {}."
METHODS = ("straightforward", "maple", "prograd_maple")


def build(method: str, clip_model, classnames: list[str], device: torch.device):
    """The model and optimizer of one method, from the same seed (the same start)."""
    torch.manual_seed(1)
    learner = MaPLePromptLearner(clip_model, classnames, N_CTX, INIT_WORDS, DEPTH)
    if method == "straightforward":
        model = ReferenceMaPLeCLIP(clip_model, learner)
    elif method == "maple":
        model = MaPLeCLIP(clip_model, learner)
    else:
        teacher = zero_shot_text_features(clip_model, classnames, TEMPLATE, device)
        model = MaPLeCLIP(clip_model, learner, teacher)
    model.to(device)
    optimizer = torch.optim.SGD(learner.parameters(), **SGD)
    return model, optimizer


def step_function(method: str, model, optimizer, precision: Precision):
    params = list(model.prompt_learner.parameters())

    def straightforward(image, label):  # the official forward_backward
        loss = F.cross_entropy(model(image), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def maple(image, label):
        precision.step(
            optimizer, params, coop_gradients(model, image, label, precision, params).gradients
        )

    def prograd_maple(image, label):
        step = prograd_gradients(
            model, image, label, precision, params, lambda_=1.0, temperature=1.0
        )
        precision.step(optimizer, params, step.gradients)

    return {"straightforward": straightforward, "maple": maple, "prograd_maple": prograd_maple}[
        method
    ]


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cpu")
    precision = Precision("fp32", device)
    clip_model = build_clip("ViT-B/16", precision, device)
    classnames = synthetic_classnames(args.classes)
    steps = {
        method: step_function(method, *build(method, clip_model, classnames, device), precision)
        for method in METHODS
    }
    generator = torch.Generator().manual_seed(0)
    rounds = args.warmup + args.repeats
    batches = [
        (
            torch.randn(args.batch, 3, 224, 224, generator=generator),
            torch.randint(0, args.classes, (args.batch,), generator=generator),
        )
        for _ in range(rounds)
    ]
    wall = {method: [] for method in METHODS}
    cpu = {method: [] for method in METHODS}
    memory = {}
    for index, (image, label) in enumerate(batches):
        for method, step in steps.items():
            if index == 0:
                run_once = functools.partial(step, image, label)
                memory[method] = step_peak_memory(run_once, device)
                continue
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step(image, label)
            if index >= args.warmup:
                wall[method].append(time.perf_counter() - start_wall)
                cpu[method].append(time.process_time() - start_cpu)
    return {
        "classes": args.classes,
        "batch": args.batch,
        "median_s": {m: statistics.median(wall[m]) for m in METHODS},
        "median_cpu_s": {m: statistics.median(cpu[m]) for m in METHODS},
        "peak_mib": {m: (memory[m] or 0) / 2**20 for m in METHODS},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=positive_int, default=100)
    parser.add_argument("--batch", type=positive_int, default=4)
    parser.add_argument(
        "--warmup", type=positive_int, default=1, help="untimed rounds (>= 1: memory)"
    )
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed rounds")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.warmup = max(1, args.warmup)
    info = machine()
    started = time.perf_counter()
    result = run(args)
    seconds, cpu_seconds, mib = result["median_s"], result["median_cpu_s"], result["peak_mib"]
    rows = [
        [
            method,
            f"{seconds[method]:.2f}",
            f"{cpu_seconds[method]:.2f}",
            f"{mib[method]:.0f}",
            f"{ratio(seconds[method], seconds['straightforward']):.2f}",
            f"{ratio(mib[method], mib['straightforward']):.2f}",
            f"{ratio(seconds[method], seconds['maple']):.2f}",
        ]
        for method in METHODS
    ]
    headers = ["step", "median s", "median CPU s", "peak MiB", "time / straightforward",
               "memory / straightforward", "time / maple"]  # fmt: skip
    print(
        f"MaPLe step, ViT-B/16 shapes, {args.classes} classes, batch {args.batch}, depth {DEPTH}, "
        f"CPU fp32, {info['torch_threads']} threads ({info['cpu']})"
    )
    print(tabulate(rows, headers=headers))
    print(
        f"targets: maple time <= 0.5x ({ratio(seconds['maple'], seconds['straightforward']):.2f}), "
        f"memory <= 0.7x ({ratio(mib['maple'], mib['straightforward']):.2f}); prograd_maple "
        f"<= 1.5x maple ({ratio(seconds['prograd_maple'], seconds['maple']):.2f})"
    )
    info["wall_seconds"] = time.perf_counter() - started
    info["load_average_at_end"] = os.getloadavg()
    finish(info, [result], args.json)


if __name__ == "__main__":
    main()
