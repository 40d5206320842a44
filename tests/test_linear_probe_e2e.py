"""LinearProbeCLIP end to end with real Dassl: train.py's config path, the real YAML files,
synthetic datasets in their real layouts and a tiny CLIP checkpoint, on the CPU."""

import re
import shutil

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
from devkit.synthetic_data import write_caltech101, write_imagenet, write_imagenet_a  # noqa: E402
from devkit.tiny_clip import write_tiny_clip  # noqa: E402
from devkit.train_runs import build  # noqa: E402
from trainers.frozen_image import FrozenImageEncoder  # noqa: E402

LP_YAML = "configs/trainers/LinearProbeCLIP/rn50.yaml"
ACCURACY = re.compile(r"=> result\n.*\n.*\n\* accuracy: ([\d.]+)%")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=4, images_per_class=10)


@pytest.fixture
def encoder_calls(monkeypatch) -> list[int]:
    """Counts the images CLIP's image encoder is run on (a pass-through, not a stand-in)."""
    calls: list[int] = []
    original = FrozenImageEncoder.forward

    def counting(self, image):
        calls.append(image.shape[0])
        return original(self, image)

    monkeypatch.setattr(FrozenImageEncoder, "forward", counting)
    return calls


def probe(monkeypatch, out, data_root, clip_file, cache, *opts, shots=2, seed=1, **kwargs):
    """A LinearProbeCLIP trainer built through train.py's config path."""
    return build(
        monkeypatch, "LinearProbeCLIP", LP_YAML, out, data_root, clip_file,
        "TRAINER.LINEAR_PROBE.FEATURE_CACHE", str(cache), "DATASET.NUM_SHOTS", str(shots),
        *opts, seed=seed, **kwargs,
    )  # fmt: skip


def cache_files(cache) -> set[str]:
    return {str(path.relative_to(cache)) for path in cache.rglob("*.pt")}


def test_a_run_logs_its_c_search_saves_its_probe_and_eval_only_reproduces_its_result(
    monkeypatch, tmp_path, data_root, tiny_clip_files, capsys
):
    """The C search logged, linear_probe/model.pth.tar-1 with the class names, "Finish training"
    then a `=> result` block; the checkpoint evaluates (as --eval-only does) to the same result
    with the test features read from the cache."""
    out, cache, clip_file = tmp_path / "run", tmp_path / "cache", tiny_clip_files["RN"]
    probe(monkeypatch, out, data_root, clip_file, cache).train()
    log = capsys.readouterr().out
    assert "C search, validation accuracy on the grid: 1e+06:" in log
    assert len(re.findall(r"C search round \d+:", log)) == 8
    assert log.index("Finish training") < log.index("=> result")
    trained = float(ACCURACY.search(log).group(1))
    checkpoint = torch.load(out / "linear_probe" / "model.pth.tar-1", weights_only=True)
    state = checkpoint["state_dict"]
    assert state["weight"].shape == (4, 32) and state["bias"].shape == (4,)
    assert state["_extra_state"]["classnames"] == ["accordion", "airplane", "anchor", "ant"]
    assert cache_files(cache) and all(name.startswith("Caltech101/") for name in cache_files(cache))

    evaluator = probe(monkeypatch, tmp_path / "eval", data_root, clip_file, cache)
    evaluator.load_model(str(out), epoch=1)
    assert evaluator.test() == pytest.approx(trained, abs=0.05)
    assert "extracting" not in capsys.readouterr().out  # the test features came from the cache


def test_other_shots_and_seed_reuse_the_cached_features(
    monkeypatch, tmp_path, data_root, tiny_clip_files, encoder_calls
):
    """The first run encodes the full train, val and test splits once; a run with other shots
    and another seed encodes nothing and adds no cache entry, yet fits on its own images."""
    cache, clip_file = tmp_path / "cache", tiny_clip_files["RN"]
    first = probe(monkeypatch, tmp_path / "a", data_root, clip_file, cache, shots=2, seed=1)
    first.train()
    assert sum(encoder_calls) == 4 * (5 + 2 + 3)  # 10 images per class: 5 train, 2 val, 3 test
    entries = cache_files(cache)
    assert len(entries) == 3

    encoder_calls.clear()
    second = probe(monkeypatch, tmp_path / "b", data_root, clip_file, cache, shots=4, seed=2)
    second.train()
    assert encoder_calls == [] and second._image_encoder is None  # CLIP was not even loaded
    assert cache_files(cache) == entries
    assert len(second.dm.dataset.train_x) == 16 and len(first.dm.dataset.train_x) == 8


def test_a_changed_backbone_file_or_transform_is_a_cache_miss_and_a_copied_file_is_not(
    monkeypatch, tmp_path, data_root, tiny_clip_files, encoder_calls
):
    """Other weights, or another interpolation: new entries; the same weights elsewhere: a hit."""
    cache, clip_file = tmp_path / "cache", tiny_clip_files["RN"]
    probe(monkeypatch, tmp_path / "a", data_root, clip_file, cache, "TEST.NO_TEST", "True").train()
    entries = cache_files(cache)

    copied = shutil.copy(clip_file, tmp_path / "same_weights_elsewhere.pt")
    encoder_calls.clear()
    probe(monkeypatch, tmp_path / "b", data_root, copied, cache, "TEST.NO_TEST", "True").train()
    assert encoder_calls == [] and cache_files(cache) == entries

    other = write_tiny_clip(tmp_path / "other.pt", "RN", seed=1)
    probe(monkeypatch, tmp_path / "c", data_root, other, cache, "TEST.NO_TEST", "True").train()
    assert sum(encoder_calls) > 0 and len(cache_files(cache)) == 2 * len(entries)

    encoder_calls.clear()
    probe(monkeypatch, tmp_path / "d", data_root, clip_file, cache, "TEST.NO_TEST", "True",
          "INPUT.INTERPOLATION", "bilinear").train()  # fmt: skip
    assert sum(encoder_calls) > 0 and len(cache_files(cache)) == 3 * len(entries)


def test_imagenet_needs_a_held_out_validation_and_its_probe_evaluates_on_imagenet_a(
    monkeypatch, tmp_path, tiny_clip_files, encoder_calls
):
    """ImageNet's val is its test set: refused before any feature is extracted. With
    VALIDATION train it fits, and evaluates on ImageNet-A's classes, picked by name."""
    root = write_imagenet(tmp_path / "data", num_classes=4, images_per_class=10)
    write_imagenet_a(root, num_classes=2, images_per_class=4)
    cache, clip_file = tmp_path / "cache", tiny_clip_files["RN"]
    imagenet = ("DATASET.NAME", "ImageNet")

    refused = probe(monkeypatch, tmp_path / "refused", root, clip_file, cache, *imagenet)
    with pytest.raises(ValueError, match=r"ImageNet has a validation split that shares .* test "
                       r"split.*TRAINER.LINEAR_PROBE.VALIDATION train"):  # fmt: skip
        refused.train()
    assert encoder_calls == [] and not cache.exists()

    out = tmp_path / "imagenet"
    trainer = probe(monkeypatch, out, root, clip_file, cache, *imagenet,
                    "TRAINER.LINEAR_PROBE.VALIDATION", "train")  # fmt: skip
    trainer.train()
    assert 0.0 <= trainer.test() <= 100.0

    evaluator = probe(monkeypatch, tmp_path / "a", root, clip_file, cache,
                      "DATASET.NAME", "ImageNetA")  # fmt: skip
    evaluator.load_model(str(out), epoch=1)
    full = trainer.classifier
    rows = [full.classnames.index(name) for name in evaluator.dm.dataset.classnames]
    assert len(rows) == 2 and rows != [0, 1]
    torch.testing.assert_close(evaluator.classifier.weight, full.weight[rows].cpu())
    assert 0.0 <= evaluator.test() <= 100.0


def test_a_probe_cannot_evaluate_classes_it_was_not_trained_on(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """Evaluating a Caltech101 probe on other classes is refused, naming the missing classes."""
    cache, clip_file = tmp_path / "cache", tiny_clip_files["RN"]
    out = tmp_path / "small"
    small_root = write_caltech101(tmp_path / "small_data", num_classes=3, images_per_class=10)
    probe(monkeypatch, out, small_root, clip_file, cache, "TEST.NO_TEST", "True").train()
    evaluator = probe(monkeypatch, tmp_path / "eval", data_root, clip_file, cache)
    with pytest.raises(ValueError, match="do not include 'ant'; a linear probe can only classify"):
        evaluator.load_model(str(out), epoch=1)
    with pytest.raises(FileNotFoundError, match="--load-epoch 1"):
        evaluator.load_model(str(out), epoch=200)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (
            ["TRAINER.LINEAR_PROBE.VALIDATION", "test"],
            'VALIDATION is "test"; it takes one of val, train',
        ),
        (
            ["TRAINER.LINEAR_PROBE.SEARCH_STEPS", "-1"],
            "SEARCH_STEPS is -1; it takes an integer >= 0",
        ),
        (["TRAINER.LINEAR_PROBE.MAX_ITER", "0"], "MAX_ITER is 0; it takes an integer >= 1"),
        (
            ["TRAINER.COOP.PREC", "fp8"],
            'TRAINER.COOP.PREC is "fp8"; it takes one of fp16, fp32, amp, bf16',
        ),
    ],
)
def test_bad_linear_probe_values_are_refused_with_the_key(
    monkeypatch, tmp_path, data_root, opts, message
):
    """Bad TRAINER.LINEAR_PROBE values: a ValueError naming the key, before CLIP is looked for."""
    with pytest.raises(ValueError, match=message):
        probe(monkeypatch, tmp_path, data_root, tmp_path / "no_clip.pt", tmp_path / "c", *opts)


def test_a_feature_cache_path_that_is_a_file_is_refused_before_anything_is_built(
    monkeypatch, tmp_path, data_root
):
    """TRAINER.LINEAR_PROBE.FEATURE_CACHE naming a file: refused with the key; the file kept."""
    cache = tmp_path / "cache"
    cache.write_text("my notes")
    with pytest.raises(ValueError, match=r"TRAINER.LINEAR_PROBE.FEATURE_CACHE .*cache is a file"):
        probe(monkeypatch, tmp_path / "run", data_root, tmp_path / "no_clip.pt", cache)
    assert cache.read_text() == "my notes"


def test_a_cache_that_cannot_be_written_leaves_the_run_going_with_a_note(
    monkeypatch, tmp_path, data_root, tiny_clip_files, capsys
):
    """A cache folder where no entry can be written (here a file stands where the dataset's
    folder would go): the probe fits and tests on features kept in memory, says so, and leaves
    the folder as it was."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "Caltech101").write_text("not a folder")
    trainer = probe(monkeypatch, tmp_path / "run", data_root, tiny_clip_files["RN"], cache)
    trainer.train()
    assert 0.0 <= trainer.test() <= 100.0
    out = capsys.readouterr().out
    assert f"Feature cache: cannot write under {cache}" in out
    assert "TRAINER.LINEAR_PROBE.FEATURE_CACHE to a folder you can write to" in out
    assert [p.name for p in cache.iterdir()] == ["Caltech101"]
    assert (cache / "Caltech101").read_text() == "not a folder"


@pytest.mark.parametrize("precision", ["fp16", "amp"])
def test_fp16_and_amp_features_fit_a_probe_on_cpu(
    monkeypatch, tmp_path, data_root, tiny_clip_files, precision
):
    """fp16 (fp16 features) and amp (fp32 features): a finite probe and a test accuracy."""
    trainer = probe(monkeypatch, tmp_path, data_root, tiny_clip_files["ViT"], tmp_path / "c",
                    "TRAINER.COOP.PREC", precision)  # fmt: skip
    trainer.train()
    features = trainer.split_features("test", trainer.dm.dataset.test).features
    assert features.dtype == (torch.float16 if precision == "fp16" else torch.float32)
    assert torch.isfinite(trainer.classifier.weight).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp16", "amp", "fp32"])
def test_linear_probe_extracts_on_cuda(
    monkeypatch, tmp_path, data_root, tiny_clip_files, precision
):
    """On CUDA in fp16, amp and fp32: features extracted on the GPU, a finite probe, a result;
    the cache key records the device, so CPU and CUDA features are separate entries."""
    trainer = probe(monkeypatch, tmp_path, data_root, tiny_clip_files["ViT"], tmp_path / "c",
                    "TRAINER.COOP.PREC", precision, "USE_CUDA", "True")  # fmt: skip
    assert trainer.device.type == "cuda"
    trainer.train()
    assert trainer.feature_key("test", trainer.dm.dataset.test).device == "cuda"
    assert torch.isfinite(trainer.classifier.weight).all()
    assert 0.0 <= trainer.test() <= 100.0
