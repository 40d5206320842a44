"""Accuracies of an output tree written by scripts/, aggregated into the paper's tables.

Run directories are recognised by the tail of their path, so any folder above them may be
given as the root (``seedS`` is absent only for zero-shot runs):

    <dataset>/<trainer>/<cfg>_<K>shots/<variant>/seed<S>           few-shot: main.sh, xd_train.sh
    base2new/<stage>/<dataset>/shots_<K>/<trainer>/<cfg>[_<variant>]/seed<S>
                           stage: train_base, test_base or test_new (base2new_*.sh)
    evaluation/<trainer>/<cfg>_<K>shots/<variant>/<target>/seed<S>  transfer: xd_test.sh
    ZeroshotCLIP/<cfg>/<dataset>                                    zero-shot: zeroshot.sh
    base2new/test_{base,new}/<dataset>/shots_0/ZeroshotCLIP/<cfg>   zero-shot, SUBS=base/new

Configs that differ only in their epochs (``rn50_ep50``, ``rn50``) share a backbone, so a table
may mix the official per-shot configs. The comparison tables (methods side by side) group configs
by the CLIP model their name starts with (``vit_b16_c4_ep10_batch1_ctxv1`` -> ``vit_b16``). The
std is over seeds, numpy's default population std as in CoOp's parse_test_res.py. Averages over
datasets are means of per-dataset means; when some cells are missing they cover the rest and say
so, e.g. ``61.20 (7/10)``.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

# The protocols (datasets, methods, run-directory layouts, finished runs) are defined once, in
# experiments/protocols.py; the names below are re-exported for the tools that import them from
# here.
from experiments import catalog
from experiments.atomic import atomic_file, save_figure, write_text
from experiments.protocols import (  # noqa: F401
    DEFAULT_VARIANT,
    DG_TARGETS,
    FEWSHOT_DATASETS,
    METHODS,
    SOURCE_DATASET,
    XD_TARGETS,
    ZERO_SHOT,
    Setting,
    backbone_of,
    classify,
    is_default_variant,
    log_files,
    newest_complete_log,
    parse_log,
)
from experiments.run_record import classify_record, read_record

# Rows of the tables and lines of the plot: the declared methods in their row order (the paper's),
# other methods after them, alphabetically. Columns: the declared datasets in their column order.
TRAINER_ORDER = tuple(METHODS)
MISSING = "–"


@dataclass(frozen=True)
class Run:
    """One finished run: a seed of a setting."""

    setting: Setting
    seed: int | None
    accuracy: float
    log: Path
    from_training: bool  # base accuracy read from the train_base log, not a test_base one


@dataclass(frozen=True)
class Stat:
    """Accuracy over the seeds of one setting."""

    mean: float
    std: float
    seeds: tuple[int | None, ...]


@dataclass
class Collection:
    """Everything found under an output root."""

    runs: list[Run]
    problems: list[str]  # incomplete, unrecognised or duplicate runs, for the user to check


@dataclass
class Table:
    """A rendered table: cells are already formatted strings."""

    name: str  # file stem for its CSV
    title: str
    headers: list[str]
    rows: list[list[str]]


def collect_runs(root: Path | str) -> Collection:
    """Finds every run under ``root`` and reads the accuracy of its newest complete log.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"output directory {str(root)!r} does not exist or is not a directory; pass the root "
            "the run scripts wrote to (their OUTPUT, by default 'output')."
        )
    problems: list[str] = []
    chosen: dict[tuple[Setting, int | None], Run] = {}
    run_dirs = sorted({log.parent for log in root.rglob("log.txt*") if log.is_file()})
    for run_dir in run_dirs:
        located = classify(run_dir.resolve().parts)
        # run.json says what the run is; trees without it (CoOp's, the official ProGrad code's,
        # earlier versions of this one) are read from their layout. The variant (prompt settings)
        # is not in the record: it still comes from the path.
        record = read_record(run_dir, problems)
        if record is not None:
            fields, seed, trains = classify_record(record, located[0].variant if located else "")
            located = (Setting(*fields), seed, trains)
        if located is None:
            problems.append(f"unrecognised layout, ignored: {run_dir}")
            continue
        setting, seed, expect_training = located
        found = newest_complete_log(run_dir, expect_training)
        if found is None:
            problems.append(f"no complete log (unfinished run), shown as missing: {run_dir}")
            continue
        run = Run(setting, seed, found[1], found[0], expect_training)
        key = (setting, seed)
        previous = chosen.get(key)
        if previous is None or _preferred(run, previous, problems):
            chosen[key] = run
    return Collection(list(chosen.values()), problems)


def _preferred(run: Run, previous: Run, problems: list[str]) -> bool:
    """Whether ``run`` replaces ``previous`` for the same setting and seed."""
    # A test_base evaluation is the base accuracy; the train_base log's own final test is the
    # same model, used only when the evaluation was not run.
    if run.from_training != previous.from_training:
        return not run.from_training
    newer = run.log.stat().st_mtime > previous.log.stat().st_mtime
    kept = run if newer else previous
    problems.append(
        f"two runs of the same setting and seed: {previous.log.parent} and {run.log.parent}; "
        f"using the newer {kept.log}"
    )
    return newer


def aggregate(runs: Iterable[Run]) -> dict[Setting, Stat]:
    """Mean and population std of the accuracy over the seeds of each setting."""
    by_setting: dict[Setting, list[Run]] = defaultdict(list)
    for run in runs:
        by_setting[run.setting].append(run)
    stats = {}
    for setting, group in by_setting.items():
        group.sort(key=lambda run: -1 if run.seed is None else run.seed)
        accuracies = [run.accuracy for run in group]
        stats[setting] = Stat(
            statistics.fmean(accuracies),
            statistics.pstdev(accuracies),
            tuple(run.seed for run in group),
        )
    return stats


def harmonic_mean(base: float, new: float) -> float:
    """Harmonic mean of base and new accuracy, the base-to-new summary (CoCoOp)."""
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)


def format_stat(stat: Stat | None) -> str:
    """``mean ± std`` over seeds, just ``mean`` for one seed, ``–`` when missing."""
    if stat is None:
        return MISSING
    if len(stat.seeds) == 1:
        return f"{stat.mean:.2f}"
    return f"{stat.mean:.2f} ± {stat.std:.2f}"


def _average(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.fmean(present) if present else None


def format_average(values: Sequence[float | None]) -> str:
    """Mean of the present values, with ``(k/n)`` when only k of the n are present."""
    average = _average(values)
    if average is None:
        return MISSING
    present = sum(value is not None for value in values)
    coverage = "" if present == len(values) else f" ({present}/{len(values)})"
    return f"{average:.2f}{coverage}"


def _mean(stat: Stat | None) -> float | None:
    return None if stat is None else stat.mean


def _dataset_order(datasets: Iterable[str]) -> list[str]:
    return catalog.dataset_order(datasets)


def _trainer_rank(trainer: str) -> tuple[int, str]:
    order = TRAINER_ORDER.index(trainer) if trainer in TRAINER_ORDER else len(TRAINER_ORDER)
    return (order, trainer)


def display(dataset: str) -> str:
    """Dataset name as in the paper's tables (its declaration's display name)."""
    return catalog.display_name(dataset)


def method_label(trainer: str, variant: str) -> str:
    """Method name, with its variant when it is not the method's paper default."""
    return trainer if is_default_variant(trainer, variant) else f"{trainer} [{variant}]"


def _non_default(trainer: str, variant: str) -> str:
    return "" if is_default_variant(trainer, variant) else variant


def _slug(*parts: object) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", "_".join(str(part) for part in parts if part)).lower()


def fewshot_tables(stats: dict[Setting, Stat]) -> list[Table]:
    """Dataset × shots table per (trainer, backbone, variant), with average row and column."""
    fewshot = {s: stat for s, stat in stats.items() if s.protocol == "fewshot" and s.shots > 0}
    datasets = _dataset_order(s.dataset for s in fewshot)
    shots = sorted({s.shots for s in fewshot})
    methods = sorted(
        {(s.trainer, s.backbone, s.variant) for s in fewshot},
        key=lambda m: (m[1], _trainer_rank(m[0]), m[2]),
    )
    tables = []
    for trainer, backbone, variant in methods:
        grid = [
            [
                fewshot.get(Setting("fewshot", trainer, backbone, variant, k, dataset, "all"))
                for k in shots
            ]
            for dataset in datasets
        ]
        rows = [
            [display(dataset)]
            + [format_stat(stat) for stat in cells]
            + [format_average([_mean(stat) for stat in cells])]
            for dataset, cells in zip(datasets, grid, strict=True)
        ]
        columns = [[_mean(row[i]) for row in grid] for i in range(len(shots))]
        rows.append(
            ["Average"]
            + [format_average(column) for column in columns]
            + [format_average([_mean(stat) for row in grid for stat in row])]
        )
        tables.append(
            Table(
                _slug("fewshot", trainer, backbone, _non_default(trainer, variant)),
                f"Few-shot accuracy (%): {method_label(trainer, variant)}, {backbone}",
                ["Dataset"] + [f"{k} shot{'s' if k > 1 else ''}" for k in shots] + ["Average"],
                rows,
            )
        )
    return tables


def zeroshot_table(stats: dict[Setting, Stat]) -> Table | None:
    """Zero-shot CLIP accuracy per dataset and backbone, or None when there is none."""
    zeroshot = {
        s: stat for s, stat in stats.items() if s.protocol == "fewshot" and s.trainer == ZERO_SHOT
    }
    if not zeroshot:
        return None
    datasets = _dataset_order(s.dataset for s in zeroshot)
    backbones = sorted({s.backbone for s in zeroshot})
    grid = [
        [
            zeroshot.get(Setting("fewshot", ZERO_SHOT, backbone, "", 0, dataset, "all"))
            for backbone in backbones
        ]
        for dataset in datasets
    ]
    rows = [
        [display(dataset)] + [format_stat(stat) for stat in cells]
        for dataset, cells in zip(datasets, grid, strict=True)
    ]
    # The few-shot benchmark's average leaves out the ImageNet variants (transfer targets).
    benchmark = [i for i, dataset in enumerate(datasets) if dataset not in DG_TARGETS]
    rows.append(
        ["Average"]
        + [format_average([_mean(grid[i][j]) for i in benchmark]) for j in range(len(backbones))]
    )
    return Table("zeroshot_clip", "Zero-shot CLIP accuracy (%)", ["Dataset"] + backbones, rows)


def base2new_tables(stats: dict[Setting, Stat]) -> list[Table]:
    """Base / new / harmonic mean per dataset, per (trainer, backbone, variant, shots)."""
    b2n = {s: stat for s, stat in stats.items() if s.protocol == "base2new"}
    datasets = _dataset_order(s.dataset for s in b2n)
    methods = sorted(
        {(s.trainer, s.backbone, s.variant, s.shots) for s in b2n},
        key=lambda m: (m[1], m[3] != 0, m[3], _trainer_rank(m[0]), m[2]),
    )
    tables = []
    for trainer, backbone, variant, shots in methods:
        rows, bases, news = [], [], []
        for dataset in datasets:
            base, new = (
                b2n.get(Setting("base2new", trainer, backbone, variant, shots, dataset, split))
                for split in ("base", "new")
            )
            bases.append(_mean(base))
            news.append(_mean(new))
            both = base is not None and new is not None
            hm = f"{harmonic_mean(base.mean, new.mean):.2f}" if both else MISSING
            rows.append([display(dataset), format_stat(base), format_stat(new), hm])
        average_base, average_new = _average(bases), _average(news)
        hm = MISSING
        if average_base is not None and average_new is not None:
            hm = f"{harmonic_mean(average_base, average_new):.2f}"
            if None in bases or None in news:
                hm += " (partial)"
        rows.append(["Average", format_average(bases), format_average(news), hm])
        tables.append(
            Table(
                _slug("base2new", trainer, backbone, variant, f"{shots}shots"),
                f"Base-to-new accuracy (%): {method_label(trainer, variant)}, {backbone}, "
                f"{shots} shots",
                ["Dataset", "Base", "New", "H"],
                rows,
            )
        )
    return tables


def transfer_tables(stats: dict[Setting, Stat]) -> list[Table]:
    """Domain generalisation and cross-dataset tables: ImageNet source, then the targets."""
    transfer = {s: stat for s, stat in stats.items() if s.protocol == "transfer"}
    fewshot = {s: stat for s, stat in stats.items() if s.protocol == "fewshot"}
    tables = []
    for name, title, targets in (
        ("domain_generalization", "Domain generalisation accuracy (%)", DG_TARGETS),
        ("cross_dataset", "Cross-dataset transfer accuracy (%)", XD_TARGETS),
    ):
        methods = {
            (s.trainer, s.backbone, s.variant, s.shots) for s in transfer if s.dataset in targets
        }
        if not methods:
            continue
        zeroshot_backbones = {
            s.backbone for s in fewshot if s.trainer == ZERO_SHOT and s.dataset in targets
        }
        methods |= {(ZERO_SHOT, backbone, "", 0) for backbone in zeroshot_backbones}
        rows = []
        for trainer, backbone, variant, shots in sorted(
            methods, key=lambda m: (m[1], _trainer_rank(m[0]), m[3], m[2])
        ):
            source = fewshot.get(
                Setting("fewshot", trainer, backbone, variant, shots, SOURCE_DATASET, "all")
            )
            protocol = "fewshot" if trainer == ZERO_SHOT else "transfer"
            cells = [
                stats.get(Setting(protocol, trainer, backbone, variant, shots, target, "all"))
                for target in targets
            ]
            rows.append(
                [method_label(trainer, variant), backbone, shots, format_stat(source)]
                + [format_stat(cell) for cell in cells]
                + [format_average([_mean(cell) for cell in cells])]
            )
        headers = (
            ["Method", "Backbone", "Shots", "ImageNet (source)"]
            + [display(target) for target in targets]
            + ["Average (targets)"]
        )
        tables.append(Table(name, title, headers, rows))
    return tables


_ARCHITECTURE = re.compile(r"(rn50x\d+|rn\d+|vit_[a-z]\d+|tiny)(?=_|$)")


def architecture(backbone: str) -> str:
    """The CLIP model a config name starts with: ``vit_b16_c4_batch1_ctxv1`` -> ``vit_b16``
    (the whole name when it starts with none of them)."""
    name, bracket, identity = backbone.partition(" [")  # " [<file identity>]": see run_record
    match = _ARCHITECTURE.match(name)
    return (match.group(1) if match else name) + bracket + identity


def _comparisons(settings: Iterable[Setting]) -> list[tuple[str, int, list[str], list[tuple]]]:
    """(architecture, shots, datasets, methods) of each comparison table of one protocol.

    One table per CLIP architecture and shot count, so that methods whose configs carry their
    own settings (CoCoOp's vit_b16_c4_ep10_batch1_ctxv1, KgCoOp's vit_b16_ep100_ctxv1) sit
    beside CoOp's and ProGrad's vit_b16. Its methods are (trainer, backbone, variant, shots) in
    the paper's order, zero-shot CLIP of the architecture (shots 0) among them.
    """
    settings = list(settings)
    comparisons = []
    for arch, shots in sorted(
        {(architecture(s.backbone), s.shots) for s in settings if s.shots > 0}
    ):
        here = [s for s in settings if architecture(s.backbone) == arch and s.shots in (0, shots)]
        methods = {
            (s.trainer, s.backbone, s.variant, s.shots)
            for s in here
            if s.shots == shots or s.trainer == ZERO_SHOT
        }
        comparisons.append(
            (
                arch,
                shots,
                _dataset_order(s.dataset for s in here if s.shots == shots),
                sorted(methods, key=lambda m: (_trainer_rank(m[0]), m[1] != arch, m[1], m[2])),
            )
        )
    return comparisons


def comparison_label(trainer: str, backbone: str, variant: str, arch: str) -> str:
    """A comparison table's row name: the method, with its config when that is more than the
    table's architecture (``CoCoOp (vit_b16_c4_batch1_ctxv1)``)."""
    label = method_label(trainer, variant)
    return label if backbone == arch else f"{label} ({backbone})"


def fewshot_comparison_tables(stats: dict[Setting, Stat]) -> list[Table]:
    """The paper's few-shot comparison: methods × datasets with the average, one table per
    backbone and shot count; zero-shot CLIP of that backbone is a row of each."""
    fewshot = {
        s: stat
        for s, stat in stats.items()
        if s.protocol == "fewshot" and s.dataset not in DG_TARGETS
    }
    tables = []
    for arch, shots, datasets, methods in _comparisons(fewshot):
        rows = []
        for trainer, backbone, variant, k in methods:
            cells = [
                fewshot.get(Setting("fewshot", trainer, backbone, variant, k, dataset, "all"))
                for dataset in datasets
            ]
            rows.append(
                [comparison_label(trainer, backbone, variant, arch)]
                + [format_stat(cell) for cell in cells]
                + [format_average([_mean(cell) for cell in cells])]
            )
        tables.append(
            Table(
                _slug("fewshot_comparison", arch, f"{shots}shots"),
                f"Few-shot accuracy (%), {shots} shot{'s' if shots > 1 else ''}, {arch}: "
                f"methods compared",
                ["Method"] + [display(dataset) for dataset in datasets] + ["Average"],
                rows,
            )
        )
    return tables


def base2new_comparison_tables(stats: dict[Setting, Stat]) -> list[Table]:
    """The paper's base-to-new comparison, per backbone and shot count: methods × (base, new, H)
    averaged over the datasets, and methods × datasets of H; zero-shot CLIP is a row of each."""
    b2n = {s: stat for s, stat in stats.items() if s.protocol == "base2new"}
    tables = []
    for arch, shots, datasets, methods in _comparisons(b2n):
        average_rows, h_rows = [], []
        for trainer, backbone, variant, k in methods:
            bases, news, hs = [], [], []
            for dataset in datasets:
                base, new = (
                    _mean(
                        b2n.get(Setting("base2new", trainer, backbone, variant, k, dataset, split))
                    )
                    for split in ("base", "new")
                )
                bases.append(base)
                news.append(new)
                hs.append(None if base is None or new is None else harmonic_mean(base, new))
            average_base, average_new = _average(bases), _average(news)
            average_h = MISSING
            if average_base is not None and average_new is not None:
                average_h = f"{harmonic_mean(average_base, average_new):.2f}"
                if None in bases or None in news:
                    average_h += " (partial)"
            label = comparison_label(trainer, backbone, variant, arch)
            average_rows.append([label, format_average(bases), format_average(news), average_h])
            h_rows.append(
                [label] + [MISSING if h is None else f"{h:.2f}" for h in hs] + [average_h]
            )
        title = f"{arch}, {shots} shots: methods compared"
        tables.append(
            Table(
                _slug("base2new_comparison", arch, f"{shots}shots"),
                f"Base-to-new accuracy (%), average over {len(datasets)} datasets, {title}",
                ["Method", "Base", "New", "H"],
                average_rows,
            )
        )
        tables.append(
            Table(
                _slug("base2new_comparison_h", arch, f"{shots}shots"),
                f"Base-to-new harmonic mean H (%) per dataset, {title}",
                ["Method"] + [display(dataset) for dataset in datasets] + ["Average"],
                h_rows,
            )
        )
    return tables


def build_tables(stats: dict[Setting, Stat]) -> list[Table]:
    """All the paper's tables that the results allow, in the paper's order: per method, then
    the methods compared, for each protocol."""
    zeroshot = zeroshot_table(stats)
    return (
        fewshot_tables(stats)
        + fewshot_comparison_tables(stats)
        + ([zeroshot] if zeroshot else [])
        + base2new_tables(stats)
        + base2new_comparison_tables(stats)
        + transfer_tables(stats)
    )


def render(table: Table, table_format: str = "github") -> str:
    """The table as text, its title above it."""
    body = tabulate(table.rows, headers=table.headers, tablefmt=table_format, disable_numparse=True)
    return f"{table.title}\n\n{body}\n"


def write_markdown(path: Path | str, tables: Sequence[Table], root: Path | str) -> None:
    """All tables in one markdown file."""
    sections = [f"# Results under `{root}`\n"]
    sections += [f"## {render(table)}" for table in tables]
    write_text(path, "\n".join(sections), "the results tables (markdown)")


def write_csvs(
    folder: Path | str, tables: Sequence[Table], stats: dict[Setting, Stat], runs: Sequence[Run]
) -> list[Path]:
    """One CSV per table (formatted cells), plus summary.csv (numbers per setting) and
    runs.csv (one row per seed with its log). Returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        written.append(_write_csv(folder / f"{table.name}.csv", table.headers, table.rows))
    fields = ["protocol", "trainer", "backbone", "variant", "shots", "dataset", "split"]
    summary = [
        [getattr(s, field) for field in fields]
        + [
            f"{stat.mean:.4f}",
            f"{stat.std:.4f}",
            len(stat.seeds),
            " ".join(str(seed) for seed in stat.seeds),
        ]
        for s, stat in sorted(stats.items(), key=lambda item: _setting_key(item[0]))
    ]
    written.append(
        _write_csv(folder / "summary.csv", fields + ["mean", "std", "n_seeds", "seeds"], summary)
    )
    per_seed = [
        [getattr(run.setting, field) for field in fields]
        + ["" if run.seed is None else run.seed, run.accuracy, str(run.log)]
        for run in sorted(runs, key=lambda run: (_setting_key(run.setting), run.seed or 0))
    ]
    written.append(_write_csv(folder / "runs.csv", fields + ["seed", "accuracy", "log"], per_seed))
    return written


def _setting_key(setting: Setting) -> tuple:
    return (
        setting.protocol,
        setting.trainer,
        setting.backbone,
        setting.variant,
        setting.shots,
        setting.dataset,
        setting.split,
    )


def _write_csv(path: Path, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with atomic_file(path, "a results table (CSV)", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        writer.writerows(rows)
    return path


def plot_fewshot(stats: dict[Setting, Stat], path: Path | str) -> list[str]:
    """Accuracy against shots, one panel per dataset plus their average, a line per method.

    Returns the legend's labels: one per method (and backbone), in the tables' method order.

    Zero-shot CLIP is a star at 0 shots with a dashed line across. The average panel covers the
    datasets every plotted method has; a method gets an average point at a shot count only when
    it has all of them there.

    Raises:
        ValueError: there is no few-shot or zero-shot result to plot.
    """
    # Imported here: matplotlib is slow to import and only the figure needs it. A bare Figure
    # renders PNG with Agg and needs no display or pyplot state.
    import matplotlib
    from matplotlib.figure import Figure

    fewshot = {
        s: stat
        for s, stat in stats.items()
        if s.protocol == "fewshot" and s.dataset not in DG_TARGETS
    }
    if not fewshot:
        raise ValueError(
            f"no few-shot or zero-shot results to plot, so {str(path)!r} was not written; run "
            "scripts/<method>/main.sh or scripts/zeroshot.sh first, or drop --plot."
        )
    cell = {
        (s.trainer, s.backbone, s.variant, s.shots, s.dataset): stat for s, stat in fewshot.items()
    }
    datasets = _dataset_order(s.dataset for s in fewshot)
    shots = [0] + sorted({s.shots for s in fewshot if s.shots > 0})
    position = {k: i for i, k in enumerate(shots)}  # even spacing, like the paper's log2 axis
    methods = sorted(
        {(s.trainer, s.backbone, s.variant) for s in fewshot},
        key=lambda m: (m[1], _trainer_rank(m[0]), m[2]),
    )
    # Averages over different dataset sets are not comparable, so use the shared ones only.
    shared = [
        d
        for d in datasets
        if all(any(key[:3] == method and key[4] == d for key in cell) for method in methods)
    ]
    palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {method: palette[i % len(palette)] for i, method in enumerate(methods)}

    panels = (["Average"] if shared else []) + datasets
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    legend: dict[str, object] = {}
    for axis, panel in zip(axes.flat, panels, strict=False):
        for method in methods:
            points = []
            for k in shots if method[0] != ZERO_SHOT else [0]:
                if panel == "Average":
                    cells = [cell.get((*method, k, d)) for d in shared]
                    if all(cells):
                        points.append((position[k], statistics.fmean(c.mean for c in cells), 0.0))
                elif (stat := cell.get((*method, k, panel))) is not None:
                    points.append((position[k], stat.mean, stat.std))
            if not points:
                continue
            xs, ys, errors = zip(*points, strict=True)
            label = f"{method_label(method[0], method[2])} ({method[1]})"
            if method[0] == ZERO_SHOT:
                handle = axis.plot(
                    xs, ys, marker="*", markersize=12, linestyle="none", color=colour[method]
                )[0]
                axis.axhline(ys[0], color=colour[method], linestyle="--", linewidth=1)
            else:
                handle = axis.errorbar(
                    xs, ys, yerr=errors, marker="o", capsize=3, color=colour[method]
                )
            legend.setdefault(label, handle)
        title = f"Average of {len(shared)} datasets" if panel == "Average" else display(panel)
        axis.set_title(title)
        axis.set_xticks(range(len(shots)), [str(k) for k in shots])
        axis.set_xlabel("shots per class")
        axis.set_ylabel("accuracy (%)")
        axis.grid(alpha=0.3)
    axes.flat[0].legend(list(legend.values()), list(legend.keys()), fontsize="small")
    figure.tight_layout()
    save_figure(figure, path, "the few-shot plot", dpi=120)
    return list(legend)
