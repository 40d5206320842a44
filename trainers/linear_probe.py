"""Linear-probe CLIP as a Dassl trainer, with the protocol of CoOp's lpclip/ scripts.

`train()`: the frozen image encoder's features of the dataset's full train and val splits and of
its test split (each extracted once, then read from the feature cache, trainers/feature_cache.py),
the few-shot subsets the dataset's own few-shot split picked for this shots/seed (the images
CoOp, ProGrad, KgCoOp train on), scikit-learn logistic regression with C searched on the
few-shot validation split (trainers/linear_probe_ops.py), a checkpoint
`linear_probe/model.pth.tar-1`, then Dassl's evaluation on the test split (its `=> result` block),
so train.py, the run scripts, the output tree and the tables tool treat it as any trainer.

`--eval-only --model-dir RUN --load-epoch 1` evaluates a trained probe on any dataset whose classes
it was trained on (e.g. ImageNet's probe on ImageNet-V2/-Sketch/-A/-R): its rows are picked by
class name.

Features are CLIP's `visual(image)` (not normalised, as lpclip) of Dassl's test-time transform
(resize, centre crop, normalise), for every split.
"""

from __future__ import annotations

import datetime
import functools
import os.path as osp
import time
from pathlib import Path

import torch
from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import TRAINER_REGISTRY, TrainerX
from torch import nn

from experiments.declarations import DG_TARGET, ConfigKey, Defaults, Method, Values

from .backbone import backbone_fingerprint, resolve_backbone_file
from .base import load_clip_for
from .dassl_compat import SaveModelMixin, checkpoint_state_dict, load_checkpoint
from .data_loading import DataLoadingMixin, ReadableImagesWrapper
from .feature_cache import (
    FeatureCache,
    FeatureKey,
    SplitFeatures,
    default_feature_cache,
    file_sha256,
    image_list_sha256,
)
from .frozen_image import FrozenImageEncoder
from .inputs import check_folder
from .linear_probe_ops import LinearProbe, fit_linear_probe, hold_out_per_class
from .precision import Precision

# CoOp's lpclip/ protocol. A linear classifier has no new classes, so no base-to-new; trained on
# ImageNet (16 shots, as CoOp's domain generalisation table) it classifies the ImageNet variants,
# not the other datasets. ImageNet's val is its test set: C is chosen on images held out from its
# train split.
METHOD = Method(
    name="LinearProbeCLIP",
    trainer="LinearProbeCLIP",
    summary="logistic regression on frozen CLIP image features (CoOp's lpclip)",
    row=10,
    config_folder="LinearProbeCLIP",
    defaults={"fewshot": Defaults("rn50"), "xd": Defaults("rn50", shots=16)},
    prompt=None,
    dataset_opts={"imagenet": ("TRAINER.LINEAR_PROBE.VALIDATION", "train")},
    model_name="linear_probe",
    checkpoint_epoch=1,
    xd_target_group=DG_TARGET,
    xd_targets_reason="a linear probe classifies only the classes it was trained on",
    config_keys=(
        ConfigKey(
            "TRAINER.LINEAR_PROBE.VALIDATION",
            "val",
            'C chosen on: "val" split, or "train" hold-out (TRAINER.COOP.PREC sets the precision)',
            Values(choices=("val", "train")),
        ),
        ConfigKey(
            "TRAINER.LINEAR_PROBE.SEARCH_STEPS",
            8,
            "rounds of the C search after the grid",
            Values(minimum=0),
        ),
        ConfigKey(
            "TRAINER.LINEAR_PROBE.MAX_ITER", 1000, "L-BFGS iterations per fit", Values(minimum=1)
        ),
        ConfigKey(
            "TRAINER.LINEAR_PROBE.FEATURE_CACHE",
            "",
            'image-feature cache; "" is $PROGRAD_FEATURE_CACHE, else $XDG_CACHE_HOME (or '
            "~/.cache)/prograd/clip_features",
            Values(note="a folder"),
        ),
    ),
)
VALIDATION_SOURCES = ("val", "train")
MODEL_NAME = METHOD.model_name
CHECKPOINT_EPOCH = METHOD.checkpoint_epoch  # one "epoch": the fit


def check_linear_probe_cfg(cfg) -> None:
    """Reject bad TRAINER.LINEAR_PROBE / PREC values before anything is built."""
    Precision(cfg.TRAINER.COOP.PREC, torch.device("cpu"))  # raises on an unknown precision
    probe = cfg.TRAINER.LINEAR_PROBE
    if probe.VALIDATION not in VALIDATION_SOURCES:
        raise ValueError(
            f'TRAINER.LINEAR_PROBE.VALIDATION is "{probe.VALIDATION}"; use "val" (the '
            f'dataset\'s few-shot validation split, as lpclip) or "train" (min(shots, 4) images '
            f"per class held out from the train split, for datasets whose val is their test set)"
        )
    if probe.FEATURE_CACHE:
        check_folder(
            osp.expanduser(probe.FEATURE_CACHE), "TRAINER.LINEAR_PROBE.FEATURE_CACHE", False
        )
    for key, value, low in (
        ("SEARCH_STEPS", probe.SEARCH_STEPS, 0),
        ("MAX_ITER", probe.MAX_ITER, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(
                f"TRAINER.LINEAR_PROBE.{key} is {value!r}; use an integer >= {low} (lpclip: "
                f"SEARCH_STEPS 8, MAX_ITER 1000)"
            )


class LinearClassifier(nn.Module):
    """logits = features @ weight.T + bias, remembering the class names it was trained on."""

    def __init__(self, classnames: list[str]):
        super().__init__()
        self.classnames = list(classnames)
        self.register_buffer("weight", torch.zeros(0, 0))  # (C, D) once fitted or loaded
        self.register_buffer("bias", torch.zeros(0))  # (C,)
        self.regularisation_c: float | None = None
        self.val_accuracy: float | None = None

    def set_probe(self, probe: LinearProbe) -> None:
        """Take a fitted probe's weights (classes in label order, as `classnames`)."""
        self.weight = torch.as_tensor(probe.weight, dtype=torch.float32)
        self.bias = torch.as_tensor(probe.bias, dtype=torch.float32)
        self.regularisation_c = probe.search.C
        self.val_accuracy = probe.search.accuracy

    def get_extra_state(self) -> dict:
        """Saved in the checkpoint beside the weights: the classes and how C was chosen."""
        return {
            "classnames": self.classnames,
            "C": self.regularisation_c,
            "val_accuracy": self.val_accuracy,
        }

    def set_extra_state(self, state: dict) -> None:
        self.classnames = list(state["classnames"])
        self.regularisation_c = state["C"]
        self.val_accuracy = state["val_accuracy"]

    def load_for_classes(self, state_dict: dict, path: str, classnames: list[str]) -> None:
        """Load a checkpoint and keep the rows of `classnames` (in that order).

        Args:
            state_dict: the checkpoint's `state_dict` (weight, bias, _extra_state).
            path: the checkpoint file, for error messages.
            classnames: the classes of the dataset being evaluated.
        """
        if not {"weight", "bias", "_extra_state"} <= set(state_dict):
            raise ValueError(
                f"{path} is not a LinearProbeCLIP checkpoint (it lacks weight, bias or the class "
                f"names); give the run directory of a LinearProbeCLIP run as --model-dir"
            )
        trained = list(state_dict["_extra_state"]["classnames"])
        missing = [name for name in classnames if name not in trained]
        if missing:
            raise ValueError(
                f"{path} was trained on {len(trained)} classes that do not include "
                f"{', '.join(repr(n) for n in missing[:5])}"
                f"{' and others' if len(missing) > 5 else ''}; a linear probe can only classify "
                f"classes it was trained on (evaluate it on the same dataset, or on ImageNet's "
                f"variants for a probe trained on ImageNet)"
            )
        ambiguous = sorted({n for n in classnames if trained.count(n) > 1})
        if ambiguous and classnames != trained:
            raise ValueError(
                f"{path}: the class names {ambiguous} occur more than once among its classes, so "
                f"their rows cannot be matched by name"
            )
        rows = (
            list(range(len(trained)))
            if classnames == trained
            else [trained.index(name) for name in classnames]
        )
        self.set_extra_state(state_dict["_extra_state"])
        self.classnames = list(classnames)
        self.weight = state_dict["weight"].float()[rows]
        self.bias = state_dict["bias"].float()[rows]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N, C) logits, in fp32."""
        if self.weight.numel() == 0:
            raise ValueError("the linear probe has not been fitted or loaded yet")
        return features.float() @ self.weight.t() + self.bias


def rows_of(split: SplitFeatures, items) -> torch.Tensor:
    """Rows of `split` holding `items` (a subset of its images, matched by path): (len(items),)."""
    row_of = {impath: row for row, impath in enumerate(split.impaths)}
    rows = []
    for item in items:
        row = row_of.get(item.impath)
        if row is None or int(split.labels[row]) != item.label:
            raise ValueError(
                f"{item.impath} (label {item.label}) of the few-shot split is not in the dataset's "
                f"full split with that label; delete the dataset's split_fewshot/ files made from "
                f"another split file, so that they are drawn again"
            )
        rows.append(row)
    return torch.tensor(rows, dtype=torch.int64)


@TRAINER_REGISTRY.register()
class LinearProbeCLIP(SaveModelMixin, DataLoadingMixin, TrainerX):
    """Logistic regression on frozen CLIP image features (CoOp's lpclip/ protocol)."""

    def check_cfg(self, cfg) -> None:
        check_linear_probe_cfg(cfg)

    def build_model(self) -> None:
        cfg = self.cfg
        self.precision = Precision(cfg.TRAINER.COOP.PREC, self.device)
        self.classifier = LinearClassifier(self.dm.dataset.classnames)
        self.register_model(MODEL_NAME, self.classifier)
        self.cache = FeatureCache(cfg.TRAINER.LINEAR_PROBE.FEATURE_CACHE or default_feature_cache())
        self.transform = self.test_loader.dataset.transform  # Dassl's test-time transform
        self._image_encoder: FrozenImageEncoder | None = None  # loaded on the first cache miss
        backbone = cfg.MODEL.BACKBONE.PATH or cfg.MODEL.BACKBONE.NAME
        print(f"Linear probe on the frozen image features of {backbone}")
        print(f"Feature cache: {self.cache.root}")

    @functools.cached_property
    def backbone_file(self) -> Path:
        """The CLIP checkpoint file (found, or downloaded by name, when first needed: a refused
        run downloads nothing)."""
        return resolve_backbone_file(self.cfg.MODEL.BACKBONE.NAME, self.cfg.MODEL.BACKBONE.PATH)

    def image_encoder(self) -> FrozenImageEncoder:
        """CLIP's frozen image encoder, loaded when features must be extracted."""
        if self._image_encoder is None:
            clip_model = load_clip_for(self.cfg, self.precision)
            self._image_encoder = FrozenImageEncoder(clip_model.visual).to(self.device)
        return self._image_encoder

    def feature_key(self, split: str, items) -> FeatureKey:
        return FeatureKey(
            backbone_sha256=backbone_fingerprint(
                self.cfg.MODEL.BACKBONE.NAME, file_sha256(self.backbone_file)
            ),
            precision=self.precision.mode,
            device=self.device.type,
            dataset=self.cfg.DATASET.NAME,
            split=split,
            images_sha256=image_list_sha256(items),
            image_count=len(items),
            transform=repr(self.transform),
        )

    def split_features(self, split: str, items) -> SplitFeatures:
        """The features of `items` (a whole split), from the cache or extracted once."""
        return self.cache.get_or_extract(
            self.feature_key(split, items), items, lambda: self.extract(items)
        )

    @torch.no_grad()
    def extract(self, items) -> torch.Tensor:
        """(N, D) image features of `items` in order; fp16 under fp16 weights, else fp32."""
        cfg = self.cfg
        loader = torch.utils.data.DataLoader(
            ReadableImagesWrapper(cfg, items, transform=self.transform, is_train=False),
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            shuffle=False,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            pin_memory=self.device.type == "cuda",
        )
        encoder = self.image_encoder()
        dtype = torch.float16 if self.precision.mode == "fp16" else torch.float32
        chunks = []
        for index, batch in enumerate(loader):
            with self.precision.autocast():
                chunks.append(encoder(batch["img"].to(self.device)).to(dtype).cpu())
            if (index + 1) % 50 == 0 or index + 1 == len(loader):
                print(f"  batch {index + 1}/{len(loader)}")
        return torch.cat(chunks)

    def full_splits(self) -> tuple[list, list | None]:
        """The dataset's full train and val splits (DATASET.NUM_SHOTS ignored)."""
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATASET.NUM_SHOTS = -1
        cfg.freeze()
        dataset = DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
        return dataset.train_x, dataset.val

    def check_validation_split(self) -> None:
        """C is chosen on the validation split: refuse one that is missing or holds test images."""
        val, test = self.dm.dataset.val or [], self.dm.dataset.test
        test_paths = {item.impath for item in test}
        shared = sum(item.impath in test_paths for item in val)
        if not val or shared:
            reason = (
                "has no validation split"
                if not val
                else f"has a validation split that shares {shared} of its {len(val)} images with "
                f"its test split"
            )
            raise ValueError(
                f"LinearProbeCLIP chooses C on the validation split, and DATASET.NAME "
                f"{self.cfg.DATASET.NAME} {reason}, so C would be tuned on the test set. Set "
                f"TRAINER.LINEAR_PROBE.VALIDATION train to hold out min(shots, 4) images per "
                f"class from the train split instead (scripts/linearprobeclip/ do so for "
                f"imagenet)."
            )

    def validation_features(
        self, train: SplitFeatures, train_rows: torch.Tensor, val_full: list | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, labels) of the validation images (see TRAINER.LINEAR_PROBE.VALIDATION)."""
        if self.cfg.TRAINER.LINEAR_PROBE.VALIDATION == "val":
            val = self.split_features("val", val_full)
            rows = rows_of(val, self.dm.dataset.val)
            return val.features[rows], val.labels[rows]
        shots = self.cfg.DATASET.NUM_SHOTS
        per_class = min(shots, 4) if shots >= 1 else 4
        rows = torch.from_numpy(
            hold_out_per_class(
                train.labels.numpy(), train_rows.tolist(), per_class, max(self.cfg.SEED, 0)
            )
        )
        if len(rows) == 0:
            raise ValueError(
                "TRAINER.LINEAR_PROBE.VALIDATION is train, but the train split has no image "
                "left beyond the few-shot ones to validate on; use VALIDATION val"
            )
        print(f"Validation: {len(rows)} images held out from the train split ({per_class}/class)")
        return train.features[rows], train.labels[rows]

    def train(self) -> None:
        """Features, C search, fit, checkpoint, then the test split (Dassl's log format)."""
        started = time.time()
        if self.cfg.TRAINER.LINEAR_PROBE.VALIDATION == "val":
            self.check_validation_split()
        train_full, val_full = self.full_splits()
        train = self.split_features("train", train_full)
        train_rows = rows_of(train, self.dm.dataset.train_x)
        val_x, val_y = self.validation_features(train, train_rows, val_full)
        self.split_features("test", self.dm.dataset.test)  # extracted now, read by test()
        print(
            f"Fitting the linear probe: {len(train_rows)} training and {len(val_y)} validation "
            f"images, {self.num_classes} classes"
        )
        probe = fit_linear_probe(
            train.features[train_rows].numpy(), train.labels[train_rows].numpy(),
            val_x.numpy(), val_y.numpy(), self.num_classes,
            steps=self.cfg.TRAINER.LINEAR_PROBE.SEARCH_STEPS,
            max_iter=self.cfg.TRAINER.LINEAR_PROBE.MAX_ITER,
        )  # fmt: skip
        self.report_search(probe)
        self.classifier.set_probe(probe)
        self.save_model(CHECKPOINT_EPOCH - 1, self.output_dir)
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            self.test()
        print(f"Elapsed: {datetime.timedelta(seconds=round(time.time() - started))}")

    @staticmethod
    def report_search(probe: LinearProbe) -> None:
        search = probe.search
        grid = ", ".join(f"{c:g}: {100 * acc:.2f}%" for c, acc in search.grid)
        print(f"C search, validation accuracy on the grid: {grid}")
        for index, r in enumerate(search.rounds):
            print(
                f"C search round {index + 1}: C {r.left:.6g} -> {100 * r.left_accuracy:.2f}%, "
                f"C {r.right:.6g} -> {100 * r.right_accuracy:.2f}%; chose {r.chosen:.6g}"
            )
        print(f"Linear probe: C = {search.C:.6g}, validation accuracy {100 * search.accuracy:.2f}%")

    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        """Dassl's evaluation (`=> result` block) on the cached features of the split."""
        split = split or self.cfg.TEST.SPLIT
        items = self.dm.dataset.val if split == "val" and self.dm.dataset.val else None
        if items is None:
            split, items = "test", self.dm.dataset.test
        features = self.split_features(split, items)
        self.set_model_mode("eval")
        self.evaluator.reset()
        print(f"Evaluate on the *{split}* set")
        for rows in torch.arange(len(items)).split(4096):
            logits = self.classifier(features.features[rows].to(self.device))
            self.evaluator.process(logits, features.labels[rows].to(self.device))
        results = self.evaluator.evaluate()
        for name, value in results.items():
            self.write_scalar(f"{split}/{name}", value, self.epoch)
        return list(results.values())[0]

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load `<directory>/linear_probe/model.pth.tar-<epoch>` (a fit is epoch 1)."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        name = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        path = osp.join(directory, MODEL_NAME, name)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f"No linear probe at {path}. A LinearProbeCLIP run saves "
                f"<run>/{MODEL_NAME}/model.pth.tar-{CHECKPOINT_EPOCH}: pass that run as "
                f"--model-dir with --load-epoch {CHECKPOINT_EPOCH}."
            )
        checkpoint = load_checkpoint(path)
        print(f'Loading the linear probe from "{path}"')
        self.classifier.load_for_classes(
            checkpoint_state_dict(checkpoint, path), path, list(self.dm.dataset.classnames)
        )
        self.classifier.to(self.device)
