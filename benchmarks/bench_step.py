"""Time and size one training step of CoOp and ProGrad (and of KgCoOp and CoOp + KD) on real
CLIP shapes (issue #5).

For each backbone (RN50, ViT-B/16 with their real hyper-parameters and random weights, so nothing
is downloaded; open_clip:ViT-B-16, open_clip's ViT-B-16 config: GELU blocks, as the LAION-2B and
DataComp weights, built by open_clip), class count and precision, this script times three steps
on the same batches:

    straightforward CoOp  CoOp's original code path (`StraightforwardCoOp` below): the text
                          encoder over all 77 positions with its 77x77 mask, the image encoder
                          called with autograd enabled, F.cross_entropy, loss.backward(),
                          optimizer.step().
    our CoOp              trainers.steps.coop_gradients + Precision.step.
    our ProGrad           trainers.steps.prograd_gradients + Precision.step.
    our KgCoOp            trainers.baseline_steps.kgcoop_gradients (W = 8) + Precision.step.
    our KD                trainers.baseline_steps.distillation_gradients (α = 0.5, T = 1)
                          + Precision.step (the KD trainer, trainers/kd.py).

`--methods` picks which (default: all five); KgCoOp and KD get their own table beside CoOp.

Our CoOp and ProGrad read the image features through trainers.frozen_image.FrozenImageEncoder
(`--image-encoder frozen`, the default) or through CLIP's own `visual` module under no_grad
(`--image-encoder clip`, what CustomCLIP does before the encoder is plugged in);
`--compare-image-encoders` times the two image paths alone.

Timing: one fresh subprocess per device / backbone / precision builds CLIP once and runs the class
counts in increasing order. The methods run interleaved (one step of each in turn, each round
starting with the next method, so that load from other processes hits them alike): `--warmup`
untimed steps each, then the median (and the minimum) of `--repeats` timed steps. At 1000 classes
on CPU a step takes a minute or more, so by default there is no warm-up there (the process is
warm from the smaller counts) and one timed step (`--warmup-1000`, `--repeats-1000`).
Peak memory: on each method's first step at each class count (the profiled step costs a few per
cent more), what the step holds above what was live before it. On CUDA from
torch.cuda.max_memory_allocated; on CPU, where torch keeps no allocator statistics, from the
allocations and frees the torch profiler records (profile_memory=True).
A method whose step would not fit in the memory available (extrapolated linearly in the class
count from the smaller counts) is skipped, and its time is extrapolated the same way and marked.

Run from the repository root:
    python benchmarks/bench_step.py                   # the default run (~15 min on 2 CPU cores)
    python benchmarks/bench_step.py --quick           # smoke run, about a minute
    python benchmarks/bench_step.py --backbones RN50 --classes 10 100 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _root  # noqa: F401  (the repository root on sys.path)
import torch
import torch.nn.functional as F
from clip.model import CLIP, convert_weights
from tabulate import tabulate
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from experiments.cli import positive_int
from trainers.backbone import image_tower
from trainers.baseline_steps import distillation_gradients, kgcoop_gradients
from trainers.clip_prompt import (
    CustomCLIP,
    PromptLearner,
    ReferenceTextEncoder,
    count_tokens,
    eot_positions,
    zero_shot_text_features,
)
from trainers.frozen_image import FrozenImageEncoder
from trainers.precision import Precision
from trainers.steps import coop_gradients, prograd_gradients

# The hyper-parameters OpenAI's build_model infers from the real checkpoints.
BACKBONES: dict[str, dict] = {
    "RN50": {
        "embed_dim": 1024,
        "image_resolution": 224,
        "vision_layers": (3, 4, 6, 3),
        "vision_width": 64,
        "vision_patch_size": None,
    },
    "ViT-B/16": {
        "embed_dim": 512,
        "image_resolution": 224,
        "vision_layers": 12,
        "vision_width": 768,
        "vision_patch_size": 16,
    },
}
# open_clip shapes: "open_clip:ARCH" -> open_clip's model config ARCH, random weights.
OPEN_CLIP_BACKBONES = {"open_clip:ViT-B-16": "ViT-B-16"}
BACKBONES.update({name: {} for name in OPEN_CLIP_BACKBONES})
TEXT_TRANSFORMER = {
    "context_length": 77,
    "vocab_size": 49408,
    "transformer_width": 512,
    "transformer_heads": 8,
    "transformer_layers": 12,
}
METHODS = ("straightforward", "coop", "prograd", "kgcoop", "kd")
KGCOOP_WEIGHT = 8.0  # the official scripts' W
KD_ALPHA = 0.5  # LOSS.ALPHA's default
MAIN_TABLE_METHODS = ("straightforward", "coop", "prograd")  # the issue #5 table
N_CTX = 16
INIT_WORDS = "a photo of a"  # CTX_INIT=True with the template below (the official configs)
TEMPLATE = "a photo of a {}."
LAMBDA, TEMPERATURE = 1.0, 1.0
# CoOp's optimizer (configs/trainers/*/rn50.yaml): SGD, lr 0.002, momentum 0.9, wd 5e-4.
SGD = {"lr": 0.002, "momentum": 0.9, "weight_decay": 5e-4}

# Class names of realistic BPE lengths: words that are one token each, joined into names of k
# tokens, k drawn with weights close to ImageNet's class names (mostly 1-3 tokens, a few of 6-8;
# the longest name sets how many positions the text encoder runs over).
WORDS = (
    "dog cat bird fish horse cow sheep goat lion tiger bear wolf fox deer duck goose eagle owl "
    "shark whale snake frog bee ant car truck bus train boat ship plane bike house tower bridge "
    "church castle road river lake sea beach hill mountain forest tree flower rose leaf grass "
    "apple orange lemon bread cake pizza coffee tea wine cup bottle glass plate bowl knife chair "
    "table bed door window lamp clock phone book paper pen bag hat shoe shirt coat dress ring "
    "red blue green black white brown yellow small large old new long short little great wild "
    "sea mountain water snow ice fire stone wood iron gold silver steel north south east west"
).split()
NAME_LENGTH_WEIGHTS = {1: 30, 2: 30, 3: 18, 4: 10, 5: 6, 6: 3, 7: 2, 8: 1}


def synthetic_classnames(count: int, seed: int = 0) -> list[str]:
    """`count` distinct class names; the first k of `synthetic_classnames(n)` are those of k."""
    words = sorted({word for word in WORDS if count_tokens(word) == 1})
    rng = random.Random(seed)
    lengths, weights = zip(*NAME_LENGTH_WEIGHTS.items(), strict=True)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        length = rng.choices(lengths, weights)[0]
        name = " ".join(rng.choice(words) for _ in range(length))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def build_clip(backbone: str, precision: Precision, device: torch.device) -> CLIP:
    """CLIP with the real shapes of `backbone` and random weights, as the trainers hold it.

    OpenAI's weights are fp16 (convert_weights); fp32 and amp keep them in fp32 (.float()).
    """
    torch.manual_seed(0)
    if backbone in OPEN_CLIP_BACKBONES:
        import open_clip

        model = open_clip.CLIP(**open_clip.get_model_config(OPEN_CLIP_BACKBONES[backbone]))
        precision.cast_weights(model)  # fp32 under fp32/amp, fp16 whole under fp16
        return model.to(device).eval().requires_grad_(False)
    model = CLIP(**BACKBONES[backbone], **TEXT_TRANSFORMER)
    convert_weights(model)
    if precision.weights_fp32:
        model.float()
    return model.to(device).eval().requires_grad_(False)


class StraightforwardCoOp(nn.Module):
    """CoOp's original CustomCLIP (the baseline): image encoder with autograd enabled, text
    encoder over 77 positions, cosine logits; our PromptLearner supplies the prompts."""

    def __init__(self, clip_model: CLIP, prompt_learner: PromptLearner):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.tokenized_prompts = prompt_learner.tokenized_prompts
        self.image_encoder = clip_model.visual
        self.text_encoder = ReferenceTextEncoder(clip_model)  # CoOp's TextEncoder
        self.logit_scale = clip_model.logit_scale
        self.dtype = image_tower(clip_model).dtype

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, C) logits."""
        image_features = self.image_encoder(image.type(self.dtype))
        text_features = self.text_encoder(self.prompt_learner(), self.tokenized_prompts)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()


class ClipVisualNoGrad(nn.Module):
    """CustomCLIP's image path before FrozenImageEncoder: CLIP's `visual` under no_grad."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, D) features, without an autograd graph."""
        with torch.no_grad():
            return self.visual(image.type(self.visual.conv1.weight.dtype))


def straightforward_coop_step(
    model: StraightforwardCoOp,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    precision: Precision,
    image: torch.Tensor,
    label: torch.Tensor,
) -> None:
    """CoOp's forward_backward: cross-entropy, backward, step (through a GradScaler under amp)."""
    optimizer.zero_grad()
    with precision.autocast():
        loss = F.cross_entropy(model(image), label)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def our_coop_step(
    model: CustomCLIP,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    image: torch.Tensor,
    label: torch.Tensor,
) -> None:
    """What the CoOp trainer does per batch: coop_gradients, then Precision.step."""
    params = [model.prompt_learner.ctx]
    result = coop_gradients(model, image, label, precision, params)
    precision.step(optimizer, params, result.gradients)


def our_prograd_step(
    model: CustomCLIP,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    image: torch.Tensor,
    label: torch.Tensor,
) -> None:
    """What the ProGrad trainer does per batch: prograd_gradients, then Precision.step."""
    params = [model.prompt_learner.ctx]
    result = prograd_gradients(
        model, image, label, precision, params, lambda_=LAMBDA, temperature=TEMPERATURE
    )
    precision.step(optimizer, params, result.gradients)


def our_baseline_step(
    gradients: Callable[..., object],
    model: CustomCLIP,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    image: torch.Tensor,
    label: torch.Tensor,
    **loss_args: float,
) -> None:
    """What the KgCoOp trainer (kgcoop_gradients) or the KD trainer
    (distillation_gradients) does per batch: the method's gradients, then Precision.step."""
    params = [model.prompt_learner.ctx]
    result = gradients(model, image, label, precision, params, **loss_args)
    precision.step(optimizer, params, result.gradients)


CPU_MEMORY_METHOD = (
    "torch profiler (profile_memory=True): peak of the CPU tensor bytes allocated during the "
    "step minus those freed, i.e. above what was live before it (as torch.cuda.max_memory_allocated"
    "; malloc overhead and oneDNN/MKL scratch are not counted), on each method's first step"
)
CUDA_MEMORY_METHOD = (
    "torch.cuda.max_memory_allocated minus torch.cuda.memory_allocated before the step, on each "
    "method's first step"
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_peak_memory(step: Callable[[], None], device: torch.device) -> float | None:
    """Run `step` once; the peak memory (bytes) it held above what was live before it.

    On CPU torch keeps no allocator statistics, so the step runs under the profiler, which
    records every tensor allocation and free; their running sum peaks at the step's peak.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - before)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    try:
        events = profiler.profiler.kineto_results.events()
    except AttributeError:  # the raw event list is not public API; say so rather than guess
        return None
    changes = sorted(
        (event.start_ns(), event.nbytes())
        for event in events
        if event.name() == "[memory]" and event.device_type() == DeviceType.CPU
    )
    live = peak = 0
    for _, nbytes in changes:
        live += nbytes
        peak = max(peak, live)
    return float(peak)


def available_memory(device: torch.device) -> float:
    """Bytes a step could still allocate: MemAvailable on CPU, free device memory on CUDA."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return float(line.split()[1]) * 1024
    return float("inf")


def cap_address_space() -> None:
    """Make allocations past the memory available fail instead of waking the OOM killer (Linux).

    A step whose size the worker could not extrapolate then raises "can't allocate memory",
    which the worker reports as a skip, rather than the kernel killing this or another process.
    """
    try:
        import resource

        status = Path("/proc/self/status").read_text()
    except (ImportError, OSError):
        return
    size = next(int(line.split()[1]) * 1024 for line in status.splitlines() if "VmSize" in line)
    limit = int(size + 0.9 * available_memory(torch.device("cpu")))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or limit < hard:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or "can't allocate memory" in str(error)


def text_positions(learner: PromptLearner) -> dict:
    """How many positions our TextEncoder computes: P shared once, then each class's own."""
    shared = learner.split()[0].shape[0]
    eot = eot_positions(learner.tokenized_prompts)
    return {
        "shared_positions": shared,
        "own_positions_mean": float((eot - shared + 1).float().mean()),
        "longest_prompt": int(eot.max()) + 1,
    }


def extrapolate(points: list[tuple[int, float]], n_classes: int) -> float | None:
    """Linear in the class count through the last two (classes, value) points; None without two.

    Step time and step memory are affine in the class count: the image side is fixed, the text
    side grows with the number of prompts.
    """
    if len(points) < 2:
        return None
    (c0, v0), (c1, v1) = points[-2], points[-1]
    return v1 + (v1 - v0) / (c1 - c0) * (n_classes - c1)


def build_methods(
    clip_model: CLIP, names: list[str], teacher: torch.Tensor, spec: dict, device: torch.device
) -> tuple[dict[str, PromptLearner], dict[str, Callable[[torch.Tensor, torch.Tensor], None]]]:
    """Each method's own prompt (same initial context), model, optimizer and precision policy.

    Returns:
        the prompt learners and the step functions (image, label) -> None, by method name, of
        the methods in spec["methods"] (CoOp's prompt learner always: the P+S column reads it).
    """
    methods = [m for m in METHODS if m in spec["methods"] or m == "coop"]
    with contextlib.redirect_stdout(io.StringIO()):  # PromptLearner prints its context
        learners = {
            method: PromptLearner(clip_model, names, n_ctx=N_CTX, init_words=INIT_WORDS).to(device)
            for method in methods
        }
    optimizers = {m: torch.optim.SGD(learners[m].parameters(), **SGD) for m in methods}
    precisions = {m: Precision(spec["precision"], device) for m in methods}
    ours = {
        "coop": our_coop_step,
        "prograd": our_prograd_step,
        "kgcoop": functools.partial(our_baseline_step, kgcoop_gradients, weight=KGCOOP_WEIGHT),
        "kd": functools.partial(
            our_baseline_step, distillation_gradients, alpha=KD_ALPHA, temperature=TEMPERATURE
        ),
    }
    steps = {}
    for method in methods:
        if method == "straightforward":
            straightforward = StraightforwardCoOp(clip_model, learners[method]).to(device)
            steps[method] = functools.partial(
                straightforward_coop_step, straightforward, optimizers[method],
                precisions[method].scaler, precisions[method],
            )  # fmt: skip
            continue
        model = CustomCLIP(clip_model, learners[method], None if method == "coop" else teacher)
        model = model.to(device)
        if spec["image_encoder"] == "frozen":
            model.image_encoder = FrozenImageEncoder(clip_model.visual)
        else:
            model.image_encoder = ClipVisualNoGrad(clip_model.visual)
        steps[method] = functools.partial(
            ours[method], model, optimizers[method], precisions[method]
        )
    return learners, {m: step for m, step in steps.items() if m in spec["methods"]}


def run_worker(spec: dict) -> dict:
    """Build one backbone in one precision and time every class count (in this process).

    A method whose step would not fit in memory (extrapolated from the smaller class counts) is
    skipped; its time is then extrapolated too, and marked as such.
    """
    device = torch.device(spec["device"])
    precision = Precision(spec["precision"], device)
    clip_model = build_clip(spec["backbone"], precision, device)
    if device.type == "cpu":
        cap_address_space()
    resolution = image_tower(clip_model).resolution
    classes = sorted(spec["classes"])
    all_names = synthetic_classnames(classes[-1])
    # The class lists are nested, so the teacher of the largest count serves every count.
    teacher_all = zero_shot_text_features(clip_model, all_names, TEMPLATE, device)
    generator = torch.Generator().manual_seed(1)
    rounds = max(spec["warmup"][str(c)] + spec["repeats"][str(c)] for c in classes)
    images = [
        torch.randn(spec["batch"], 3, resolution, resolution, generator=generator).to(device)
        for _ in range(rounds)
    ]
    history: dict[str, dict[str, list[tuple[int, float]]]] = {
        m: {"seconds": [], "bytes": []} for m in METHODS
    }
    results = []
    for n_classes in classes:
        warmup, repeats = spec["warmup"][str(n_classes)], spec["repeats"][str(n_classes)]
        labels = [
            torch.randint(n_classes, (spec["batch"],), generator=generator).to(device)
            for _ in images
        ]
        learners, steps = build_methods(
            clip_model, all_names[:n_classes], teacher_all[:n_classes], spec, device
        )
        skipped, estimated_ms = {}, {}
        for method in spec["methods"]:
            need = extrapolate(history[method]["bytes"], n_classes)
            free = available_memory(device)
            if need is not None and need > 0.8 * free:
                skipped[method] = (
                    f"skipped: its step needs ~{need / 2**30:.0f} GiB (extrapolated), "
                    f"{free / 2**30:.0f} GiB available"
                )
                # Only a growing trend is extrapolated: a shrinking one is noise (a loaded machine).
                seconds = extrapolate(history[method]["seconds"], n_classes)
                last = history[method]["seconds"][-1][1] if history[method]["seconds"] else None
                if seconds is not None and last is not None and seconds > last:
                    estimated_ms[method] = 1000 * seconds
        active = [m for m in spec["methods"] if m not in skipped]
        seconds_taken: dict[str, list[float]] = {m: [] for m in active}
        # CPU time of all the process's threads: unlike wall time, hardly moved by other
        # processes on a shared machine (the ratio column "(CPU time)").
        cpu_seconds: dict[str, list[float]] = {m: [] for m in active}
        peak_bytes: dict[str, float | None] = {}
        for index in range(warmup + repeats):
            # Each round starts with the next method, so no method always follows the same one
            # (the heap a step finds depends on the step before it).
            for method in active[index % len(active) :] + active[: index % len(active)]:
                step = functools.partial(steps[method], images[index], labels[index])
                synchronize(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                try:
                    if index == 0:  # a warm-up step (warmup >= 1) that measures memory
                        peak_bytes[method] = step_peak_memory(step, device)
                    else:
                        step()
                except (RuntimeError, MemoryError) as error:
                    if not is_out_of_memory(error):
                        raise
                    skipped[method] = "skipped: out of memory (an allocation failed)"
                    active.remove(method)
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                synchronize(device)
                if index >= warmup:
                    seconds_taken[method].append(time.perf_counter() - start)
                    cpu_seconds[method].append(time.process_time() - start_cpu)
        for method in active:
            history[method]["seconds"].append((n_classes, statistics.median(seconds_taken[method])))
            if peak_bytes[method] is not None:
                history[method]["bytes"].append((n_classes, peak_bytes[method]))
        results.append(
            {
                "backbone": spec["backbone"],
                "classes": n_classes,
                "precision": spec["precision"],
                "device": spec["device"],
                "batch": spec["batch"],
                "image_encoder": spec["image_encoder"],
                **text_positions(learners["coop"]),
                "warmup": warmup,
                "repeats": repeats,
                "seconds": seconds_taken,
                "cpu_seconds": cpu_seconds,
                "median_ms": {
                    m: 1000 * statistics.median(seconds_taken[m]) if m in active else None
                    for m in METHODS
                },
                "min_ms": {
                    m: 1000 * min(seconds_taken[m]) if m in active else None for m in METHODS
                },
                "median_cpu_ms": {
                    m: 1000 * statistics.median(cpu_seconds[m]) if m in active else None
                    for m in METHODS
                },
                "estimated_ms": estimated_ms,
                "skipped": skipped,
                "peak_mib": {
                    m: peak_bytes[m] / 2**20 if peak_bytes.get(m) is not None else None
                    for m in METHODS
                },
                "memory_method": CPU_MEMORY_METHOD if device.type == "cpu" else CUDA_MEMORY_METHOD,
            }
        )
        del learners, steps
    return {"results": results, "threads": torch.get_num_threads()}


def run_image_worker(spec: dict) -> dict:
    """Time the image encoder alone: CLIP's visual under no_grad vs FrozenImageEncoder."""
    device = torch.device(spec["device"])
    precision = Precision(spec["precision"], device)
    clip_model = build_clip(spec["backbone"], precision, device)
    tower = image_tower(clip_model)
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(spec["batch"], 3, tower.resolution, tower.resolution, generator=generator)
    image = image.to(device).type(tower.dtype)
    frozen = FrozenImageEncoder(clip_model.visual)

    def clip_visual() -> torch.Tensor:
        with torch.no_grad():
            return clip_model.visual(image)

    encoders = {"clip_visual": clip_visual, "frozen": lambda: frozen(image)}
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    outputs = {}
    for index in range(spec["warmup"] + spec["repeats"]):
        for name, encoder in encoders.items():
            synchronize(device)
            start = time.perf_counter()
            with precision.autocast():
                outputs[name] = encoder()
            synchronize(device)
            if index >= spec["warmup"]:
                seconds[name].append(time.perf_counter() - start)
    reference = outputs["clip_visual"].float()
    difference = (outputs["frozen"].float() - reference).abs().max() / reference.abs().max()
    median_ms = {name: 1000 * statistics.median(times) for name, times in seconds.items()}
    return {
        "backbone": spec["backbone"],
        "device": spec["device"],
        "precision": spec["precision"],
        "batch": spec["batch"],
        "repeats": spec["repeats"],
        "seconds": seconds,
        "median_ms": median_ms,
        "speedup": median_ms["clip_visual"] / median_ms["frozen"],
        "max_difference_relative_to_feature_scale": difference.item(),
    }


def machine() -> dict:
    """The machine the figures come from."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def run_in_subprocess(spec: dict, script: str = __file__) -> dict:
    """A worker of `script` (this benchmark, or another taking --worker/--worker-out) in a fresh
    interpreter: each measurement starts from a clean heap and cache."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, script, "--worker", json.dumps(spec), "--worker-out", str(out)]
        # Silence the profiler's start/stop chatter and c10's note on blocks allocated before it.
        env = {**os.environ, "KINETO_LOG_LEVEL": "5", "TORCH_CPP_LOG_LEVEL": "ERROR"}
        subprocess.run(command, check=True, env=env)
        return json.loads(out.read_text())


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def fmt(value: float | None, digits: int, estimated: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"~{value:.{digits}f} (est.)" if estimated else f"{value:.{digits}f}"


def table(results: list[dict]) -> str:
    """One row per backbone / classes / precision: median ms, ratios, peak MiB of each method.

    A method skipped for memory shows its extrapolated time, marked "(est.)", and no memory.
    """
    rows = []
    for r in results:
        ms = {m: r["median_ms"][m] or r["estimated_ms"].get(m) for m in MAIN_TABLE_METHODS}
        estimated = {m: m in r["skipped"] for m in MAIN_TABLE_METHODS}
        mib = r["peak_mib"]
        rows.append(
            [
                r["backbone"],
                r["classes"],
                f"{r['device']} {r['precision']}",
                f"{r['shared_positions']}+{r['own_positions_mean']:.1f}",
                r["warmup"],
                r["repeats"],
                *(fmt(ms[m], 0, estimated[m]) for m in MAIN_TABLE_METHODS),
                fmt(ratio(ms["prograd"], ms["coop"]), 2, estimated["prograd"] or estimated["coop"]),
                fmt(ratio(r["median_cpu_ms"]["prograd"], r["median_cpu_ms"]["coop"]), 2),
                fmt(
                    ratio(ms["prograd"], ms["straightforward"]),
                    2,
                    estimated["prograd"] or estimated["straightforward"],
                ),
                *(fmt(mib[m], 0) for m in MAIN_TABLE_METHODS),
                fmt(ratio(mib["prograd"], mib["coop"]), 2),
            ]
        )
    headers = [
        "backbone", "classes", "precision", "P+S", "w", "n",
        "straightfwd\nCoOp ms", "our CoOp\nms", "our ProGrad\nms",
        "ProGrad /\nCoOp", "(CPU\ntime)", "ProGrad /\nstraightfwd",
        "straightfwd\npeak MiB", "CoOp\npeak MiB", "ProGrad\npeak MiB", "ProGrad /\nCoOp mem",
    ]  # fmt: skip
    return tabulate(rows, headers, disable_numparse=True, stralign="right")


def tables(results: list[dict], methods: list[str]) -> str:
    """The issue #5 table where ProGrad or the straightforward step ran, and the KgCoOp / KD one
    where either of those ran."""
    parts = []
    if {"straightforward", "prograd"} & set(methods):
        parts.append(table(results))
    if {"kgcoop", "kd"} & set(methods):
        parts.append(baselines_table(results))
    return "\n\n".join(parts) or table(results)


def baselines_table(results: list[dict]) -> str:
    """KgCoOp and CoOp + KD next to our CoOp: median ms, ratios (wall and CPU time), peak MiB."""
    rows = []
    for r in results:
        ms, cpu_ms, mib = r["median_ms"], r["median_cpu_ms"], r["peak_mib"]
        rows.append(
            [
                r["backbone"], r["classes"], f"{r['device']} {r['precision']}", r["repeats"],
                *(fmt(ms[m], 0) for m in ("coop", "kgcoop", "kd")),
                fmt(ratio(ms["kgcoop"], ms["coop"]), 2),
                fmt(ratio(cpu_ms["kgcoop"], cpu_ms["coop"]), 2),
                fmt(ratio(ms["kd"], ms["coop"]), 2),
                fmt(ratio(cpu_ms["kd"], cpu_ms["coop"]), 2),
                *(fmt(mib[m], 0) for m in ("coop", "kgcoop", "kd")),
            ]
        )  # fmt: skip
    headers = [
        "backbone", "classes", "precision", "n", "our CoOp\nms", "our KgCoOp\nms", "our KD\nms",
        "KgCoOp /\nCoOp", "(CPU\ntime)", "KD /\nCoOp", "(CPU\ntime)", "CoOp\npeak MiB",
        "KgCoOp\npeak MiB", "KD\npeak MiB",
    ]  # fmt: skip
    return tabulate(rows, headers, disable_numparse=True, stralign="right")


def image_table(results: list[dict]) -> str:
    rows = [
        [
            r["backbone"],
            f"{r['device']} {r['precision']}",
            r["batch"],
            r["repeats"],
            fmt(r["median_ms"]["clip_visual"], 0),
            fmt(r["median_ms"]["frozen"], 0),
            fmt(r["speedup"], 2),
            f"{r['max_difference_relative_to_feature_scale']:.1e}",
        ]
        for r in results
    ]
    headers = [
        "backbone", "precision", "batch", "n", "clip visual\n(no_grad) ms",
        "FrozenImage\nEncoder ms", "speed-up", "max |diff| /\nfeature scale",
    ]  # fmt: skip
    return tabulate(rows, headers, disable_numparse=True, stralign="right")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--classes", nargs="+", type=positive_int, default=[10, 100, 1000])
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument(
        "--device", nargs="+", choices=("cpu", "cuda"), default=None,
        help="default: cpu, and cuda when torch.cuda.is_available()",
    )  # fmt: skip
    parser.add_argument(
        "--precisions", nargs="+", choices=("fp32", "fp16", "amp"), default=None,
        help="default: fp32 on cpu; fp16 and amp on cuda",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=positive_int, default=None,
        help="timed steps per method (default: 5 on cpu, 20 on cuda)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats-1000", type=positive_int, default=None,
        help="timed steps at >= 1000 classes (default: 3 on cpu, as --repeats on cuda)",
    )  # fmt: skip
    parser.add_argument(
        "--warmup", type=positive_int, default=None,
        help="untimed steps per method first, the first measuring memory (default: 1 on cpu, "
        "3 on cuda)",
    )  # fmt: skip
    parser.add_argument(
        "--warmup-1000", type=positive_int, default=None,
        help="untimed steps at >= 1000 classes (default: as --warmup)",
    )  # fmt: skip
    parser.add_argument(
        "--image-encoder", choices=("frozen", "clip"), default="frozen",
        help="image path of our CoOp/ProGrad: FrozenImageEncoder, or CLIP's visual under no_grad",
    )  # fmt: skip
    parser.add_argument(
        "--compare-image-encoders", action="store_true",
        help="time only the image encoder: CLIP's visual vs FrozenImageEncoder",
    )  # fmt: skip
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS),
        help="the steps to time (default: all); CoOp is the reference of every ratio",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 classes, batch 4")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.repeats or 1, args.repeats_1000 or 1) < 1:
        parser.error("--repeats and --repeats-1000 must be >= 1")
    if (
        min(
            1 if args.warmup is None else args.warmup,
            1 if args.warmup_1000 is None else args.warmup_1000,
        )
        < 1
    ):
        parser.error(
            "--warmup and --warmup-1000 must be >= 1: the first step of each method measures "
            "memory under the profiler and is never timed"
        )
    if min(args.classes) < 1 or args.batch < 1:
        parser.error("--classes and --batch must be >= 1")
    return args


def worker_specs(args: argparse.Namespace) -> list[dict]:
    """One subprocess per device / backbone / precision, timing every class count."""
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    classes, batch = (args.classes, args.batch) if not args.quick else ([10], 4)
    specs = []
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was given but torch.cuda.is_available() is False")
        on_cpu = device == "cpu"
        precisions = args.precisions or (["fp32"] if on_cpu else ["fp16", "amp"])
        warmup = args.warmup if args.warmup is not None else (1 if on_cpu else 3)
        repeats = args.repeats or (5 if on_cpu else 20)
        # 1000 classes on CPU: fewer timed steps (our steps take ~10 s there; the straightforward
        # one a minute or more where it fits).
        warmup_large = args.warmup_1000 if args.warmup_1000 is not None else warmup
        repeats_large = args.repeats_1000 or (3 if on_cpu and args.repeats is None else repeats)
        if args.quick:
            warmup, repeats, warmup_large, repeats_large = 1, 1, 1, 1
        for backbone in args.backbones:
            for precision in precisions:
                spec = {
                    "kind": "image" if args.compare_image_encoders else "steps",
                    "device": device,
                    "backbone": backbone,
                    "precision": precision,
                    "classes": classes,
                    "batch": batch,
                    "warmup": {str(c): warmup_large if c >= 1000 else warmup for c in classes},
                    "repeats": {str(c): repeats_large if c >= 1000 else repeats for c in classes},
                    "image_encoder": args.image_encoder,
                    "methods": sorted(set(args.methods) | {"coop"}, key=METHODS.index),
                }
                if args.compare_image_encoders:
                    spec["warmup"], spec["repeats"] = warmup, repeats
                specs.append(spec)
    return specs


def finish(info: dict, results: list[dict], json_path: Path | None) -> None:
    """The run's last lines: total time and load average; the figures as JSON when asked."""
    print(
        f"Total {info['wall_seconds']:.0f} s; load average (1, 5, 15 min) "
        f"{tuple(round(x, 2) for x in info['load_average_at_start'])} at start, "
        f"{tuple(round(x, 2) for x in info['load_average_at_end'])} at end"
    )
    if json_path:
        json_path.write_text(json.dumps({"machine": info, "results": results}, indent=2))
        print(f"Wrote {json_path}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.worker)
        out = run_image_worker(spec) if spec["kind"] == "image" else run_worker(spec)
        args.worker_out.write_text(json.dumps(out))
        return
    started = time.perf_counter()
    info = machine()
    results: list[dict] = []
    for spec in worker_specs(args):
        print(f"{spec['device']} {spec['backbone']} {spec['precision']}", flush=True)
        out = run_in_subprocess(spec)
        if spec["kind"] == "image":
            results.append(out)
            print(image_table([out]), flush=True)
        else:
            info["torch_threads"] = out["threads"]
            results.extend(out["results"])
            print(tables(out["results"], args.methods), flush=True)
    info["load_average_at_end"] = os.getloadavg()
    info["wall_seconds"] = time.perf_counter() - started
    cuda = f", {info['cuda_device']}" if "cuda_device" in info else ""
    print(
        f"\nMachine: {info['cpu']} ({info['cpu_count']} cores, {info['torch_threads']} torch "
        f"threads), torch {info['torch']}{cuda}"
    )
    if args.compare_image_encoders:
        print(image_table(results))
    else:
        print(
            f"Image encoder of our CoOp/ProGrad: {args.image_encoder}. P+S: text positions our "
            f"encoder computes, P shared by all classes once + S per class on average "
            f"(straightforward CoOp: 77 per class). w, n: untimed warm-up and timed steps "
            f"per method; ms are medians of wall time; (CPU time): the ratio of the medians of "
            f"the process's CPU time."
        )
        print(f"Peak memory: {results[0]['memory_method']}.")
        for result in results:
            for method, reason in result["skipped"].items():
                print(f"{result['backbone']}, {result['classes']} classes, {method}: {reason}")
        print(tables(results, args.methods))
    finish(info, results, args.json)


if __name__ == "__main__":
    main()
