"""The paper's ablation rows, read back from an output tree: λ, "always project" and KD's α.

``python tools/sweep.py ablation`` trains them as few-shot runs whose directories carry the
setting (``<variant>_lambda0.5``, ``<variant>_lambda1_vertical_grad``, ``<variant>_alpha0.25``;
the paper's value is the default run, with no suffix). Here each few-shot cell of a method with
λ (or with ``LOSS.ALPHA``) becomes a point of its curve: :func:`ablation_tables` gives one table
per backbone and shot count (a row per λ, "always project" and α; the datasets and their average
as columns) and :func:`plot_lambda` draws accuracy against λ.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from experiments.protocols import (
    ALPHA_KEY,
    DG_TARGETS,
    METHODS,
    Setting,
    default_lambda,
    default_variant,
)

LAMBDA = "λ"
ALWAYS_PROJECT = "always project"
ALPHA = "α"
KINDS = (LAMBDA, ALWAYS_PROJECT, ALPHA)
_SUFFIX = re.compile(r"(?:_lambda([0-9.]+))?(_vertical_grad)?(?:_alpha([0-9.]+))?")


class Point(NamedTuple):
    """Where a few-shot cell sits in the ablation: ("λ" | "always project" | "α", value)."""

    kind: str
    value: float


def ablation_point(setting: Setting) -> Point | None:
    """The ablation point of a few-shot setting, or None when it is none (a method without λ
    or α, another override such as epochs, or another protocol)."""
    method = METHODS.get(setting.trainer)
    if method is None or setting.protocol != "fewshot" or setting.shots <= 0:
        return None
    base = default_variant(setting.trainer)
    if not setting.variant.startswith(base):
        return None
    match = _SUFFIX.fullmatch(setting.variant[len(base) :])
    if match is None:
        return None
    lambda_, vertical, alpha = match.groups()
    if method.has_lambda and alpha is None:
        default = default_lambda(method, "fewshot", setting.dataset, setting.shots)
        value = float(lambda_) if lambda_ else default
        return Point(ALWAYS_PROJECT if vertical else LAMBDA, value)
    alphas = [key.default for key in method.config_keys if key.key == ALPHA_KEY]
    if alphas and lambda_ is None and vertical is None:
        return Point(ALPHA, float(alpha) if alpha else float(alphas[0]))
    return None


def _groups(stats: dict) -> dict[tuple[str, int], dict[tuple[str, Point], dict[str, object]]]:
    """{(backbone, shots): {(trainer, point): {dataset: stat}}} of the few-shot benchmark, for
    the (backbone, shots) that hold an ablation run (a setting other than the paper's)."""
    groups: dict = defaultdict(lambda: defaultdict(dict))
    ablated = set()
    for setting, stat in stats.items():
        if setting.dataset in DG_TARGETS or (point := ablation_point(setting)) is None:
            continue
        groups[(setting.backbone, setting.shots)][(setting.trainer, point)][setting.dataset] = stat
        if setting.variant != default_variant(setting.trainer):
            ablated.add((setting.backbone, setting.shots))
    return {key: rows for key, rows in groups.items() if key in ablated}


def row_label(trainer: str, point: Point) -> str:
    """``ProGrad λ=0.5``, ``ProGrad always project (vertical_grad), λ=1``, ``KD α=0.25``."""
    if point.kind == ALWAYS_PROJECT:
        return f"{trainer} always project (vertical_grad), λ={point.value:g}"
    return f"{trainer} {point.kind}={point.value:g}"


def ablation_tables(stats: dict) -> list:
    """One table per (backbone, shots) holding ablation runs: a row per (method, point), the
    datasets and their average as columns (cells as in the other tables)."""
    from experiments import results

    tables = []
    for (backbone, shots), rows in sorted(_groups(stats).items()):
        datasets = results._dataset_order({d for cells in rows.values() for d in cells})
        ordered = sorted(
            rows,
            key=lambda row: (results._trainer_rank(row[0]), KINDS.index(row[1].kind), row[1]),
        )
        body = []
        for trainer, point in ordered:
            cells = [rows[(trainer, point)].get(dataset) for dataset in datasets]
            body.append(
                [row_label(trainer, point)]
                + [results.format_stat(cell) for cell in cells]
                + [results.format_average([results._mean(cell) for cell in cells])]
            )
        tables.append(
            results.Table(
                results._slug("ablation", backbone, f"{shots}shots"),
                f"Ablation, few-shot accuracy (%), {backbone}, {shots} shots: λ, always "
                f"project, KD's α",
                ["Setting"] + [results.display(d) for d in datasets] + ["Average"],
                body,
            )
        )
    return tables


def plot_lambda(stats: dict, path: Path | str) -> list[str]:
    """Accuracy against λ, one panel per dataset plus their average, a line per (method,
    backbone, shots); "always project" is a cross at its λ. Returns the legend's labels.

    Raises:
        ValueError: there is no few-shot run of a method with λ at two λ values or more.
    """
    from matplotlib.figure import Figure

    from experiments import results

    lines = {}
    for (backbone, shots), rows in sorted(_groups(stats).items()):
        for (trainer, point), cells in rows.items():
            if point.kind in (LAMBDA, ALWAYS_PROJECT):
                key = (trainer, backbone, shots)
                lines.setdefault(key, defaultdict(dict))[point] = cells
    lines = {
        key: points
        for key, points in lines.items()
        if len({p.value for p in points if p.kind == LAMBDA}) > 1
    }
    if not lines:
        raise ValueError(
            f"no λ curve to plot (few-shot runs of a method with λ at two λ values or more), so "
            f"{str(path)!r} was not written; run python tools/sweep.py ablation first."
        )
    datasets = results._dataset_order(
        {d for points in lines.values() for cells in points.values() for d in cells}
    )
    panels = ["Average", *datasets]
    columns = min(4, len(panels))
    figure = Figure(figsize=(4 * columns, 3.2 * math.ceil(len(panels) / columns)))
    axes = figure.subplots(math.ceil(len(panels) / columns), columns, squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    labels = []
    for index, ((trainer, backbone, shots), points) in enumerate(sorted(lines.items())):
        colour = f"C{index % 10}"
        label = f"{trainer} ({backbone}, {shots} shots)"
        labels.append(label)
        shared = [d for d in datasets if all(d in cells for cells in points.values())]
        for axis, panel in zip(axes.flat, panels, strict=False):
            curve, crosses = [], []
            for point in sorted(points):
                cells = points[point]
                if panel == "Average":
                    if not shared:
                        continue
                    y = statistics.fmean(cells[d].mean for d in shared)
                elif panel in cells:
                    y = cells[panel].mean
                else:
                    continue
                (crosses if point.kind == ALWAYS_PROJECT else curve).append((point.value, y))
            if curve:
                xs, ys = zip(*curve, strict=True)
                axis.plot(xs, ys, marker="o", color=colour, label=label)
            if crosses:
                xs, ys = zip(*crosses, strict=True)
                axis.plot(xs, ys, marker="x", markersize=10, linestyle="none", color=colour)
            title = f"Average of {len(shared)} datasets" if panel == "Average" else panel
            axis.set_title(title if panel == "Average" else results.display(panel))
            axis.set_xlabel("λ (×: always project)")
            axis.set_ylabel("accuracy (%)")
            axis.grid(alpha=0.3)
    axes.flat[0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return labels
