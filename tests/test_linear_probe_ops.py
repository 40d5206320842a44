"""Linear-probe CLIP's C search, classifier and validation hold-out, and the feature cache's keys
(no Dassl, no CLIP)."""

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from trainers.feature_cache import FeatureCache, FeatureKey, SplitFeatures, image_list_sha256
from trainers.linear_probe_ops import (
    INITIAL_GRID,
    fit_linear_probe,
    hold_out_per_class,
    linear_layer,
    search_regularisation,
)


def test_c_search_follows_the_rule_on_a_hand_made_accuracy():
    """accuracy(C) = −|log10 C − 0.3|: grid peak 1, then eight rounds worked out by hand."""
    search = search_regularisation(lambda c: -abs(math.log10(c) - 0.3), steps=8)
    assert [c for c, _ in search.grid] == list(INITIAL_GRID)
    # (left, right) in log10 per round and the side chosen, from the rule in the module docstring
    expected = [
        (-1, 1, 1), (0, 1, 0), (0, 0.5, 0.5), (0.25, 0.5, 0.25), (0.25, 0.375, 0.25),
        (0.25, 0.3125, 0.3125), (0.28125, 0.3125, 0.3125), (0.296875, 0.3125, 0.296875),
    ]  # fmt: skip
    assert len(search.rounds) == 8
    for round_, (left, right, chosen) in zip(search.rounds, expected, strict=True):
        assert math.log10(round_.left) == pytest.approx(left, abs=1e-12)
        assert math.log10(round_.right) == pytest.approx(right, abs=1e-12)
        assert math.log10(round_.chosen) == pytest.approx(chosen, abs=1e-12)
    assert math.log10(search.C) == pytest.approx(0.296875, abs=1e-12)
    assert search.accuracy == pytest.approx(-0.003125, abs=1e-12)


def test_c_search_breaks_ties_to_the_first_grid_value_and_the_left_end():
    """A flat accuracy: grid peak 1e6 (first), then every round keeps the left end: C = 1e5."""
    search = search_regularisation(lambda c: 0.5, steps=8)
    assert all(r.chosen == r.left for r in search.rounds)
    assert search.C == pytest.approx(1e5)
    assert search_regularisation(lambda c: 0.5, steps=0).C == 1e6


def lpclip_reference_c(train_x, train_y, val_x, val_y, num_step=8):
    """CoOp's lpclip/linear_probe.py loop, written out as there (refitting every time)."""

    def val_acc(c):
        clf = LogisticRegression(solver="lbfgs", max_iter=1000, C=c).fit(train_x, train_y)
        return sum(clf.predict(val_x) == val_y) / len(val_y)

    search_list = [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6]
    acc_list = [val_acc(c) for c in search_list]
    c_peak = search_list[np.argmax(acc_list)]
    c_left, c_right = 1e-1 * c_peak, 1e1 * c_peak
    for _ in range(num_step):
        acc_left, acc_right = val_acc(c_left), val_acc(c_right)
        if acc_left < acc_right:
            c_final = c_right
            c_left = 0.5 * (np.log10(c_right) + np.log10(c_left))
            c_right = np.log10(c_right)
        else:
            c_final = c_left
            c_right = 0.5 * (np.log10(c_right) + np.log10(c_left))
            c_left = np.log10(c_left)
        c_left, c_right = np.power(10, c_left), np.power(10, c_right)
    return c_final


def noisy_classes(rng, per_class, num_classes=3, width=16, noise=2.5):
    centres = np.random.RandomState(0).normal(size=(num_classes, width))
    labels = np.repeat(np.arange(num_classes), per_class)
    return centres[labels] + noise * rng.normal(size=(len(labels), width)), labels


def test_fitted_probe_has_the_c_of_lpclips_loop_and_predicts_as_sklearn():
    """On overlapping synthetic classes: the same C as lpclip's loop, sklearn's predictions."""
    rng = np.random.RandomState(1)
    train_x, train_y = noisy_classes(rng, 8)
    val_x, val_y = noisy_classes(rng, 4)
    test_x, _ = noisy_classes(rng, 10)
    probe = fit_linear_probe(train_x, train_y, val_x, val_y, num_classes=3)
    assert probe.search.C == lpclip_reference_c(train_x, train_y, val_x, val_y)
    accuracies = {acc for _, acc in probe.search.grid}
    assert len(accuracies) > 1  # the data make C matter, so the search is not vacuous
    reference = LogisticRegression(solver="lbfgs", max_iter=1000, C=probe.search.C)
    reference.fit(train_x, train_y)
    logits = test_x @ probe.weight.T + probe.bias
    assert np.array_equal(logits.argmax(1), reference.predict(test_x))


def test_linear_layer_of_a_binary_probe_and_of_unseen_classes_predicts_as_sklearn():
    """Binary sklearn keeps one row: the layer reproduces predict; an unseen class is never
    predicted (bias −inf)."""
    rng = np.random.RandomState(2)
    x = rng.normal(size=(20, 5))
    y = np.where(x[:, 0] > 0, 3, 1)  # classes 1 and 3 of 4; 0 and 2 never seen
    clf = LogisticRegression(C=1.0).fit(x, y)
    weight, bias = linear_layer(clf, num_classes=4)
    assert weight.shape == (4, 5) and np.isneginf(bias[[0, 2]]).all()
    test = rng.normal(size=(50, 5))
    assert np.array_equal((test @ weight.T + bias).argmax(1), clf.predict(test))


def test_hold_out_is_per_class_disjoint_from_training_images_and_seeded():
    """min(k, available) per class, never a training image, the same for the same seed."""
    labels = np.array([0] * 6 + [1] * 3 + [2] * 5)
    excluded = [0, 1, 6, 7, 9]
    chosen = hold_out_per_class(labels, excluded, per_class=2, seed=1)
    assert not set(chosen) & set(excluded)
    assert np.bincount(labels[chosen]).tolist() == [2, 1, 2]
    assert np.array_equal(chosen, hold_out_per_class(labels, excluded, 2, seed=1))
    draws = {tuple(hold_out_per_class(labels, excluded, 2, seed=s)) for s in range(10)}
    assert len(draws) > 1


class Item:
    def __init__(self, impath, label):
        self.impath, self.label = impath, label


@pytest.fixture
def images(tmp_path):
    paths = []
    for index in range(3):
        path = tmp_path / f"image_{index}.jpg"
        path.write_bytes(bytes([index]) * 10)
        paths.append(Item(str(path), index % 2))
    return paths


def key_for(items, **changes) -> FeatureKey:
    fields = dict(
        backbone_sha256="a" * 64, precision="fp32", device="cpu", dataset="Caltech101",
        split="train", images_sha256=image_list_sha256(items), image_count=len(items),
        transform="Compose(Resize(224))",
    )  # fmt: skip
    fields.update(changes)
    return FeatureKey(**fields)


def test_cache_returns_what_was_extracted_and_extracts_only_on_a_miss(tmp_path, images):
    """First call extracts and stores; the second reads the same tensors without extracting."""
    cache = FeatureCache(tmp_path / "cache")
    calls = []

    def extract():
        calls.append(1)
        return torch.arange(6.0).view(3, 2)

    first = cache.get_or_extract(key_for(images), images, extract)
    second = cache.get_or_extract(key_for(images), images, extract)
    assert len(calls) == 1
    assert torch.equal(first.features, second.features) and second.labels.tolist() == [0, 1, 0]
    assert second.impaths == [item.impath for item in images]


@pytest.mark.parametrize(
    "change",
    [
        {"backbone_sha256": "b" * 64},
        {"precision": "fp16"},
        {"device": "cuda"},
        {"split": "val"},
        {"transform": "Compose(Resize(224, interpolation=bilinear))"},
    ],
)
def test_any_changed_input_is_another_entry(tmp_path, images, change):
    """Backbone content, precision, device, split or transform changed: another file, a miss."""
    cache = FeatureCache(tmp_path)
    cache.store(key_for(images), SplitFeatures(torch.zeros(3, 2), torch.zeros(3), []))
    changed = key_for(images, **change)
    assert cache.path(changed) != cache.path(key_for(images))
    assert cache.load(changed, images) is None


def test_a_rewritten_image_or_relabelled_list_changes_the_image_key(images):
    """An image file rewritten (size/mtime) or a label changed gives another image digest."""
    before = image_list_sha256(images)
    relabelled = [Item(images[0].impath, 1), *images[1:]]
    assert image_list_sha256(relabelled) != before
    with open(images[2].impath, "ab") as file:
        file.write(b"more")
    assert image_list_sha256(images) != before


def test_an_unreadable_or_foreign_entry_is_a_miss_and_is_replaced(tmp_path, images):
    """A truncated file, or one holding another key, is re-extracted and overwritten."""
    cache = FeatureCache(tmp_path)
    key = key_for(images)
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_bytes(b"not a torch file")
    entry = cache.get_or_extract(key, images, lambda: torch.ones(3, 2))
    assert torch.equal(entry.features, torch.ones(3, 2))
    assert cache.load(key, images) is not None
    other = key_for(images, dataset="DescribableTextures")
    torch.save({"key": other.as_dict()}, cache.path(key))  # a file under the wrong name
    assert cache.load(key, images) is None
