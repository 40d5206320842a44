"""Print the paper's tables from an output tree written by the run scripts.

Usage (from the repository root):
    python tools/parse_results.py OUTPUT_DIR [--csv DIR] [--markdown FILE] [--plot FILE.png]

Prints the few-shot, zero-shot, base-to-new, domain generalisation and cross-dataset tables that
the runs found allow (cells: mean ± std over seeds, "–" where a run is missing); lists
unfinished or unrecognised runs on stderr. The layouts read are described in
experiments/results.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _root  # noqa: F401  (the repository root on sys.path)

from experiments.results import (
    aggregate,
    build_tables,
    collect_runs,
    plot_fewshot,
    render,
    write_csvs,
    write_markdown,
)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="root the run scripts wrote to")
    parser.add_argument(
        "--csv",
        type=Path,
        metavar="DIR",
        help="write one CSV per table, summary.csv and runs.csv into DIR",
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="FILE", help="write all tables to this markdown file"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="write the accuracy-vs-shots figure to this PNG file",
    )
    args = parser.parse_args(argv)

    try:
        collection = collect_runs(args.output_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for problem in collection.problems:
        print(f"note: {problem}", file=sys.stderr)
    if not collection.runs:
        print(
            f"error: no finished run under {args.output_dir}; the layouts read are listed in "
            "experiments/results.py.",
            file=sys.stderr,
        )
        return 1

    stats = aggregate(collection.runs)
    tables = build_tables(stats)
    print("\n".join(render(table) for table in tables))
    try:
        return write_outputs(args, tables, stats, collection)
    except OSError as error:  # a full disk, a folder given as a file, ... (experiments/atomic.py)
        print(f"error: {error}", file=sys.stderr)
        return 2


def write_outputs(args: argparse.Namespace, tables, stats, collection) -> int:
    """The --csv, --markdown and --plot files; the exit status."""
    if args.csv:
        paths = write_csvs(args.csv, tables, stats, collection.runs)
        print(f"wrote {len(paths)} CSV files to {args.csv}")
    if args.markdown:
        write_markdown(args.markdown, tables, args.output_dir)
        print(f"wrote {args.markdown}")
    if args.plot:
        try:
            plot_fewshot(stats, args.plot)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
