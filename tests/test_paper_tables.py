"""The paper's ablation rows and the published numbers in the tables tool (small trees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.logs import training_log, write
from experiments.ablation import ablation_tables, plot_lambda
from experiments.results import aggregate, collect_runs

VARIANT = "nctx16_cscFalse_ctpend"


def fewshot_run(root: Path, dataset: str, trainer: str, suffix: str, seed: int, accuracy: float):
    run_dir = root / dataset / trainer / "rn50_16shots" / f"{VARIANT}{suffix}" / f"seed{seed}"
    write(run_dir, training_log(accuracy))


def row(table, label: str) -> list[str]:
    return next(r for r in table.rows if r[0] == label)


def test_ablation_table_has_a_row_per_lambda_always_project_and_alpha(tmp_path):
    """λ rows put each dataset's default run at its paper λ (1 on Caltech101, 0.8 on DTD), the
    vertical_grad runs form their own row, KD's runs a row per α; averages over datasets."""
    for seed, shift in ((1, 0.0), (2, 2.0)):
        fewshot_run(tmp_path, "caltech101", "ProGrad", "", seed, 90.0 + shift)  # λ = 1
        fewshot_run(tmp_path, "caltech101", "ProGrad", "_lambda0.5", seed, 80.0 + shift)
        fewshot_run(tmp_path, "dtd", "ProGrad", "", seed, 60.0 + shift)  # λ = 0.8
        fewshot_run(tmp_path, "dtd", "ProGrad", "_lambda1", seed, 62.0 + shift)
        fewshot_run(tmp_path, "dtd", "ProGrad", "_lambda0.5", seed, 50.0 + shift)
    fewshot_run(tmp_path, "caltech101", "ProGrad", "_vertical_grad", 1, 70.0)
    fewshot_run(tmp_path, "caltech101", "KD", "", 1, 85.0)
    fewshot_run(tmp_path, "caltech101", "KD", "_alpha0.25", 1, 86.0)
    fewshot_run(tmp_path, "caltech101", "ProGrad", "_epochs3", 1, 10.0)  # not an ablation point
    (table,) = ablation_tables(aggregate(collect_runs(tmp_path).runs))
    assert table.headers == ["Setting", "Caltech101", "DTD", "Average"]
    assert [r[0] for r in table.rows] == [
        "KD α=0.25",
        "KD α=0.5",
        "ProGrad λ=0.5",
        "ProGrad λ=0.8",
        "ProGrad λ=1",
        "ProGrad always project (vertical_grad), λ=1",
    ]
    assert row(table, "ProGrad λ=1") == ["ProGrad λ=1", "91.00 ± 1.00", "63.00 ± 1.00", "77.00"]
    assert row(table, "ProGrad λ=0.8") == ["ProGrad λ=0.8", "–", "61.00 ± 1.00", "61.00 (1/2)"]
    assert row(table, "ProGrad λ=0.5")[1:] == ["81.00 ± 1.00", "51.00 ± 1.00", "66.00"]
    assert row(table, "KD α=0.25")[1] == "86.00"
    assert row(table, "ProGrad always project (vertical_grad), λ=1")[1] == "70.00"
    assert not any("10.00" in cell for r in table.rows for cell in r)


def test_paper_default_runs_alone_make_no_ablation_table_and_no_lambda_plot(tmp_path):
    """Without an ablation run there is no ablation table, and the λ plot says why it is empty."""
    fewshot_run(tmp_path, "caltech101", "ProGrad", "", 1, 90.0)
    fewshot_run(tmp_path, "caltech101", "KD", "", 1, 85.0)
    stats = aggregate(collect_runs(tmp_path).runs)
    assert ablation_tables(stats) == []
    with pytest.raises(ValueError, match="no λ curve to plot"):
        plot_lambda(stats, tmp_path / "lambda.png")


def test_lambda_plot_draws_a_line_per_method_backbone_and_shots(tmp_path):
    """The λ figure is written, with one legend entry for ProGrad's curve."""
    pytest.importorskip("matplotlib")
    fewshot_run(tmp_path, "caltech101", "ProGrad", "", 1, 90.0)
    fewshot_run(tmp_path, "caltech101", "ProGrad", "_lambda0", 1, 80.0)
    fewshot_run(tmp_path, "caltech101", "ProGrad", "_vertical_grad", 1, 85.0)
    labels = plot_lambda(aggregate(collect_runs(tmp_path).runs), tmp_path / "lambda.png")
    assert labels == ["ProGrad (rn50, 16 shots)"]
    assert (tmp_path / "lambda.png").stat().st_size > 1000
