"""Time and size one CoCoOp training step: ours against the CoOp repository's way (issue #13).

On CLIP with the real ViT-B/16 shapes (random weights, nothing is downloaded), CoCoOp's prompt
learner (4 context vectors from "a photo of a", the meta-net) and synthetic class names of
realistic BPE lengths, each point (classes, batch) times these steps on the same batches:

    straightforward  the CoOp repository's CoCoOp (`StraightforwardCoCoOp` below): CLIP's image
                     encoder, the prompts of every image x class in full (B, C, 77, D_t), and per
                     image CLIP's text transformer over all 77 positions of its C prompts, the
                     logits per image, F.cross_entropy, loss.backward(), optimizer.step().
    ours             what our CoCoOp trainer does: trainers.steps.coop_gradients on CoCoOpCLIP
                     (each image's [SOS][ctx + π(image)] once, each class over its own positions)
                     + Precision.step.
    prograd          (--prograd) our ProGradCoCoOp step: trainers.steps.prograd_gradients.

Timing and memory follow bench_step.py (whose helpers this script uses): one fresh subprocess per
backbone, methods interleaved one step each per round, `--warmup` untimed steps (the first one
measures the peak memory under the torch profiler), then the median of `--repeats` timed steps;
the ratio of the medians of the process's CPU time is reported beside the wall-time ratio. The
straightforward step runs only up to `--straightforward-max-prompts` image x class prompts per
step (it takes ~0.16 s of CPU time and ~27 MiB per prompt); beyond, and wherever a step would
not fit in memory, its time and memory are extrapolated linearly in the number of prompts from
its two largest measured points and marked "(est.)".

Then, for each class count, the largest batch of our step that fits in the peak memory the
straightforward step needs for batch 1 (CoCoOp's configs use batch 1 for this reason).

Run from the repository root:
    python benchmarks/bench_cocoop.py                 # the default grid (~25 min on 2 CPU cores)
    python benchmarks/bench_cocoop.py --quick         # smoke run (~1 min)
    python benchmarks/bench_cocoop.py --points 100x1 100x8 --prograd --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import _root  # noqa: F401  (the repository root on sys.path)
import torch
import torch.nn.functional as F
from bench_step import (
    BACKBONES,
    CPU_MEMORY_METHOD,
    CUDA_MEMORY_METHOD,
    SGD,
    StraightforwardCoOp,
    available_memory,
    build_clip,
    cap_address_space,
    finish,
    fmt,
    is_out_of_memory,
    machine,
    ratio,
    run_in_subprocess,
    step_peak_memory,
    synchronize,
    synthetic_classnames,
)
from clip.model import CLIP
from tabulate import tabulate

from experiments.cli import non_negative_int, positive_int
from trainers.clip_prompt import eot_positions, zero_shot_text_features
from trainers.cocoop_prompt import CoCoOpCLIP, CoCoOpPromptLearner
from trainers.precision import Precision
from trainers.steps import coop_gradients, prograd_gradients

N_CTX = 4
INIT_WORDS = "a photo of a"  # vit_b16_c4_ep10_batch1_ctxv1, CoCoOp's base-to-new config
TEMPLATE = "a photo of a {}."
DEFAULT_POINTS = ("10x1", "100x1", "1000x1", "100x2", "100x4", "100x16", "100x32", "1000x4")


class StraightforwardCoCoOp(StraightforwardCoOp):
    """The CoOp repository's CoCoOp CustomCLIP (trainers/cocoop.py), with our CoCoOp prompt
    learner, whose forward builds the same (B, C, 77, D_t) prompts; the parts are CoOp's."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, C) logits, one text-encoder call per image."""
        logit_scale = self.logit_scale.exp()
        image_features = self.image_encoder(image.type(self.dtype))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        prompts = self.prompt_learner(image_features)
        logits = []
        for prompts_i, image_features_i in zip(prompts, image_features, strict=True):
            text_features = self.text_encoder(prompts_i, self.tokenized_prompts)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            logits.append(logit_scale * image_features_i @ text_features.t())
        return torch.stack(logits)


def straightforward_step(model, optimizer, precision, image, label) -> None:
    """CoCoOp's forward_backward: loss, zero_grad, backward, step (GradScaler under amp)."""
    with precision.autocast():
        loss = F.cross_entropy(model(image), label)
    optimizer.zero_grad()
    if precision.scaler is None:
        loss.backward()
        optimizer.step()
    else:
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()


def our_step(model, optimizer, precision, image, label) -> None:
    """What our CoCoOp trainer does per batch: coop_gradients, then Precision.step."""
    params = list(model.prompt_learner.parameters())
    result = coop_gradients(model, image, label, precision, params)
    precision.step(optimizer, params, result.gradients)


def our_prograd_step(model, optimizer, precision, image, label) -> None:
    """What our ProGradCoCoOp trainer does per batch (λ = 1, T = 1, per tensor)."""
    params = list(model.prompt_learner.parameters())
    result = prograd_gradients(model, image, label, precision, params, 1.0, 1.0)
    precision.step(optimizer, params, result.gradients)


def build_steps(
    clip_model: CLIP,
    names: list[str],
    teacher: torch.Tensor,
    methods: list[str],
    spec: dict,
    device: torch.device,
) -> tuple[CoCoOpPromptLearner, dict[str, Callable[[torch.Tensor, torch.Tensor], None]]]:
    """Each method's own prompt learner (same initial values), model, SGD and precision."""
    learners = {}
    for method in methods:
        torch.manual_seed(0)
        with contextlib.redirect_stdout(io.StringIO()):  # the learner prints its context
            learners[method] = CoCoOpPromptLearner(clip_model, names, N_CTX, INIT_WORDS).to(device)
    models = {
        "straightforward": lambda learner: StraightforwardCoCoOp(clip_model, learner),
        "ours": lambda learner: CoCoOpCLIP(clip_model, learner),
        "prograd": lambda learner: CoCoOpCLIP(clip_model, learner, teacher),
    }
    functions = {
        "straightforward": straightforward_step,
        "ours": our_step,
        "prograd": our_prograd_step,
    }
    steps = {}
    for method in methods:
        model = models[method](learners[method]).to(device)
        optimizer = torch.optim.SGD(learners[method].parameters(), **SGD)
        precision = Precision(spec["precision"], device)
        steps[method] = functools.partial(functions[method], model, optimizer, precision)
    return learners[methods[0]], steps


def extrapolate_prompts(points: list[tuple[int, float]], prompts: int) -> float | None:
    """Linear in the number of prompts per step through the two largest measured points."""
    if len(points) < 2:
        return None
    (p0, v0), (p1, v1) = sorted(points)[-2:]
    if p1 == p0:
        return None
    return v1 + (v1 - v0) / (p1 - p0) * (prompts - p1)


def run_worker(spec: dict) -> dict:
    """One backbone, every point, in this process."""
    device = torch.device(spec["device"])
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    precision = Precision(spec["precision"], device)
    clip_model = build_clip(spec["backbone"], precision, device)
    if device.type == "cpu":
        cap_address_space()
    resolution = clip_model.visual.input_resolution
    points = spec["points"]
    all_names = synthetic_classnames(max(classes for classes, _ in points))
    teacher_all = zero_shot_text_features(clip_model, all_names, TEMPLATE, device)
    generator = torch.Generator().manual_seed(1)
    rounds = spec["warmup"] + spec["repeats"]
    history: dict[str, dict[str, list[tuple[int, float]]]] = {
        m: {"seconds": [], "bytes": []} for m in spec["methods"]
    }
    results = []
    for classes, batch in points:
        prompts = classes * batch
        images = [
            torch.randn(batch, 3, resolution, resolution, generator=generator).to(device)
            for _ in range(rounds)
        ]
        labels = [torch.randint(classes, (batch,), generator=generator).to(device) for _ in images]
        skipped, estimated = {}, {}
        for method in spec["methods"]:
            need = extrapolate_prompts(history[method]["bytes"], prompts)
            too_many = method == "straightforward" and prompts > spec["straightforward_max_prompts"]
            if too_many or (need is not None and need > 0.8 * available_memory(device)):
                skipped[method] = (
                    f"not run: {prompts} prompts per step > --straightforward-max-prompts"
                    if too_many
                    else f"not run: needs ~{need / 2**30:.0f} GiB (extrapolated)"
                )
                seconds = extrapolate_prompts(history[method]["seconds"], prompts)
                estimated[method] = {
                    "ms": 1000 * seconds if seconds is not None else None,
                    "mib": need / 2**20 if need is not None else None,
                }
        active = [m for m in spec["methods"] if m not in skipped]
        learner, steps = None, {}
        if active:
            learner, steps = build_steps(
                clip_model, all_names[:classes], teacher_all[:classes], active, spec, device
            )
        wall: dict[str, list[float]] = {m: [] for m in active}
        cpu: dict[str, list[float]] = {m: [] for m in active}
        peak: dict[str, float | None] = {}
        for index in range(rounds):
            for method in active[index % len(active) :] + active[: index % len(active)]:
                step = functools.partial(steps[method], images[index], labels[index])
                synchronize(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                try:
                    if index == 0:
                        peak[method] = step_peak_memory(step, device)
                    else:
                        step()
                except (RuntimeError, MemoryError) as error:
                    if not is_out_of_memory(error):
                        raise
                    skipped[method] = "out of memory (an allocation failed)"
                    active.remove(method)
                    continue
                synchronize(device)
                if index >= spec["warmup"]:
                    wall[method].append(time.perf_counter() - start)
                    cpu[method].append(time.process_time() - start_cpu)
        for method in active:
            history[method]["seconds"].append((prompts, statistics.median(wall[method])))
            if peak.get(method) is not None:
                history[method]["bytes"].append((prompts, peak[method]))
        shared = 1 + N_CTX
        own = None
        if learner is not None:
            own = float((eot_positions(learner.tokenized_prompts) - shared + 1).float().mean())
        results.append(
            {
                "backbone": spec["backbone"],
                "classes": classes,
                "batch": batch,
                "precision": spec["precision"],
                "device": spec["device"],
                "shared_positions": shared,
                "own_positions_mean": own,
                "warmup": spec["warmup"],
                "repeats": spec["repeats"],
                "seconds": wall,
                "cpu_seconds": cpu,
                "median_ms": {m: 1000 * statistics.median(wall[m]) for m in active},
                "median_cpu_ms": {m: 1000 * statistics.median(cpu[m]) for m in active},
                "peak_mib": {m: peak[m] / 2**20 for m in active if peak.get(m) is not None},
                "estimated": estimated,
                "skipped": skipped,
                "memory_method": CPU_MEMORY_METHOD if device.type == "cpu" else CUDA_MEMORY_METHOD,
            }
        )
        del steps, learner
    return {"results": results, "threads": torch.get_num_threads()}


def value(result: dict, method: str, key: str) -> tuple[float | None, bool]:
    """(figure, estimated?) of a method at a point: measured, else extrapolated."""
    measured = result["median_ms" if key == "ms" else "peak_mib"].get(method)
    if measured is not None:
        return measured, False
    estimate = result["estimated"].get(method, {}).get(key)
    return estimate, estimate is not None


def table(results: list[dict], methods: list[str]) -> str:
    rows = []
    for r in results:
        ms = {m: value(r, m, "ms") for m in methods}
        mib = {m: value(r, m, "mib") for m in methods}
        (base_ms, base_est), (ours_ms, _) = ms["straightforward"], ms["ours"]
        (base_mib, base_mest), (ours_mib, _) = mib["straightforward"], mib["ours"]
        own = f"{r['shared_positions']}+{r['own_positions_mean']:.1f}"
        cpu = r["median_cpu_ms"]
        row = [
            r["backbone"], r["classes"], r["batch"], f"{r['device']} {r['precision']}", own,
            r["warmup"], r["repeats"], fmt(base_ms, 0, base_est), fmt(ours_ms, 0),
        ]  # fmt: skip
        if "prograd" in methods:
            row.append(fmt(ms["prograd"][0], 0))
        row += [
            fmt(ratio(ours_ms, base_ms), 3, base_est),
            fmt(ratio(cpu.get("ours"), cpu.get("straightforward")), 3),
            fmt(base_mib, 0, base_mest),
            fmt(ours_mib, 0),
            fmt(ratio(ours_mib, base_mib), 3, base_mest),
        ]
        rows.append(row)
    headers = [
        "backbone", "classes", "batch", "precision", "P+S", "w", "n",
        "straightfwd\nCoCoOp ms", "our CoCoOp\nms",
        *(["our ProGrad\nCoCoOp ms"] if "prograd" in methods else []),
        "ours /\nstraightfwd", "(CPU\ntime)", "straightfwd\npeak MiB", "ours\npeak MiB",
        "ours / strfwd\npeak memory",
    ]  # fmt: skip
    return tabulate(rows, headers, disable_numparse=True, stralign="right")


def batch_that_fits(results: list[dict]) -> list[str]:
    """Per class count: the largest batch of our step within the straightforward batch-1 peak."""
    lines = []
    for classes in sorted({r["classes"] for r in results}):
        here = sorted((r for r in results if r["classes"] == classes), key=lambda r: r["batch"])
        single = next((r for r in here if r["batch"] == 1), None)
        if single is None:
            continue
        budget, estimated = value(single, "straightforward", "mib")
        ours = [(r["batch"], value(r, "ours", "mib")[0]) for r in here]
        ours = [(b, m) for b, m in ours if m is not None]
        if budget is None or not ours:
            continue
        measured = [b for b, m in ours if m <= budget]
        # Our peak is affine in the batch: the largest batch under the budget, from the fit.
        fitted = None
        if len(ours) >= 2:
            (b0, m0), (b1, m1) = ours[0], ours[-1]
            slope = (m1 - m0) / (b1 - b0)
            if slope > 0:
                fitted = int(b1 + (budget - m1) / slope)
        lines.append(
            f"{classes} classes: the straightforward step needs {budget:.0f} MiB at batch 1"
            f"{' (est.)' if estimated else ''}; our step measured within it up to batch "
            f"{max(measured) if measured else 'none'}"
            + (f", and fits about batch {fitted} by its linear fit in the batch" if fitted else "")
        )
    return lines


def parse_point(text: str) -> tuple[int, int]:
    try:
        classes, batch = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not CLASSESxBATCH, e.g. 100x1 (100 classes, batch 1)"
        ) from None
    if classes < 1 or batch < 1:
        raise argparse.ArgumentTypeError(f"'{text}': classes and batch must be >= 1")
    return classes, batch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["ViT-B/16"], choices=BACKBONES)
    parser.add_argument(
        "--points", nargs="+", type=parse_point, default=None,
        help=f"CLASSESxBATCH points (default: {' '.join(DEFAULT_POINTS)})",
    )  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "fp16", "amp"), default="fp32")
    parser.add_argument("--warmup", type=positive_int, default=1, help="untimed steps (>= 1)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed steps per method")
    parser.add_argument(
        "--straightforward-max-prompts", type=non_negative_int, default=200,
        help="run the straightforward step only up to this many image x class prompts per step",
    )  # fmt: skip
    parser.add_argument("--prograd", action="store_true", help="also time our ProGradCoCoOp step")
    parser.add_argument(
        "--threads", type=non_negative_int, default=0,
        help="torch CPU threads (default: torch's choice); 1 is steadier on a machine shared "
        "with other work, where threads wait for each other at every operation",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: 10x1 and 10x2, 1 step")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.repeats < 1:
        parser.error("--warmup and --repeats must be >= 1 (the first step measures memory)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was given but torch.cuda.is_available() is False")
    if args.quick:
        args.points, args.warmup, args.repeats = [(10, 1), (10, 2)], 1, 1
    # Smaller points first: the larger ones are skipped or extrapolated from them.
    args.points = sorted(args.points or [parse_point(p) for p in DEFAULT_POINTS], key=lambda p: p)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        args.worker_out.write_text(json.dumps(run_worker(json.loads(args.worker))))
        return
    started = time.perf_counter()
    info = machine()
    methods = ["straightforward", "ours"] + (["prograd"] if args.prograd else [])
    results: list[dict] = []
    for backbone in args.backbones:
        spec = {
            "device": args.device,
            "backbone": backbone,
            "precision": args.precision,
            "points": sorted(args.points, key=lambda p: (p[0] * p[1], p)),
            "methods": methods,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "straightforward_max_prompts": args.straightforward_max_prompts,
            "threads": args.threads,
        }
        print(f"{args.device} {backbone} {args.precision}", flush=True)
        out = run_in_subprocess(spec, __file__)
        info["torch_threads"] = out["threads"]
        results.extend(out["results"])
    info["load_average_at_end"] = os.getloadavg()
    info["wall_seconds"] = time.perf_counter() - started
    print(
        f"\nMachine: {info['cpu']} ({info['cpu_count']} cores, {info['torch_threads']} torch "
        f"threads), torch {info['torch']}"
    )
    print(
        "P+S: text positions our encoder computes per image: P shared by its classes once + S "
        "per class on average (straightforward: 77 per image x class). w, n: untimed and timed "
        "steps per method; ms are medians of wall time; (CPU time): the ratio of the medians of "
        "the process's CPU time. (est.): not run, extrapolated linearly in image x class prompts."
    )
    print(f"Peak memory: {results[0]['memory_method']}.")
    for r in results:
        for method, reason in r["skipped"].items():
            where = f"{r['backbone']}, {r['classes']} classes, batch {r['batch']}"
            print(f"{where}, {method}: {reason}")
    print(table(results, methods))
    for backbone in args.backbones:
        for line in batch_that_fits([r for r in results if r["backbone"] == backbone]):
            print(f"{backbone}, {line}")
    finish(info, results, args.json)


if __name__ == "__main__":
    main()
