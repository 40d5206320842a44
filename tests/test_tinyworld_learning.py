"""What the demo shows, measured on the shipped tiny CLIP and the TinyWorld dataset on disk:
CoOp learns the downstream domain, and ProGrad's projected update keeps the prompt's predictions
closer to zero-shot CLIP's than CoOp's update does, on the classes it trains on and on the new
ones it never sees.

The prompts are trained with the trainers' own step functions (trainers/steps.py) and the
optimizer and schedule of configs/trainers/*/tiny.yaml (SGD at 0.002, momentum 0.9, weight
decay 5e-4, cosine), on the images the dataset class reads: 4 shots of each base class, 10
epochs, as in the base-to-new protocol but shorter.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from datasets import tinyworld_world as world  # noqa: E402
from devkit.pretrain_tiny_clip import SHIPPED, normalise  # noqa: E402
from trainers.clip_prompt import (  # noqa: E402
    CustomCLIP,
    PromptLearner,
    load_clip,
    zero_shot_text_features,
)
from trainers.precision import Precision  # noqa: E402
from trainers.steps import coop_gradients, prograd_gradients  # noqa: E402

SHOTS = 4
EPOCHS = 10
LR = 0.002
BATCH = 32
BASE = world.CLASSNAMES[:32]  # DATASET.SUBSAMPLE_CLASSES base / new
NEW = world.CLASSNAMES[32:]
SEEDS = (1, 2, 3, 4, 5)  # initial contexts and batch orders; the medians over them are compared


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One CPU thread: the tiny model's tensors gain nothing from more, and on shared cores
    OpenMP's waiting threads make these loops several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def read_split(root: Path, split: str, classnames: list[str], per_class: int = 10**6):
    """(images (N, 3, 32, 32) normalised as CLIP's, labels into `classnames`) of a split,
    the first `per_class` images of each class."""
    folder = root / world.DATASET_FOLDER
    images, labels, taken = [], [], dict.fromkeys(classnames, 0)
    for relpath, _, classname in json.loads((folder / world.SPLIT_FILE).read_text())[split]:
        if classname not in taken or taken[classname] == per_class:
            continue
        taken[classname] += 1
        pixels = np.array(Image.open(folder / world.IMAGE_FOLDER / relpath).convert("RGB"))
        images.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
        labels.append(classnames.index(classname))
    return normalise(torch.stack(images)), torch.tensor(labels)


@pytest.fixture(scope="module")
def clip_model():
    return load_clip("", str(SHIPPED)).float().requires_grad_(False)


@pytest.fixture(scope="module")
def data(tinyworld_root, clip_model):
    """The 4-shot base training set, and the base and new test sets as image features."""
    test = {}
    for name, classnames in (("base", BASE), ("new", NEW)):
        images, labels = read_split(tinyworld_root, "test", classnames)
        with torch.no_grad():
            test[name] = (F.normalize(clip_model.encode_image(images), dim=-1), labels)
    return read_split(tinyworld_root, "train", BASE, per_class=SHOTS), test


def train_context(clip_model, train, method: str, init_words: str | None, seed: int):
    """The context (16, D_t) learned on the base classes with CoOp's or ProGrad's (λ=1) step."""
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # PromptLearner prints its context
        learner = PromptLearner(clip_model, BASE, n_ctx=16, init_words=init_words)
    teacher = zero_shot_text_features(clip_model, BASE, world.TEMPLATE)
    model = CustomCLIP(clip_model, learner, teacher)
    params = [learner.ctx]
    optimizer = torch.optim.SGD(params, lr=LR, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    precision = Precision("fp32", torch.device("cpu"))
    images, labels = train
    generator = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(labels), generator=generator).split(BATCH):
            if method == "ProGrad":
                step = prograd_gradients(
                    model, images[batch], labels[batch], precision, params, 1.0, 1.0
                )
            else:
                step = coop_gradients(model, images[batch], labels[batch], precision, params)
            precision.step(optimizer, params, step.gradients)
        schedule.step()
    return learner.ctx.detach()


@torch.no_grad()
def logits_of(clip_model, features, classnames, context: torch.Tensor | None) -> torch.Tensor:
    """(N, C) logits of image features: zero-shot CLIP's with `context` None, else the prompt's."""
    if context is None:
        text = zero_shot_text_features(clip_model, classnames, world.TEMPLATE)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            learner = PromptLearner(clip_model, classnames, n_ctx=context.shape[0])
        learner.ctx.copy_(context)
        text = CustomCLIP(clip_model, learner).text_features()
    return clip_model.logit_scale.exp() * features @ text.t()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


def kl_to_zero_shot(clip_model, features, classnames, context) -> float:
    """KL(zero-shot CLIP || prompt) of the predictions, averaged over the images."""
    teacher = F.log_softmax(logits_of(clip_model, features, classnames, None), dim=1)
    student = F.log_softmax(logits_of(clip_model, features, classnames, context), dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean").item()


def test_a_few_epochs_of_coop_beat_zero_shot_on_the_base_classes(clip_model, data):
    """CoOp (random context, as configs/trainers/CoOp/tiny.yaml) on 4 shots of the downstream
    domain: base-class test accuracy ends at least 3 points above zero-shot CLIP's."""
    train, test = data
    features, labels = test["base"]
    zero_shot = accuracy(logits_of(clip_model, features, BASE, None), labels)
    context = train_context(clip_model, train, "CoOp", init_words=None, seed=1)
    coop = accuracy(logits_of(clip_model, features, BASE, context), labels)
    assert coop >= zero_shot + 3, (zero_shot, coop)


def test_prograd_keeps_predictions_closer_to_zero_shot_than_coop_on_base_and_new(clip_model, data):
    """Same random start (the tiny configs'), same batches, 5 seeds: the median KL of
    the prompt's predictions to zero-shot CLIP's, on the test images of the base classes
    (where ProGrad's KL term acts) and of the new classes (never trained on), is smaller after
    ProGrad's updates than after CoOp's. (About 30 s: ten short trainings.)"""
    train, test = data
    kl: dict[tuple[str, str], list[float]] = {}
    for method in ("CoOp", "ProGrad"):
        for seed in SEEDS:
            context = train_context(clip_model, train, method, None, seed)
            for split, classnames in (("base", BASE), ("new", NEW)):
                divergence = kl_to_zero_shot(clip_model, test[split][0], classnames, context)
                kl.setdefault((method, split), []).append(divergence)
    median = {key: statistics.median(values) for key, values in kl.items()}
    for split in ("base", "new"):
        assert median["ProGrad", split] < median["CoOp", split], kl
