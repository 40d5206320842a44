"""Check the datasets under DATA before training: layout, split file, images, class list, sizes.

Usage:
    python tools/check_data.py DATA [DATASET ...] [--fast] [--sample 50] [--strict] [--workers 8]

Without DATASET names, every dataset of DATASETS.md whose folder is under DATA is checked;
names may be registry names (Caltech101), config names (caltech101) or folder names
(caltech-101). For each dataset it checks, with the loaders' own code:

- the layout: the dataset folder and the files its loader needs;
- the split: CoOp's ``split_zhou_*.json`` (or the lists / class folders of the datasets without
  one), each entry well formed;
- the class list: one name per label, labels 0..C-1, every class in every split;
- every image a split names: that it exists and opens (``--fast``: all must exist, but only a
  random sample of ``--sample`` images per split is opened);
- the counts against CoOp's published split sizes.

It prints one table (dataset, status, classes and train/val/test found/expected, problems) and,
for each problem, the files concerned and the DATASETS.md section that fixes it. Damage (missing
or unreadable files, a missing split file or class list) exits with 1; counts that differ from
CoOp's are warnings (exit 0, or 1 with ``--strict``). Nothing is written.
"""

from __future__ import annotations

import argparse
import difflib
import os
import random
import sys
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import _root  # noqa: F401  (the repository root on sys.path)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Dassl imports wilds, whose `outdated` dependency asks PyPI for new versions at import time.
os.environ.setdefault("OUTDATED_IGNORE", "1")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

from dassl.data.datasets import DATASET_REGISTRY  # noqa: E402
from tabulate import tabulate  # noqa: E402
from tqdm import tqdm  # noqa: E402

import datasets  # noqa: E402,F401  (registers the datasets)
from datasets.common import Layout, SplitEntries, image_problem, read_split_entries  # noqa: E402
from experiments import catalog  # noqa: E402
from experiments.cli import positive_int  # noqa: E402
from experiments.declarations import SELF_GENERATING  # noqa: E402

SPLITS = ("train", "val", "test")
PROGRESS_FROM = 2000  # images to open from which a progress bar is shown
SHOWN_FILES = 5  # files listed per problem; the rest are counted
CHUNK = 1024  # images handed to the threads at a time


@dataclass
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        damage: True for damage (exit 1), False for a warning.
        message: what is wrong, one line.
        files: the files concerned (all of them; only the first few are printed).
    """

    damage: bool
    message: str
    files: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What was found for one dataset."""

    layout: Layout
    present: bool = True
    classes: int | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.present:
            return "MISSING"
        if any(problem.damage for problem in self.problems):
            return "DAMAGED"
        return "WARNINGS" if self.problems else "OK"

    def add(self, damage: bool, message: str, files: Sequence[str] = ()) -> None:
        self.problems.append(Problem(damage, message, list(files)))


def dataset_classes() -> dict[str, type]:
    """Registry name -> registered class, for every declared dataset of DATASETS.md.

    The declarations (``DATASET`` in ``datasets/<name>.py``) say which datasets there are; the
    self-generating TinyWorld is left out (it writes itself when missing).
    """
    catalog.import_all()  # the repository's dataset modules and those of PROGRAD_PLUGINS
    declared = {
        dataset.layout.name
        for dataset in catalog.datasets().values()
        if SELF_GENERATING not in dataset.groups
    }
    return {
        name: DATASET_REGISTRY.get(name)
        for name in DATASET_REGISTRY.registered_names()
        if name in declared
    }


def resolve_names(requested: Sequence[str], known: dict[str, type]) -> list[str]:
    """Registry names for what the user typed: registry, config or folder names, any case.

    Raises:
        ValueError: for a name that is none of these, with the closest known name.
    """
    aliases: dict[str, str] = {}
    for name, dataset_class in known.items():
        aliases[name.lower()] = name
        aliases[dataset_class.layout.folder.lower()] = name
    for dataset in catalog.datasets().values():  # config names: configs/datasets/<name>.yaml
        if dataset.layout.name in known:
            aliases[dataset.name.lower()] = dataset.layout.name
    resolved = []
    for typed in requested:
        if typed.lower() not in aliases:
            close = difflib.get_close_matches(typed.lower(), list(aliases), n=1, cutoff=0.5)
            hint = f'Did you mean "{aliases[close[0]]}"? ' if close else ""
            raise ValueError(
                f'"{typed}" is not a dataset of DATASETS.md. {hint}Known: {", ".join(known)} '
                f"(config and folder names work too, e.g. caltech101 or caltech-101)."
            )
        if aliases[typed.lower()] not in resolved:
            resolved.append(aliases[typed.lower()])
    return resolved


def read_entries(dataset_class: type, dataset_dir: str) -> SplitEntries:
    """The dataset's full splits, read by its own loader code, without writing anything."""
    reader = getattr(dataset_class, "read_entries", None)
    if reader is not None:
        return reader(dataset_dir)
    layout = dataset_class.layout
    split_file = os.path.join(dataset_dir, layout.split_file)
    return read_split_entries(split_file, layout.image_dir(dataset_dir), layout)


def source_of(layout: Layout, dataset_dir: str) -> str:
    """The file or folder that lists a dataset's images, for messages."""
    if layout.split_file:
        return os.path.join(dataset_dir, layout.split_file)
    return layout.image_dir(dataset_dir)


def check_classes(report: Report, entries: SplitEntries, source: str) -> None:
    """One name per label, labels 0..C-1, every class in every split."""
    names: dict[int, set[str]] = defaultdict(set)
    labels_by_split = {split: set() for split in entries}
    for split, items in entries.items():
        for _, label, classname in items:
            names[label].add(classname)
            labels_by_split[split].add(label)
    report.classes = len(names)
    for label in sorted(names):
        if len(names[label]) > 1:
            report.add(True, f"label {label} has several class names in {source}: "
                       f"{', '.join(sorted(names[label]))}")  # fmt: skip
    if names and sorted(names) != list(range(len(names))):
        absent = sorted(set(range(max(names) + 1)) - set(names))
        report.add(True, f"the labels in {source} are not 0..{len(names) - 1}: labels "
                   f"{', '.join(map(str, absent[:10]))} have no image")  # fmt: skip
    for split, labels in labels_by_split.items():
        lacking = sorted(set(names) - labels)
        if lacking:
            shown = ", ".join(sorted(next(iter(names[label])) for label in lacking[:5]))
            report.add(True, f"the {split} split has no image of {len(lacking)} classes "
                       f"({shown}{', ...' if len(lacking) > 5 else ''})")  # fmt: skip


def check_images(
    report: Report,
    entries: SplitEntries,
    source: str,
    sample: int | None,
    workers: int,
    rng: random.Random,
) -> None:
    """Every image exists; all of them (or ``sample`` per split) open."""
    missing, to_open = [], []
    for items in entries.values():
        existing = []
        for impath, _, _ in items:
            (existing if os.path.isfile(impath) else missing).append(impath)
        if sample is not None and len(existing) > sample:
            existing = rng.sample(existing, sample)
        to_open.extend(existing)
    if missing:
        report.add(True, f"{len(missing)} images listed in {source} are missing", missing)

    to_open = list(dict.fromkeys(to_open))  # ImageNet lists its test images as val too
    unreadable = []
    progress = tqdm(
        decode_all(to_open, workers),
        total=len(to_open),
        desc=f"{report.layout.name}: opening images",
        unit="img",
        disable=len(to_open) < PROGRESS_FROM,
        file=sys.stderr,
    )
    for path, problem in progress:
        if problem is not None:
            unreadable.append(f"{path} ({problem})")
    if unreadable:
        opened = f"{len(to_open)} opened" + (" (a sample, --fast)" if sample is not None else "")
        report.add(True, f"{len(unreadable)} images cannot be read ({opened})", unreadable)


def decode_all(paths: Sequence[str], workers: int) -> Iterator[tuple[str, str | None]]:
    """(path, why it cannot be read or None) for each image, decoded by ``workers`` threads.

    Images are handed out in chunks, so that 1.3M ImageNet paths never become 1.3M futures.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start : start + CHUNK]
            problems = pool.map(lambda path: image_problem(path, reduced=True), chunk)
            yield from zip(chunk, problems, strict=True)


def check_counts(report: Report) -> None:
    """Classes and split sizes against CoOp's published ones: differences are warnings."""
    published = report.layout.published
    if published is None:
        return
    differences = []
    if report.classes != published.classes:
        differences.append(f"classes {report.classes} vs {published.classes}")
    for split in SPLITS:
        expected = getattr(published, split)
        if expected is not None and report.sizes.get(split, 0) != expected:
            differences.append(f"{split} {report.sizes.get(split, 0)} vs {expected}")
    if differences:
        report.add(
            False,
            f"sizes differ from CoOp's published split (found vs expected: "
            f"{', '.join(differences)}): an incomplete copy or another split; results compare "
            f"with the paper's only on CoOp's split",
        )


def check_dataset(
    dataset_class: type, root: str, sample: int | None, workers: int, seed: int = 0
) -> Report:
    """Check one dataset under ``root`` and say what is wrong with it.

    Args:
        dataset_class: the registered dataset class (it has a ``layout``).
        root: the datasets root (``DATASET.ROOT``).
        sample: images opened per split (None: all).
        workers: threads that open images.
        seed: seed of the sample.
    """
    layout = dataset_class.layout
    report = Report(layout)
    dataset_dir = os.path.join(root, layout.folder)
    if not os.path.isdir(dataset_dir):
        report.present = False
        report.add(True, f"dataset folder not found: {dataset_dir}", [dataset_dir])
        return report
    try:
        entries = read_entries(dataset_class, dataset_dir)
    except (FileNotFoundError, ValueError) as error:  # the loader's own, naming file and fix
        report.add(True, str(error))
        return report
    report.sizes = {split: len(items) for split, items in entries.items()}
    source = source_of(layout, dataset_dir)
    check_classes(report, entries, source)
    check_images(report, entries, source, sample, workers, random.Random(seed))
    check_counts(report)
    return report


def cell(report: Report, split: str) -> str:
    """A "found/expected" cell of the table."""
    published = report.layout.published
    expected = getattr(published, split) if published else None
    if split not in report.sizes:
        return "-" if expected is None else f"?/{expected}"
    found = report.sizes[split]
    return f"{found}/{expected}" if expected is not None else str(found)


def render(reports: Sequence[Report]) -> str:
    """The table and, below it, each problem with its files and the DATASETS.md section."""
    rows = []
    for report in reports:
        published = report.layout.published
        classes = "?" if report.classes is None else str(report.classes)
        if published is not None:
            classes += f"/{published.classes}"
        damage = sum(problem.damage for problem in report.problems)
        counts = {"damage": damage, "warning": len(report.problems) - damage}
        summary = ", ".join(f"{count} {kind}" for kind, count in counts.items() if count)
        rows.append([report.layout.name, report.status, classes, *(cell(report, s) for s in SPLITS),
                     summary or "-"])  # fmt: skip
    headers = ["dataset", "status", "classes", "train", "val", "test", "problems"]
    lines = [tabulate(rows, headers=headers, tablefmt="github"), ""]
    lines.append("found/expected: expected are CoOp's published sizes.")
    for report in reports:
        if not report.problems:
            continue
        lines.append("")
        lines.append(f"{report.layout.name} ({report.status}):")
        for problem in report.problems:
            kind = "damage" if problem.damage else "warning"
            lines.append(f"  [{kind}] {problem.message}")
            for path in problem.files[:SHOWN_FILES]:
                lines.append(f"      {path}")
            if len(problem.files) > SHOWN_FILES:
                lines.append(f"      ... and {len(problem.files) - SHOWN_FILES} more")
            lines.append(f"      fix: see {report.layout.doc}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="the datasets root (DATA, DATASET.ROOT)")
    parser.add_argument("datasets", nargs="*", help="datasets to check (default: those present)")
    parser.add_argument(
        "--fast", action="store_true", help="open a sample of the images, not all (all must exist)"
    )
    parser.add_argument(
        "--sample",
        type=positive_int,
        default=50,
        help="images opened per split with --fast (default 50)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 on warnings too (counts that differ)"
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=min(8, os.cpu_count() or 1),
        help="threads that open images (default: the CPU count, at most 8)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sample < 1 or args.workers < 1:
        parser.error("--sample and --workers take a number >= 1")
    root = os.path.abspath(os.path.expanduser(args.data))
    if not os.path.isdir(root):
        parser.error(f"DATA {args.data} is not a folder; give the folder that holds the datasets")
    known = dataset_classes()
    try:
        names = resolve_names(args.datasets, known)
    except ValueError as error:
        parser.error(str(error))
    if not names:
        names = [n for n, c in known.items() if os.path.isdir(os.path.join(root, c.layout.folder))]
        if not names:
            folders = ", ".join(f"{c.layout.folder}/" for c in known.values())
            print(
                f"error: no dataset of DATASETS.md under {root}; expected one of the folders "
                f"{folders}",
                file=sys.stderr,
            )
            return 1
    sample = args.sample if args.fast else None
    reports = [check_dataset(known[name], root, sample, args.workers) for name in names]
    print(render(reports))
    damaged = sum(report.status in ("DAMAGED", "MISSING") for report in reports)
    warned = sum(report.status == "WARNINGS" for report in reports)
    print(
        f"\n{len(reports)} checked under {root}: {len(reports) - damaged - warned} ok, "
        f"{warned} with warnings, {damaged} damaged or missing"
    )
    return 1 if damaged or (args.strict and warned) else 0


if __name__ == "__main__":
    sys.exit(main())
