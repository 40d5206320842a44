"""Linear-probe CLIP's math: scikit-learn logistic regression and the search for its C.

No config, no Dassl, no CLIP: features in, classifier out. The protocol is CoOp's
(KaiyangZhou/CoOp, lpclip/linear_probe.py), which implements the CLIP paper's (Radford et al.,
2021, appendix A.3): L2-regularised multinomial logistic regression (L-BFGS, 1000 iterations),
its inverse regularisation strength C chosen on the few-shot validation split by

1. a grid: C in 1e6, 1e4, ..., 1e-6; the first best validation accuracy gives C_peak;
2. `steps` rounds of a search in log space on [C_peak / 10, C_peak · 10]: fit at both ends; the
   better end (the left one on a tie) is the round's choice, and the interval shrinks to the half
   (in log10) on that side.

The classifier of the last round's choice is the result.

Shape glossary:
    N    images (rows of a feature matrix)
    D    feature width (CLIP's embed_dim)
    C    classes
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

INITIAL_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
SEARCH_STEPS = 8  # lpclip's --num_step
MAX_ITER = 1000


class SearchRound(NamedTuple):
    """One round of the search: the interval's ends, their validation accuracies, the choice."""

    left: float
    right: float
    left_accuracy: float
    right_accuracy: float
    chosen: float


class CSearch(NamedTuple):
    """Result of :func:`search_regularisation`."""

    C: float  # the chosen inverse regularisation strength
    accuracy: float  # its validation accuracy
    grid: list[tuple[float, float]]  # (C, validation accuracy) of the initial grid
    rounds: list[SearchRound]


def search_regularisation(
    validation_accuracy: Callable[[float], float],
    steps: int = SEARCH_STEPS,
    grid: Sequence[float] = INITIAL_GRID,
) -> CSearch:
    """The C search of CoOp's lpclip/linear_probe.py, on any accuracy function of C.

    The interval arithmetic is theirs, operation for operation (log10 of the ends, their mean,
    10**x), so the same accuracies give the same C.

    Args:
        validation_accuracy: C -> accuracy on the validation split of a classifier fitted with C.
        steps: rounds of the search after the grid (0: the grid's best C).
        grid: the initial values of C, in the order ties are broken (first best wins).
    """
    if steps < 0:
        raise ValueError(f"the number of search steps must be >= 0, got {steps}")
    grid_accuracies = [(c, validation_accuracy(c)) for c in grid]
    peak = grid[int(np.argmax([accuracy for _, accuracy in grid_accuracies]))]
    chosen, chosen_accuracy = peak, dict(grid_accuracies)[peak]
    left, right = 1e-1 * peak, 1e1 * peak
    rounds = []
    for _ in range(steps):
        left_accuracy, right_accuracy = validation_accuracy(left), validation_accuracy(right)
        if left_accuracy < right_accuracy:
            chosen, chosen_accuracy = right, right_accuracy
            next_left = 0.5 * (np.log10(right) + np.log10(left))
            next_right = np.log10(right)
        else:
            chosen, chosen_accuracy = left, left_accuracy
            next_right = 0.5 * (np.log10(right) + np.log10(left))
            next_left = np.log10(left)
        rounds.append(SearchRound(left, right, left_accuracy, right_accuracy, chosen))
        left, right = float(np.power(10, next_left)), float(np.power(10, next_right))
    return CSearch(float(chosen), float(chosen_accuracy), grid_accuracies, rounds)


def fit_logistic_regression(
    features: np.ndarray, labels: np.ndarray, C: float, max_iter: int = MAX_ITER
) -> LogisticRegression:
    """L2-regularised multinomial logistic regression with L-BFGS (lpclip's settings).

    Args:
        features: (N, D) image features.
        labels: (N,) class indices.
        C: inverse regularisation strength.
        max_iter: L-BFGS iterations.
    """
    classifier = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs")
    with warnings.catch_warnings():
        # lpclip fits extreme C (1e6) too: not converging there is part of the protocol.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return classifier.fit(np.asarray(features, dtype=np.float64), labels)


def accuracy(classifier: LogisticRegression, features: np.ndarray, labels: np.ndarray) -> float:
    """Share of `labels` predicted, as lpclip computes it: sum(pred == label) / len(label)."""
    predictions = classifier.predict(np.asarray(features, dtype=np.float64))
    return sum(predictions == labels) / len(labels)


class LinearProbe(NamedTuple):
    """The fitted probe as a linear layer: logits = features @ weight.T + bias."""

    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)
    search: CSearch


def fit_linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    steps: int = SEARCH_STEPS,
    max_iter: int = MAX_ITER,
) -> LinearProbe:
    """Search C on the validation split, then return the classifier of the chosen C.

    Each C is fitted once (L-BFGS is deterministic, so a refit would give the same classifier).

    Args:
        train_features, train_labels: (N, D) and (N,) of the few-shot training images.
        val_features, val_labels: (N_val, D) and (N_val,) of the validation images.
        num_classes: C; classes absent from the training images get a bias of -inf.
        steps: rounds of the C search after the grid.
        max_iter: L-BFGS iterations per fit.
    """
    fitted: dict[float, LogisticRegression] = {}

    def validation_accuracy(c: float) -> float:
        if c not in fitted:
            fitted[c] = fit_logistic_regression(train_features, train_labels, c, max_iter)
        return accuracy(fitted[c], val_features, val_labels)

    search = search_regularisation(validation_accuracy, steps)
    weight, bias = linear_layer(fitted[search.C], num_classes)
    return LinearProbe(weight, bias, search)


def linear_layer(classifier: LogisticRegression, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight (C, D), bias (C,)) whose argmax over features @ weight.T + bias is `predict`.

    Multinomial: one row per class seen in training. Binary (sklearn keeps one row w for class 1):
    class 0 gets the zero row, so that the logit difference is w·x + b as in sklearn (a tie goes
    to class 0 in both). Classes never seen in training can never be predicted: bias -inf.
    """
    coef, intercept = classifier.coef_, classifier.intercept_
    if len(classifier.classes_) == 2:
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    weight = np.zeros((num_classes, coef.shape[1]))
    bias = np.full(num_classes, -np.inf)
    rows = np.asarray(classifier.classes_, dtype=np.int64)
    if rows.min() < 0 or rows.max() >= num_classes:
        raise ValueError(f"labels {rows.tolist()} do not lie in [0, {num_classes})")
    weight[rows], bias[rows] = coef, intercept
    return weight, bias


def hold_out_per_class(
    labels: np.ndarray, excluded: Sequence[int], per_class: int, seed: int
) -> np.ndarray:
    """Indices of up to `per_class` items per class, drawn among those not in `excluded`.

    A validation split taken from the training split, for datasets whose own validation split
    is their test split (ImageNet): classes in sorted order, each class's candidates in index
    order, drawn with numpy's RandomState(seed) without replacement (as lpclip draws its shots).

    Args:
        labels: (N,) class index of every item of the full training split.
        excluded: indices that must not be drawn (the few-shot training images).
        per_class: items per class (fewer where a class has fewer candidates).
        seed: the run's seed.
    """
    rng = np.random.RandomState(seed)
    excluded_set = set(int(i) for i in excluded)
    chosen = []
    for label in np.unique(labels):
        candidates = [int(i) for i in np.flatnonzero(labels == label) if int(i) not in excluded_set]
        count = min(per_class, len(candidates))
        if count:
            chosen.extend(rng.choice(candidates, size=count, replace=False).tolist())
    return np.asarray(sorted(chosen), dtype=np.int64)
