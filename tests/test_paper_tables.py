"""The paper's ablation rows and the published numbers in the tables tool (small trees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.logs import eval_log, training_log, write
from experiments.ablation import ablation_tables, plot_lambda
from experiments.published import published_numbers, published_tables
from experiments.results import aggregate, build_tables, collect_runs

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


def base2new_run(root: Path, stage: str, dataset: str, seed: int, accuracy: float) -> None:
    run_dir = root / "base2new" / stage / dataset / "shots_16" / "ProGrad" / "vit_b16"
    run_dir = run_dir / f"seed{seed}"
    write(run_dir, eval_log(accuracy))


def test_published_numbers_sit_beside_ours_with_the_difference_marked_outside_the_spread(
    tmp_path,
):
    """ProGrad, vit_b16, 16 shots: Caltech101 (two seeds) and DTD (one seed) beside the KgCoOp
    paper's numbers; Δ = ours − published, * outside ±2 std (±1 point with one seed)."""
    for seed, (base, new) in ((1, (97.0, 93.0)), (2, (99.0, 95.0))):  # std 1: within ±2 ...
        base2new_run(tmp_path, "test_base", "caltech101", seed, base)
        base2new_run(tmp_path, "test_new", "caltech101", seed, new)
    base2new_run(tmp_path, "test_base", "dtd", 1, 77.0)  # published 77.35: within 1 point
    base2new_run(tmp_path, "test_new", "dtd", 1, 50.0)  # published 52.35: outside
    stats = aggregate(collect_runs(tmp_path).runs)
    (table,) = [t for t in build_tables(stats) if t.name.startswith("published")]
    assert table.headers[:4] == ["Dataset", "Base", "Base (published)", "Base Δ"]
    assert "KgCoOp paper" in table.title
    assert row(table, "Caltech101")[1:7] == ["98.00", "98.02", "-0.02", "94.00", "93.89", "+0.11"]
    h = 2 * 98 * 94 / (98 + 94)
    assert row(table, "Caltech101")[7:] == [f"{h:.2f}", "95.91", f"{h - 95.91:+.2f}"]
    assert row(table, "DTD")[1:7] == ["77.00", "77.35", "-0.35", "50.00", "52.35", "-2.35 *"]
    # Our average over 2 of the 11 datasets is not compared with the papers' over all 11.
    assert row(table, "Average") == ["Average", "–", "82.48", "–", "–", "70.75", "–"] + [
        "–", "76.16", "–"
    ]  # fmt: skip


def test_a_users_published_rows_are_read_from_their_own_file(tmp_path):
    """A CSV in PROGRAD_PUBLISHED's folder adds rows: Dassl or config dataset names, few-shot
    accuracy; an unknown dataset is a problem, not a crash; a missing column is a clear error."""
    folder = tmp_path / "published"
    folder.mkdir()
    header = "method,dataset,protocol,backbone,shots,base,new,h,accuracy,source\n"
    (folder / "mine.csv").write_text(
        header
        + "ProGrad,Caltech101,fewshot,rn50,16,,,,91.5,my paper\n"
        + "ProGrad,dtd,fewshot,rn50,16,,,,60.0,my paper\n"
        + "ProGrad,Atlantis,fewshot,rn50,16,,,,1.0,my paper\n",
        encoding="utf-8",
    )
    problems: list[str] = []
    numbers = published_numbers({"PROGRAD_PUBLISHED": str(folder)}, problems)
    mine = [n for n in numbers if n.source == "my paper"]
    assert [(n.dataset, n.protocol, n.split, n.value) for n in mine] == [
        ("caltech101", "fewshot", "all", 91.5),
        ("dtd", "fewshot", "all", 60.0),
    ]
    assert len(problems) == 1 and "Atlantis" in problems[0]
    fewshot_run(tmp_path / "out", "caltech101", "ProGrad", "", 1, 90.0)
    (table,) = published_tables(aggregate(collect_runs(tmp_path / "out").runs), mine)
    assert table.rows == [["Caltech101", "90.00", "91.50", "-1.50 *"]]
    (folder / "bad.csv").write_text("method,dataset\nProGrad,dtd\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lack the column.*protocol"):
        published_numbers({"PROGRAD_PUBLISHED": str(folder)})
