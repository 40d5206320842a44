"""The results-table tool on synthetic output trees written in Dassl's real log format."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.logs import eval_log, training_log, write
from experiments.protocols import default_variant
from experiments.results import (
    MISSING,
    Setting,
    aggregate,
    base2new_comparison_tables,
    base2new_tables,
    build_tables,
    collect_runs,
    fewshot_comparison_tables,
    fewshot_tables,
    harmonic_mean,
    parse_log,
    plot_fewshot,
    transfer_tables,
    zeroshot_table,
)
from tools.parse_results import main

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANT = "nctx16_cscFalse_ctpend"


def fewshot_dir(
    root: Path, dataset: str, trainer: str, shots: int, seed: int, cfg: str = "rn50"
) -> Path:
    """Run directory of main.sh / xd_train.sh."""
    return root / dataset / trainer / f"{cfg}_{shots}shots" / VARIANT / f"seed{seed}"


def population_std(values: list[float]) -> float:
    """Std over seeds as the tool computes it (numpy's default, ddof=0)."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def row(table, label: str) -> list[str]:
    """The row of a table whose first cell is ``label``."""
    return next(r for r in table.rows if r[0] == label)


def test_parse_log_reads_test_accuracy_after_finish_training():
    """The current Dassl log gives the test accuracy printed after "Finish training"."""
    assert parse_log(training_log(91.2), expect_training=True) == 91.2


def test_parse_log_accepts_older_finished_training_marker():
    """Older Dassl's "Finished training" marks the end of training too."""
    assert parse_log(training_log(88.4, marker="Finished training"), True) == 88.4


def test_parse_log_ignores_validation_result_of_unfinished_training():
    """A result block printed before training finished is validation, not a final result."""
    assert parse_log(training_log(None, validation=70.0), True) is None
    assert parse_log(training_log(75.5, validation=70.0), True) == 75.5


def test_parse_log_reads_eval_only_log_without_training_marker():
    """An --eval-only log counts from its result block; a cut-off one gives None."""
    assert parse_log(eval_log(63.3), expect_training=False) == 63.3
    assert parse_log(eval_log(None), expect_training=False) is None


def test_fewshot_cell_is_mean_and_population_std_over_seeds(tmp_path):
    """Three seeds 70.1/72.4/74.0 give the hand-computed mean ± std, 2 decimals."""
    accuracies = [70.1, 72.4, 74.0]
    for seed, accuracy in enumerate(accuracies, start=1):
        write(fewshot_dir(tmp_path, "caltech101", "ProGrad", 16, seed), training_log(accuracy))
    stats = aggregate(collect_runs(tmp_path).runs)
    stat = stats[Setting("fewshot", "ProGrad", "rn50", VARIANT, 16, "caltech101", "all")]
    assert stat.mean == pytest.approx(72.1667, abs=1e-4)
    assert stat.std == pytest.approx(population_std(accuracies))
    assert stat.std == pytest.approx(1.6007, abs=1e-4)
    (table,) = fewshot_tables(stats)
    assert row(table, "Caltech101")[1] == "72.17 ± 1.60"


def test_single_seed_cell_has_no_plus_minus(tmp_path):
    """One seed is shown as its accuracy alone."""
    write(fewshot_dir(tmp_path, "dtd", "CoOp", 4, 1), training_log(55.0))
    (table,) = fewshot_tables(aggregate(collect_runs(tmp_path).runs))
    assert row(table, "DTD")[1] == "55.00"


def test_missing_cells_are_dashes_and_averages_state_their_coverage(tmp_path):
    """A missing (dataset, shots) is "–"; averages over what exists say "(k/n)"."""
    write(fewshot_dir(tmp_path, "caltech101", "CoOp", 1, 1), training_log(80.0))
    write(fewshot_dir(tmp_path, "caltech101", "CoOp", 16, 1), training_log(90.0))
    write(fewshot_dir(tmp_path, "dtd", "CoOp", 16, 1), training_log(60.0))
    (table,) = fewshot_tables(aggregate(collect_runs(tmp_path).runs))
    assert table.headers == ["Dataset", "1 shot", "16 shots", "Average"]
    assert row(table, "DTD") == ["DTD", MISSING, "60.00", "60.00 (1/2)"]
    assert row(table, "Caltech101") == ["Caltech101", "80.00", "90.00", "85.00"]
    assert row(table, "Average") == ["Average", "80.00 (1/2)", "75.00", "76.67 (3/4)"]


def test_one_fewshot_table_per_trainer_mixing_epoch_configs(tmp_path):
    """Configs differing only in epochs (rn50_ep50, rn50) share one table per trainer."""
    write(fewshot_dir(tmp_path, "eurosat", "ProGrad", 1, 1, cfg="rn50_ep50"), training_log(50.0))
    write(fewshot_dir(tmp_path, "eurosat", "ProGrad", 16, 1, cfg="rn50"), training_log(80.0))
    write(fewshot_dir(tmp_path, "eurosat", "CoOp", 16, 1), training_log(78.0))
    tables = fewshot_tables(aggregate(collect_runs(tmp_path).runs))
    assert [t.title for t in tables] == [
        "Few-shot accuracy (%): CoOp, rn50",
        "Few-shot accuracy (%): ProGrad, rn50",
    ]
    assert row(tables[1], "EuroSAT")[1:3] == ["50.00", "80.00"]


def test_newest_complete_log_of_a_run_directory_is_used(tmp_path):
    """log.txt < log.txt-<older> < log.txt-<newer>; an incomplete newest log is passed over."""
    run_dir = fewshot_dir(tmp_path, "caltech101", "ProGrad", 16, 1)
    write(run_dir, training_log(60.0))
    write(run_dir, training_log(61.0), "log.txt-2024-01-05-10-00-00")
    write(run_dir, training_log(62.0), "log.txt-2024-03-01-09-00-00")
    write(run_dir, training_log(None), "log.txt-2024-03-02-09-00-00")
    (run,) = collect_runs(tmp_path).runs
    assert run.accuracy == 62.0
    assert run.log.name == "log.txt-2024-03-01-09-00-00"


def test_unfinished_run_is_reported_and_shown_missing(tmp_path):
    """A run whose logs are all incomplete is listed as a problem and left out of the stats."""
    write(fewshot_dir(tmp_path, "caltech101", "CoOp", 16, 1), training_log(90.0))
    write(fewshot_dir(tmp_path, "caltech101", "CoOp", 16, 2), training_log(None, validation=1.0))
    collection = collect_runs(tmp_path)
    assert [run.seed for run in collection.runs] == [1]
    assert any("seed2" in problem and "unfinished" in problem for problem in collection.problems)


def base2new_dir(
    root: Path,
    stage: str,
    dataset: str,
    trainer: str,
    seed: int | None,
    shots: int = 4,
    cfg: str = "rn50_ep100",
) -> Path:
    """Run directory of base2new_train.sh / base2new_test.sh (zero-shot: no seed)."""
    path = root / "base2new" / stage / dataset / f"shots_{shots}" / trainer / cfg
    return path if seed is None else path / f"seed{seed}"


def test_base2new_table_has_base_new_and_harmonic_mean(tmp_path):
    """H = 2·base·new/(base+new) of the seed means, per dataset and for the averages."""
    for seed, (base, new) in enumerate([(80.0, 60.0), (82.0, 62.0)], start=1):
        write(base2new_dir(tmp_path, "test_base", "caltech101", "ProGrad", seed), eval_log(base))
        write(base2new_dir(tmp_path, "test_new", "caltech101", "ProGrad", seed), eval_log(new))
    write(base2new_dir(tmp_path, "test_base", "dtd", "ProGrad", 1), eval_log(70.0))
    write(base2new_dir(tmp_path, "test_new", "dtd", "ProGrad", 1), eval_log(50.0))
    (table,) = base2new_tables(aggregate(collect_runs(tmp_path).runs))
    assert table.headers == ["Dataset", "Base", "New", "H"]
    assert row(table, "Caltech101") == [
        "Caltech101",
        "81.00 ± 1.00",
        "61.00 ± 1.00",
        f"{2 * 81 * 61 / (81 + 61):.2f}",
    ]
    assert row(table, "Caltech101")[3] == "69.59"
    assert row(table, "Average") == [
        "Average",
        "75.50",
        "55.50",
        f"{harmonic_mean(75.5, 55.5):.2f}",
    ]


def test_base2new_base_prefers_test_base_and_falls_back_to_training_log(tmp_path):
    """Seed with a test_base run uses it; a seed with only train_base uses its final test."""
    write(base2new_dir(tmp_path, "train_base", "dtd", "CoOp", 1), training_log(70.0))
    write(base2new_dir(tmp_path, "test_base", "dtd", "CoOp", 1), eval_log(71.0))
    write(base2new_dir(tmp_path, "train_base", "dtd", "CoOp", 2), training_log(73.0))
    write(base2new_dir(tmp_path, "test_new", "dtd", "CoOp", 1), eval_log(40.0))
    stats = aggregate(collect_runs(tmp_path).runs)
    base = stats[Setting("base2new", "CoOp", "rn50", "", 4, "dtd", "base")]
    assert base.mean == pytest.approx(72.0) and base.seeds == (1, 2)
    (table,) = base2new_tables(stats)
    assert row(table, "DTD")[1:3] == ["72.00 ± 1.00", "40.00"]


def test_base2new_missing_new_gives_no_harmonic_mean(tmp_path):
    """Without new-class results the H cell is missing and the average says so."""
    write(base2new_dir(tmp_path, "test_base", "dtd", "ProGrad", 1), eval_log(70.0))
    write(base2new_dir(tmp_path, "test_base", "eurosat", "ProGrad", 1), eval_log(80.0))
    write(base2new_dir(tmp_path, "test_new", "eurosat", "ProGrad", 1), eval_log(60.0))
    (table,) = base2new_tables(aggregate(collect_runs(tmp_path).runs))
    assert row(table, "DTD") == ["DTD", "70.00", MISSING, MISSING]
    assert row(table, "Average") == [
        "Average",
        "75.00",
        "60.00 (1/2)",
        f"{harmonic_mean(75.0, 60.0):.2f} (partial)",
    ]


def test_zero_shot_runs_are_read_from_coop_layout_and_base2new(tmp_path):
    """ZeroshotCLIP/<cfg>/<dataset> and base2new .../shots_0/ZeroshotCLIP/<cfg> need no seed."""
    write(tmp_path / "ZeroshotCLIP" / "rn50" / "caltech101", eval_log(86.3))
    write(tmp_path / "ZeroshotCLIP" / "rn50" / "dtd", eval_log(42.2))
    write(
        base2new_dir(tmp_path, "test_new", "dtd", "ZeroshotCLIP", None, 0, "rn50"), eval_log(45.0)
    )
    stats = aggregate(collect_runs(tmp_path).runs)
    table = zeroshot_table(stats)
    assert table.headers == ["Dataset", "rn50"]
    assert row(table, "Caltech101") == ["Caltech101", "86.30"]
    assert row(table, "Average") == ["Average", f"{(86.3 + 42.2) / 2:.2f}"]
    (b2n,) = base2new_tables(stats)
    assert "ZeroshotCLIP, rn50, 0 shots" in b2n.title
    assert row(b2n, "DTD")[2] == "45.00"


def test_transfer_tables_split_domain_generalisation_and_cross_dataset(tmp_path):
    """xd_test runs fill DG (V2/Sketch/A/R) and cross-dataset tables next to the ImageNet source."""
    for seed, accuracy in ((1, 60.0), (2, 62.0)):
        write(fewshot_dir(tmp_path, "imagenet", "ProGrad", 4, seed), training_log(accuracy))
        evaluation = tmp_path / "evaluation" / "ProGrad" / "rn50_4shots" / VARIANT
        write(evaluation / "imagenetv2" / f"seed{seed}", eval_log(accuracy - 8))
        write(evaluation / "caltech101" / f"seed{seed}", eval_log(accuracy + 25))
    write(tmp_path / "ZeroshotCLIP" / "rn50" / "imagenet", eval_log(58.2))
    write(tmp_path / "ZeroshotCLIP" / "rn50" / "imagenet_r", eval_log(56.0))
    dg, xd = transfer_tables(aggregate(collect_runs(tmp_path).runs))
    assert dg.headers == [
        "Method",
        "Backbone",
        "Shots",
        "ImageNet (source)",
        "ImageNet-V2",
        "ImageNet-Sketch",
        "ImageNet-A",
        "ImageNet-R",
        "Average (targets)",
    ]
    assert row(dg, "ProGrad") == [
        "ProGrad",
        "rn50",
        4,
        "61.00 ± 1.00",
        "53.00 ± 1.00",
        MISSING,
        MISSING,
        MISSING,
        "53.00 (1/4)",
    ]
    assert row(dg, "ZeroshotCLIP")[3:8] == ["58.20", MISSING, MISSING, MISSING, "56.00"]
    assert len(xd.headers) == 4 + 10 + 1
    assert row(xd, "ProGrad")[3:5] == ["61.00 ± 1.00", "86.00 ± 1.00"]
    assert row(xd, "ProGrad")[-1] == "86.00 (1/10)"


def test_unrecognised_directories_are_reported_not_guessed(tmp_path):
    """A log outside the known layouts is listed as a problem and not counted."""
    write(tmp_path / "scratch" / "notes", eval_log(12.0))
    collection = collect_runs(tmp_path)
    assert collection.runs == []
    assert any("unrecognised" in problem for problem in collection.problems)


def test_missing_output_directory_raises_clear_error(tmp_path):
    """A root that does not exist raises FileNotFoundError naming it."""
    with pytest.raises(FileNotFoundError, match="nope"):
        collect_runs(tmp_path / "nope")


def write_full_tree(root: Path) -> None:
    """Few-shot runs of both methods, zero-shot CLIP, base-to-new and a transfer run."""
    for trainer, offset in (("ProGrad", 2.0), ("CoOp", 0.0)):
        for shots in (1, 16):
            for seed in (1, 2):
                for dataset in ("caltech101", "dtd"):
                    write(
                        fewshot_dir(root, dataset, trainer, shots, seed),
                        training_log(60.0 + shots + offset + seed),
                    )
        write(base2new_dir(root, "test_base", "dtd", trainer, 1), eval_log(70.0 + offset))
        write(base2new_dir(root, "test_new", "dtd", trainer, 1), eval_log(50.0 + offset))
    write(root / "ZeroshotCLIP" / "rn50" / "caltech101", eval_log(86.3))
    write(root / "ZeroshotCLIP" / "rn50" / "dtd", eval_log(42.2))
    write(fewshot_dir(root, "imagenet", "CoOp", 4, 1), training_log(60.0))
    write(
        root / "evaluation" / "CoOp" / "rn50_4shots" / VARIANT / "imagenet_a" / "seed1",
        eval_log(23.0),
    )


def test_build_tables_covers_every_protocol_present(tmp_path):
    """Few-shot per trainer, zero-shot, base-to-new per trainer and DG, nothing else."""
    write_full_tree(tmp_path)
    names = [table.name for table in build_tables(aggregate(collect_runs(tmp_path).runs))]
    assert names == [
        "fewshot_coop_rn50",
        "fewshot_prograd_rn50",
        "fewshot_comparison_rn50_1shots",
        "fewshot_comparison_rn50_4shots",
        "fewshot_comparison_rn50_16shots",
        "zeroshot_clip",
        "base2new_coop_rn50_4shots",
        "base2new_prograd_rn50_4shots",
        "base2new_comparison_rn50_4shots",
        "base2new_comparison_h_rn50_4shots",
        "domain_generalization",
    ]


def test_accuracy_vs_shots_plot_is_written_as_png(tmp_path):
    """plot_fewshot writes a PNG; with no few-shot result it refuses with a clear error."""
    write(fewshot_dir(tmp_path, "dtd", "CoOp", 16, 1), training_log(60.0))
    write(fewshot_dir(tmp_path, "dtd", "CoOp", 16, 2), training_log(62.0))
    write(tmp_path / "ZeroshotCLIP" / "rn50" / "dtd", eval_log(42.2))
    write(base2new_dir(tmp_path, "test_new", "dtd", "CoOp", 1), eval_log(50.0))
    stats = aggregate(collect_runs(tmp_path).runs)
    plot_fewshot(stats, tmp_path / "shots.png")
    assert (tmp_path / "shots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    base2new_only = {s: stat for s, stat in stats.items() if s.protocol == "base2new"}
    with pytest.raises(ValueError, match="no few-shot or zero-shot results"):
        plot_fewshot(base2new_only, tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_cli_prints_tables_and_writes_csv_and_markdown(tmp_path, capsys):
    """The command line prints the tables and writes the CSV and markdown files."""
    write_full_tree(tmp_path / "output")
    csv_dir, markdown = tmp_path / "csv", tmp_path / "results.md"
    status = main([str(tmp_path / "output"), "--csv", str(csv_dir), "--markdown", str(markdown)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "Few-shot accuracy (%): ProGrad, rn50" in printed
    # caltech101, 16 shots, ProGrad: seeds 60+16+2+1 and 60+16+2+2
    assert "| Caltech101 | 64.50 ± 0.50 | –         | 79.50 ± 0.50 |" in printed
    assert "## Base-to-new accuracy (%): CoOp, rn50, 4 shots" in markdown.read_text()
    with (csv_dir / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    prograd = next(
        r
        for r in summary
        if r["trainer"] == "ProGrad"
        and r["shots"] == "16"
        and r["dataset"] == "caltech101"
        and r["protocol"] == "fewshot"
    )
    assert (prograd["mean"], prograd["std"], prograd["n_seeds"]) == ("79.5000", "0.5000", "2")
    with (csv_dir / "fewshot_prograd_rn50.csv").open() as handle:
        assert next(csv.reader(handle)) == ["Dataset", "1 shot", "4 shots", "16 shots", "Average"]
    with (csv_dir / "runs.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2 * 2 * 2 * 2 + 4 + 2 + 2


def test_cli_missing_directory_exits_with_clear_error(tmp_path):
    """A path that does not exist exits non-zero with an error naming it."""
    completed = subprocess.run(
        [sys.executable, "tools/parse_results.py", str(tmp_path / "missing")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert "missing" in completed.stderr and "does not exist" in completed.stderr


# Every method of the paper's tables, given out of order, and one the tool does not know.
METHODS_SHUFFLED = ("ProGrad", "KgCoOp", "MyMethod", "CoOp", "KD", "LinearProbeCLIP", "Adapter")
PAPER_ORDER = ["ZeroshotCLIP", "LinearProbeCLIP", "CoOp", "KD", "KgCoOp", "ProGrad", "Adapter",
               "MyMethod"]  # fmt: skip


def write_methods_tree(root: Path) -> None:
    """16-shot runs of every method on caltech101 and dtd, and zero-shot CLIP."""
    for index, method in enumerate(METHODS_SHUFFLED):
        for seed in (1, 2):
            for dataset, offset in (("caltech101", 20.0), ("dtd", 0.0)):
                run_dir = root / dataset / method / "rn50_16shots" / default_variant(method)
                write(run_dir / f"seed{seed}", training_log(50.0 + index + offset + seed))
    write(root / "ZeroshotCLIP" / "rn50" / "caltech101", eval_log(86.3))
    write(root / "ZeroshotCLIP" / "rn50" / "dtd", eval_log(42.2))


def test_fewshot_comparison_has_a_row_per_method_in_the_paper_order_with_averages(tmp_path):
    """Methods × datasets at 16 shots: zero-shot CLIP, the paper's methods in its order, unknown
    methods after them alphabetically; cells mean ± std, last column the average."""
    write_methods_tree(tmp_path)
    (table,) = fewshot_comparison_tables(aggregate(collect_runs(tmp_path).runs))
    assert table.name == "fewshot_comparison_rn50_16shots"
    assert table.headers == ["Method", "Caltech101", "DTD", "Average"]
    assert [r[0] for r in table.rows] == PAPER_ORDER
    assert row(table, "ZeroshotCLIP") == ["ZeroshotCLIP", "86.30", "42.20", "64.25"]
    kd = METHODS_SHUFFLED.index("KD")  # caltech101: 50 + kd + 20 + {1, 2}
    assert row(table, "KD") == [
        "KD",
        f"{71.5 + kd:.2f} ± 0.50",
        f"{51.5 + kd:.2f} ± 0.50",
        f"{61.5 + kd:.2f}",
    ]


def test_base2new_comparison_averages_and_harmonic_means_per_method(tmp_path):
    """Per method: base and new averaged over datasets and H of the averages; H per dataset."""
    for trainer, (base, new) in (("KgCoOp", (80.0, 70.0)), ("CoOp", (82.0, 60.0))):
        for dataset, shift in (("caltech101", 10.0), ("dtd", 0.0)):
            write(base2new_dir(tmp_path, "test_base", dataset, trainer, 1), eval_log(base + shift))
            write(base2new_dir(tmp_path, "test_new", dataset, trainer, 1), eval_log(new + shift))
    write(base2new_dir(tmp_path, "test_new", "dtd", "ZeroshotCLIP", None, 0, "rn50"), eval_log(45))
    averages, per_dataset = base2new_comparison_tables(aggregate(collect_runs(tmp_path).runs))
    assert [r[0] for r in averages.rows] == ["ZeroshotCLIP", "CoOp", "KgCoOp"]
    assert row(averages, "KgCoOp") == ["KgCoOp", "85.00", "75.00", f"{harmonic_mean(85, 75):.2f}"]
    assert row(averages, "ZeroshotCLIP") == ["ZeroshotCLIP", MISSING, "45.00 (1/2)", MISSING]
    assert per_dataset.headers == ["Method", "Caltech101", "DTD", "Average"]
    assert row(per_dataset, "CoOp")[1:3] == [
        f"{harmonic_mean(92, 70):.2f}",
        f"{harmonic_mean(82, 60):.2f}",
    ]


def test_fewshot_plot_has_a_line_per_method_in_the_paper_order(tmp_path):
    """The legend of the accuracy-vs-shots figure: every method once, in the tables' order."""
    write_methods_tree(tmp_path)
    labels = plot_fewshot(aggregate(collect_runs(tmp_path).runs), tmp_path / "shots.png")
    assert labels == [f"{method} (rn50)" for method in PAPER_ORDER]


def test_base2new_comparison_puts_every_config_of_one_clip_model_in_one_table(tmp_path):
    """CoCoOp's and KgCoOp's ViT-B/16 configs carry their own settings in their names; at the
    same shots they sit in the vit_b16 table beside ProGrad's vit_b16 and zero-shot CLIP's,
    named with their config, while an RN50 run gets its own table."""
    configs = {
        "ProGrad": "vit_b16_ep50",
        "CoCoOp": "vit_b16_c4_ep10_batch1_ctxv1",
        "KgCoOp": "vit_b16_ep100_ctxv1",
        "CoOp": "rn50_ep100",
    }
    for trainer, cfg in configs.items():
        for stage, accuracy in (("test_base", 80.0), ("test_new", 70.0)):
            write(base2new_dir(tmp_path, stage, "dtd", trainer, 1, 16, cfg), eval_log(accuracy))
    for stage in ("test_base", "test_new"):
        write(
            base2new_dir(tmp_path, stage, "dtd", "ZeroshotCLIP", None, 0, "vit_b16"), eval_log(60)
        )
    tables = base2new_comparison_tables(aggregate(collect_runs(tmp_path).runs))
    by_name = {table.name: table for table in tables}
    assert set(by_name) == {
        "base2new_comparison_vit_b16_16shots",
        "base2new_comparison_h_vit_b16_16shots",
        "base2new_comparison_rn50_16shots",
        "base2new_comparison_h_rn50_16shots",
    }
    vit = by_name["base2new_comparison_vit_b16_16shots"]
    assert [r[0] for r in vit.rows] == [
        "ZeroshotCLIP",
        "CoCoOp (vit_b16_c4_batch1_ctxv1)",
        "KgCoOp (vit_b16_ctxv1)",
        "ProGrad",
    ]
    assert row(vit, "ProGrad") == ["ProGrad", "80.00", "70.00", f"{harmonic_mean(80, 70):.2f}"]
    assert [r[0] for r in by_name["base2new_comparison_rn50_16shots"].rows] == ["CoOp"]
