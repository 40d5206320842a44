"""Shared test-time image features (TEST.SHARED_FEATURES): the same logits and accuracy as the
uncached evaluation for every method and precision; what makes an entry miss; the fallbacks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from devkit.synthetic_data import write_caltech101  # noqa: E402
from devkit.train_runs import build  # noqa: E402

# (trainer, config, precision key) of every prompt method and zero-shot CLIP.
METHODS = [
    ("CoOp", "configs/trainers/CoOp/tiny.yaml", "TRAINER.COOP.PREC"),
    ("ProGrad", "configs/trainers/ProGrad/tiny.yaml", "TRAINER.COOP.PREC"),
    ("KD", "configs/trainers/ProGrad/tiny.yaml", "TRAINER.COOP.PREC"),
    ("KgCoOp", "configs/trainers/KgCoOp/tiny.yaml", "TRAINER.COOP.PREC"),
    ("CoCoOp", "configs/trainers/CoCoOp/tiny.yaml", "TRAINER.COCOOP.PREC"),
    ("ProGradCoCoOp", "configs/trainers/ProGradCoCoOp/tiny.yaml", "TRAINER.COCOOP.PREC"),
    ("ZeroshotCLIP", "configs/trainers/CoOp/tiny.yaml", "TRAINER.COOP.PREC"),
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=4, images_per_class=8)


def evaluate(trainer, shared: bool) -> tuple[float, torch.Tensor]:
    """(accuracy, every test logit in order) of trainer.test() with sharing on or off."""
    trainer.cfg.defrost()
    trainer.cfg.TEST.SHARED_FEATURES = shared
    trainer.cfg.freeze()
    logits = []
    process = trainer.evaluator.process

    def record(output, label):
        logits.append(output.detach().float().cpu())
        return process(output, label)

    trainer.evaluator.process = record
    try:
        accuracy = trainer.test()
    finally:
        trainer.evaluator.process = process
    return accuracy, torch.cat(logits)


def built(monkeypatch, tmp_path, data_root, clip_file, trainer, config, key, prec, cache, *opts):
    """A trainer built in-process, its shared features under ``cache``, 5 test images a batch."""
    return build(
        monkeypatch, trainer, config, tmp_path / "run", data_root, clip_file,
        key, prec, "TEST.FEATURE_CACHE", str(cache), "DATALOADER.TEST.BATCH_SIZE", "5", *opts,
    )  # fmt: skip


@pytest.mark.parametrize("prec", ["fp16", "fp32", "amp"])
@pytest.mark.parametrize(("trainer", "config", "key"), METHODS, ids=[m[0] for m in METHODS])
def test_cached_evaluation_gives_the_uncached_logits_and_accuracy(
    monkeypatch, tmp_path, data_root, tiny_clip_files, trainer, config, key, prec, capsys
):
    """Sharing on (a miss, then a hit) gives the uncached evaluation's logits and accuracy."""
    cache = tmp_path / "cache"
    model = built(
        monkeypatch, tmp_path, data_root, tiny_clip_files["ViT"], trainer, config, key, prec, cache
    )
    plain_accuracy, plain = evaluate(model, shared=False)
    assert not cache.exists()
    for attempt in ("extracting", "read from"):
        accuracy, logits = evaluate(model, shared=True)
        assert f"Feature cache: {'test split' if attempt == 'read from' else attempt}" in (
            capsys.readouterr().out
        )
        assert accuracy == plain_accuracy
        exact = model.device.type == "cpu"  # the same kernels on the same batches: bit for bit
        torch.testing.assert_close(
            logits, plain, rtol=0 if exact else 1e-3, atol=0 if exact else 1e-3
        )
    (entry,) = cache.rglob("*.pt")
    stored = torch.load(entry, weights_only=True)
    assert stored["key"]["precision"] == ("fp16" if prec == "fp16" else "fp32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_cached_evaluation_on_cuda_matches_the_uncached_one(
    monkeypatch, tmp_path, data_root, tiny_clip_files, prec
):
    """On CUDA the features are computed and keyed there ("cuda"), and read back for the
    same accuracy and logits to rounding."""
    cache = tmp_path / "cache"
    args = (
        tmp_path,
        data_root,
        tiny_clip_files["RN"],
        "ProGrad",
        "configs/trainers/ProGrad/tiny.yaml",
    )
    model = built(monkeypatch, *args, "TRAINER.COOP.PREC", prec, cache, "USE_CUDA", "True")
    assert model.device.type == "cuda"
    plain_accuracy, plain = evaluate(model, shared=False)
    for _ in range(2):
        accuracy, logits = evaluate(model, shared=True)
        assert accuracy == plain_accuracy
        torch.testing.assert_close(logits, plain, rtol=1e-3, atol=1e-3)
    (entry,) = cache.rglob("*.pt")
    assert torch.load(entry, weights_only=True)["key"]["device"] == "cuda"


def entries(cache: Path) -> int:
    return len(list(cache.rglob("*.pt")))


def test_a_changed_backbone_file_transform_or_image_is_a_miss_and_a_copy_is_a_hit(
    monkeypatch, tmp_path, data_root, capsys
):
    """The key is the content: a copied backbone file hits; new weights in the same file, another
    interpolation, or a touched test image each make a new entry, never a stale read."""
    from devkit.tiny_clip import write_tiny_clip

    cache = tmp_path / "cache"
    first = write_tiny_clip(tmp_path / "a.pt", "ViT", seed=0)
    copy = tmp_path / "b.pt"
    copy.write_bytes(first.read_bytes())
    args = (tmp_path, data_root, first, "CoOp", "configs/trainers/CoOp/tiny.yaml")
    evaluate(built(monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", cache), shared=True)
    args = (tmp_path, data_root, copy, "CoOp", "configs/trainers/CoOp/tiny.yaml")
    model = built(monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", cache)
    evaluate(model, shared=True)
    assert "read from" in capsys.readouterr().out and entries(cache) == 1
    write_tiny_clip(copy, "ViT", seed=1)  # same path, other weights
    os.utime(copy, ns=(1, 1))
    evaluate(built(monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", cache), shared=True)
    assert entries(cache) == 2
    other = built(
        monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", cache, "INPUT.INTERPOLATION", "bilinear"
    )
    evaluate(other, shared=True)
    assert entries(cache) == 3
    image = Path(model.dm.dataset.test[0].impath)
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    evaluate(model, shared=True)
    assert entries(cache) == 4 and "extracting" in capsys.readouterr().out


def test_a_cache_that_cannot_be_written_leaves_the_run_its_features_with_a_note(
    monkeypatch, tmp_path, data_root, tiny_clip_files, capsys
):
    """TEST.FEATURE_CACHE naming a file (as a read-only or full disk would): the evaluation runs
    on the features it computed, the same accuracy, and a note names the key."""
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    args = (tmp_path, data_root, tiny_clip_files["ViT"], "CoOp", "configs/trainers/CoOp/tiny.yaml")
    model = built(monkeypatch, *args, "TRAINER.COOP.PREC", "fp32", blocked)
    plain_accuracy, plain = evaluate(model, shared=False)
    accuracy, logits = evaluate(model, shared=True)
    assert accuracy == plain_accuracy and torch.equal(logits, plain)
    out = capsys.readouterr().out
    assert "Feature cache: cannot write under" in out and "Set TEST.FEATURE_CACHE" in out
    assert blocked.read_text() == "not a folder"
