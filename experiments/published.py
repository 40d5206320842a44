"""Published numbers beside ours: the papers' accuracies, as data, matched to the tables' cells.

Every ``*.csv`` under ``experiments/published/`` (and under each folder of the environment
variable ``PROGRAD_PUBLISHED``, ``:``-separated) holds rows of

    method, dataset, protocol, backbone, shots, base, new, h, accuracy, source

method: a table row (``CoOp``, ``ProGrad``, ``ZeroshotCLIP``...); dataset: a ``configs/datasets``
name, a Dassl registry name (``OxfordFlowers``) or ``Average``; protocol: ``base2new``,
``fewshot`` or ``xd`` (the transfer targets); backbone: the CLIP model as the comparison tables
name it (``vit_b16``, ``rn50``); shots: per class (0 for zero-shot CLIP); base, new, h: the
base-to-new accuracies (%), accuracy: that of the other protocols (leave the others empty);
source: where the number comes from. See ``experiments/published/README.md``.

:func:`published_tables` gives, for each (method, config, shots) of ours that published rows
match, our mean, the published value and mean − published; a difference outside ±2 std of our
seeds (±1 point with one seed) is marked ``*``.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from experiments import catalog
from experiments.declarations import FEWSHOT

FOLDER = Path(__file__).resolve().parent / "published"
ENVIRONMENT = "PROGRAD_PUBLISHED"
AVERAGE = "Average"
COLUMNS = ("method", "dataset", "protocol", "backbone", "shots", "base", "new", "h", "accuracy")
# The published protocol names, as the tables' Setting.protocol names them.
TABLE_PROTOCOLS = {"base2new": "base2new", "fewshot": "fewshot", "xd": "transfer"}
ONE_SEED_TOLERANCE = 1.0  # points: the mark's threshold when a cell has one seed


@dataclass(frozen=True)
class Published:
    """One published accuracy: a cell (method, dataset, protocol, backbone, shots) and a split."""

    method: str
    dataset: str  # configs/datasets name, or "Average"
    protocol: str  # the tables' protocol: base2new, fewshot or transfer
    backbone: str
    shots: int
    split: str  # base, new, h (base-to-new) or all
    value: float
    source: str


def _dataset_name(name: str) -> str | None:
    if name == AVERAGE or name in catalog.datasets():
        return name
    declared = catalog.dataset_by_registry_name(name)
    return None if declared is None else declared.name


def read_published(path: Path, problems: list[str] | None = None) -> list[Published]:
    """The rows of one published-numbers CSV; a row that cannot be read is skipped, and said.

    Raises:
        ValueError: the file lacks one of the columns (naming them and the file).
    """
    problems = [] if problems is None else problems
    numbers = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"published numbers {path} lack the column(s) {', '.join(missing)}; its header "
                f"must be {','.join(COLUMNS)},source (see experiments/published/README.md)"
            )
        for line, row in enumerate(reader, start=2):
            dataset = _dataset_name(row["dataset"])
            protocol = TABLE_PROTOCOLS.get(row["protocol"])
            if dataset is None or protocol is None or not row["shots"].isdigit():
                problems.append(
                    f"{path}:{line}: unknown dataset {row['dataset']!r}, protocol "
                    f"{row['protocol']!r} or shots {row['shots']!r}; row ignored"
                )
                continue
            splits = ("base", "new", "h") if protocol == "base2new" else ("accuracy",)
            for split in splits:
                if not (row[split] or "").strip():
                    continue
                try:
                    value = float(row[split])
                except ValueError:
                    problems.append(f"{path}:{line}: {split} {row[split]!r} is not a number")
                    continue
                numbers.append(
                    Published(
                        row["method"],
                        dataset,
                        protocol,
                        row["backbone"],
                        int(row["shots"]),
                        "all" if split == "accuracy" else split,
                        value,
                        row.get("source") or "",
                    )  # fmt: skip
                )
    return numbers


def published_numbers(
    environ: dict[str, str] | None = None, problems: list[str] | None = None
) -> list[Published]:
    """Every published number: the shipped files, then those of ``PROGRAD_PUBLISHED``."""
    environ = dict(os.environ if environ is None else environ)
    folders = [FOLDER] + [Path(p) for p in environ.get(ENVIRONMENT, "").split(":") if p]
    numbers = []
    for folder in folders:
        for path in sorted(folder.glob("*.csv")):
            numbers += read_published(path, problems)
    return numbers


def _difference(ours: float, published: float, spread: float | None, seeds: int) -> str:
    """``+1.23`` (mean − published), marked ``*`` outside ±2 std (±1 point with one seed)."""
    delta = ours - published
    tolerance = ONE_SEED_TOLERANCE if seeds <= 1 or spread is None else 2 * spread
    return f"{delta:+.2f}{' *' if abs(delta) > tolerance else ''}"


def published_tables(stats: dict, numbers: Iterable[Published] | None = None) -> list:
    """One table per (protocol, method, config, shots) of ours that published numbers match:
    a row per matched dataset (and the average), per split: ours, published, difference.

    A cell matches a published number when its method, dataset, protocol and shots are the
    same and its config's CLIP model (``vit_b16_c4_ep10_batch1_ctxv1`` -> ``vit_b16``) is the
    published backbone; runs with non-default settings (ablations) are not compared. Base-to-new
    H is ours from the seed means; its spread is the mean of the base and new stds, and an
    average's the mean of its cells' (see ``docs/sweeps.md``).
    """
    from experiments import results

    if numbers is None:
        problems: list[str] = []
        numbers = published_numbers(problems=problems)
        for problem in problems:
            print(f"note: published numbers: {problem}", file=sys.stderr)
    by_cell: dict[tuple, dict[tuple[str, str], Published]] = defaultdict(dict)
    for number in numbers:
        key = (number.protocol, number.method, number.backbone, number.shots)
        by_cell[key][(number.dataset, number.split)] = number
    ours: dict[tuple, dict[tuple[str, str], object]] = defaultdict(dict)
    for setting, stat in stats.items():
        if not results.is_default_variant(setting.trainer, setting.variant):
            continue
        arch = results.architecture(setting.backbone)
        key = (setting.protocol, setting.trainer, arch, setting.shots)
        if key in by_cell:
            ours[(*key, setting.backbone)][(setting.dataset, setting.split)] = stat
    tables = []
    for (protocol, method, arch, shots, backbone), cells in sorted(ours.items()):
        published = by_cell[(protocol, method, arch, shots)]
        splits = ("base", "new", "h") if protocol == "base2new" else ("all",)
        datasets = results._dataset_order({d for d, _ in cells})
        # An average is compared only over the whole benchmark, as the papers average it.
        benchmark = list(catalog.datasets_in(FEWSHOT))
        whole = set(benchmark) <= {d for d, _ in cells} and protocol != "transfer"
        values = {split: _ours(cells, datasets, split, whole and benchmark) for split in splits}
        rows = []
        for dataset in [*datasets, AVERAGE]:
            if not any((dataset, split) in published for split in splits):
                continue
            row = [results.display(dataset) if dataset != AVERAGE else AVERAGE]
            for split in splits:
                mine = values[split].get(dataset)
                number = published.get((dataset, split))
                row += _columns(mine, number)
            rows.append(row)
        if not rows:
            continue
        headers = ["Dataset"]
        for split in splits:
            name = {"base": "Base", "new": "New", "h": "H", "all": "Acc."}[split]
            headers += [name, f"{name} (published)", f"{name} Δ"]
        label = results.comparison_label(method, backbone, "", arch)
        sources = sorted({n.source for n in published.values() if n.source})
        tables.append(
            results.Table(
                results._slug("published", protocol, method, backbone, f"{shots}shots"),
                f"Ours vs published ({protocol}), {label}, {shots} shots; Δ = ours − published, "
                f"* outside ±2 std of our seeds (±1 point with one seed). Sources: "
                f"{'; '.join(sources) or 'not given'}",
                headers,
                rows,
            )
        )
    return tables


def _ours(
    cells: dict, datasets: list[str], split: str, average_over: list[str] | bool = False
) -> dict[str, tuple[float, float, int]]:
    """{dataset (and Average, over ``average_over`` when all are there): (mean, spread, seeds)}
    of one split; H from base and new."""
    from experiments import results

    values: dict[str, tuple[float, float, int]] = {}
    for dataset in datasets:
        if split == "h":
            base, new = cells.get((dataset, "base")), cells.get((dataset, "new"))
            if base is None or new is None:
                continue
            seeds = min(len(base.seeds), len(new.seeds))
            mean = results.harmonic_mean(base.mean, new.mean)
            values[dataset] = (mean, (base.std + new.std) / 2, seeds)
        elif (stat := cells.get((dataset, split))) is not None:
            values[dataset] = (stat.mean, stat.std, len(stat.seeds))
    if not average_over:
        return values
    if split == "h":
        bases = _ours(cells, average_over, "base")
        news = _ours(cells, average_over, "new")
        if len(bases) == len(news) == len(average_over):
            base = sum(v[0] for v in bases.values()) / len(bases)
            new = sum(v[0] for v in news.values()) / len(news)
            spread = sum(v[1] for v in [*bases.values(), *news.values()]) / (2 * len(bases))
            seeds = min(v[2] for v in [*bases.values(), *news.values()])
            values[AVERAGE] = (results.harmonic_mean(base, new), spread, seeds)
    elif all(d in values for d in average_over):
        present = [values[d] for d in average_over]
        values[AVERAGE] = (
            sum(v[0] for v in present) / len(present),
            sum(v[1] for v in present) / len(present),
            min(v[2] for v in present),
        )
    return values


def _columns(mine: tuple[float, float, int] | None, number: Published | None) -> list[str]:
    from experiments.results import MISSING

    ours = MISSING if mine is None else f"{mine[0]:.2f}"
    if number is None:
        return [ours, MISSING, MISSING]
    if mine is None:
        return [ours, f"{number.value:.2f}", MISSING]
    return [ours, f"{number.value:.2f}", _difference(mine[0], number.value, mine[1], mine[2])]
