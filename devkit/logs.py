"""Dassl's log files, written by hand: a training run's, an --eval-only run's, the evaluator's
result block, for tests of the tables tool on synthetic output trees."""

from __future__ import annotations

from pathlib import Path


def result_block(accuracy: float, total: int = 1000) -> str:
    """The evaluator's block exactly as dassl.evaluation.Classification prints it."""
    correct = round(total * accuracy / 100)
    return (
        "=> result\n"
        f"* total: {total:,}\n"
        f"* correct: {correct:,}\n"
        f"* accuracy: {accuracy:.1f}%\n"
        f"* error: {100 - accuracy:.1f}%\n"
        f"* macro_f1: {accuracy - 1:.1f}%\n"
    )


def training_log(
    accuracy: float | None, marker: str = "Finish training", validation: float | None = None
) -> str:
    """A training run's log; ``accuracy=None`` stops it before training ends."""
    text = (
        "Setting fixed seed: 1\n***************\n** Arguments **\n***************\n"
        "eval_only: False\nLoading trainer: ProGrad\nBuilding transform_train\n"
        "No checkpoint found, train from scratch\n"
        "epoch [1/50] batch [5/5] time 0.1 (0.2) data 0.0 (0.1) loss 1.2 (1.3) acc 60.0 (55.0) "
        "lr 2.0000e-03 eta 0:00:30\n"
    )
    if validation is not None:
        text += "Evaluate on the *val* set\n" + result_block(validation)
    if accuracy is None:
        return text
    return (
        text
        + f"{marker}\nDeploy the last-epoch model\nEvaluate on the *test* set\n"
        + result_block(accuracy)
        + "Elapsed: 0:01:02\n"
    )


def eval_log(accuracy: float | None) -> str:
    """An --eval-only run's log; ``accuracy=None`` stops it before the result."""
    text = (
        "eval_only: True\nLoading trainer: ProGrad\nLoading weights to prompt_learner from "
        '"x/prompt_learner/model.pth.tar-50" (epoch = 50)\nEvaluate on the *test* set\n'
    )
    return text if accuracy is None else text + result_block(accuracy)


def write(run_dir: Path, text: str, name: str = "log.txt") -> Path:
    """Writes a log file into a run directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    path.write_text(text)
    return path
