"""End to end with real Dassl: train.py with the real YAML files on a synthetic Caltech101 copy
and a tiny CLIP checkpoint in OpenAI's format, on the CPU."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from devkit.synthetic_data import write_caltech101  # noqa: E402
from devkit.train_runs import accuracy, build, cli_args, run_train_py, snapshot  # noqa: E402
from experiments.run_record import read_record  # noqa: E402
from train import build_parser, setup_cfg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROGRAD_YAML = "configs/trainers/ProGrad/rn50.yaml"
COOP_YAML = "configs/trainers/CoOp/rn50.yaml"
DATASET_YAML = "configs/datasets/caltech101.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=4, images_per_class=8)


def test_prograd_changes_only_the_prompt_and_writes_coop_checkpoint(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """Two ProGrad epochs: ctx moves, every CLIP weight and buffer stays, checkpoint has ctx."""
    trainer = build(
        monkeypatch, "ProGrad", PROGRAD_YAML, tmp_path, data_root, tiny_clip_files["RN"]
    )
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["prompt_learner.ctx"]

    checkpoint = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-2", weights_only=True)
    assert checkpoint["epoch"] == 2
    assert torch.equal(checkpoint["state_dict"]["ctx"], after["prompt_learner.ctx"])
    assert {"token_prefix", "token_suffix"} <= set(checkpoint["state_dict"])


def test_prograd_with_lambda_zero_steps_exactly_as_coop(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """λ=0: ProGrad's prompt after 2 epochs equals CoOp's, bit for bit, from the same start."""
    clip_file = tiny_clip_files["RN"]
    results = {}
    for trainer_name in ("CoOp", "ProGrad"):
        trainer = build(
            monkeypatch, trainer_name, PROGRAD_YAML, tmp_path / trainer_name, data_root,
            clip_file, "LOSS.LAMBDA", "0.0", "TEST.NO_TEST", "True",
        )  # fmt: skip
        start = trainer.model.prompt_learner.ctx.detach().clone()
        trainer.train()
        results[trainer_name] = (start, trainer.model.prompt_learner.ctx.detach().clone())
    assert torch.equal(results["CoOp"][0], results["ProGrad"][0])
    assert not torch.equal(results["CoOp"][0], results["CoOp"][1])
    assert torch.equal(results["CoOp"][1], results["ProGrad"][1])


def test_prograd_with_lambda_one_differs_from_coop_when_gradients_conflict(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """λ=1: some step conflicts and the prompt ends elsewhere than CoOp's."""
    ends, conflicts = {}, []
    for trainer_name in ("CoOp", "ProGrad"):
        trainer = build(
            monkeypatch, trainer_name, PROGRAD_YAML, tmp_path / trainer_name, data_root,
            tiny_clip_files["RN"], "TEST.NO_TEST", "True",
        )  # fmt: skip
        if trainer_name == "ProGrad":
            original = trainer.forward_backward

            def recording(batch, original=original):
                conflicts.append(original(batch))
                return conflicts[-1]

            trainer.forward_backward = recording
        trainer.train()
        ends[trainer_name] = trainer.model.prompt_learner.ctx.detach().clone()
    assert any(summary["conflict"] == 1.0 for summary in conflicts)
    assert {"xe_loss", "kl_loss", "acc", "conflict"} <= set(conflicts[0])
    assert not torch.equal(ends["CoOp"], ends["ProGrad"])


@pytest.mark.parametrize("precision", ["fp16", "amp"])
@pytest.mark.parametrize("trainer_name", ["ProGrad", "CoOp"])
def test_fp16_and_amp_train(
    monkeypatch, tmp_path, data_root, tiny_clip_files, precision, trainer_name
):
    """fp16 and amp both train on the CPU: the prompt moves and stays finite."""
    trainer = build(
        monkeypatch, trainer_name, PROGRAD_YAML, tmp_path, data_root, tiny_clip_files["ViT"],
        "TRAINER.COOP.PREC", precision, "TEST.NO_TEST", "True", "OPTIM.LR", "0.05", epochs=1,
    )  # fmt: skip
    ctx = trainer.model.prompt_learner.ctx
    assert ctx.dtype == (torch.float16 if precision == "fp16" else torch.float32)
    start = ctx.detach().clone()
    trainer.train()
    assert torch.isfinite(ctx).all()
    assert not torch.equal(start, ctx.detach())
    assert trainer.skipped_steps == 0


def test_train_then_eval_only_reproduces_accuracy(tmp_path, data_root, tiny_clip_files):
    """train.py logs an accuracy; --eval-only --model-dir --load-epoch 2 gives the same one."""
    out = tmp_path / "run"
    args = cli_args("ProGrad", PROGRAD_YAML, out, data_root, tiny_clip_files["RN"])
    run_train_py(*args)
    log = (out / "log.txt").read_text()
    assert "Finish training" in log
    assert re.search(r"xe_loss [\d.]+ .*kl_loss [\d.]+ .*acc [\d.]+ .*conflict [\d.]+", log)
    assert re.search(r"ProGrad epoch 2: conflicting steps [\d.]+%, mean cos\(g_ce, g_kl\)", log)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"prograd/conflict_share", "prograd/mean_cosine", "prograd/mean_removed_norm"} <= tags
    assert [e.step for e in events.Scalars("prograd/conflict_share")] == [1, 2]
    trained = accuracy(log)
    record = read_record(out)  # run.json says what the run is and how it ended
    assert (record.status, record.method, record.dataset, record.shots, record.seed) == (
        "finished", "ProGrad", "caltech101", 4, 1,
    )  # fmt: skip
    assert round(record.accuracy, 2) == trained

    eval_out = tmp_path / "eval"
    flags = ("--eval-only", "--model-dir", str(out), "--load-epoch", "2")
    run_train_py(
        *cli_args("ProGrad", PROGRAD_YAML, eval_out, data_root, tiny_clip_files["RN"], flags=flags)
    )
    assert accuracy((eval_out / "log.txt").read_text()) == trained


def test_coop_checkpoint_evaluates_under_prograd(tmp_path, data_root, tiny_clip_files):
    """A CoOp run's checkpoint loads into the ProGrad trainer for evaluation (same format)."""
    out = tmp_path / "coop"
    run_train_py(*cli_args("CoOp", COOP_YAML, out, data_root, tiny_clip_files["RN"], epochs=1))
    coop_accuracy = accuracy((out / "log.txt").read_text())
    eval_out = tmp_path / "eval"
    flags = ("--eval-only", "--model-dir", str(out), "--load-epoch", "1")
    run_train_py(
        *cli_args("ProGrad", COOP_YAML, eval_out, data_root, tiny_clip_files["RN"], flags=flags)
    )
    assert accuracy((eval_out / "log.txt").read_text()) == coop_accuracy


def test_zeroshot_clip_evaluates(tmp_path, data_root, tiny_clip_files):
    """ZeroshotCLIP --eval-only reports an accuracy with the dataset's template."""
    out = tmp_path / "zs"
    args = cli_args(
        "ZeroshotCLIP", COOP_YAML, out, data_root, tiny_clip_files["ViT"], flags=["--eval-only"]
    )
    stdout = run_train_py(*args)
    assert 'Zero-shot prompt: "a photo of a {}."' in stdout
    assert 0.0 <= accuracy((out / "log.txt").read_text()) <= 100.0


def test_seed_zero_is_applied():
    """--seed 0 sets cfg.SEED = 0 (CoOp's train.py silently dropped it)."""
    args = build_parser().parse_args(["--seed", "0", "--trainer", "ProGrad"])
    assert setup_cfg(args).SEED == 0


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["LOSS.LAMBDA", "1.5"], r"LOSS.LAMBDA is 1.5; it takes a number in \[0, 1\]"),
        (["LOSS.T", "0.0"], "LOSS.T is 0.0"),
        (
            ["TRAINER.COOP.PREC", "fp8"],
            'TRAINER.COOP.PREC is "fp8"; it takes one of fp16, fp32, amp, bf16, amp_fp16, amp_bf16',
        ),
        (["TRAINER.COOP.CLASS_TOKEN_POSITION", "start"], 'CLASS_TOKEN_POSITION is "start"'),
        (["INPUT.SIZE", "(224, 224)"], r"INPUT.SIZE is \(224, 224\).*set INPUT.SIZE \(32, 32\)"),
    ],
)
def test_bad_config_values_are_rejected_with_the_key(
    monkeypatch, tmp_path, data_root, tiny_clip_files, opts, message
):
    """Bad LAMBDA / T / PREC / position / image size: ValueError naming the key and the fix."""
    with pytest.raises(ValueError, match=message):
        build(
            monkeypatch, "ProGrad", PROGRAD_YAML, tmp_path, data_root, tiny_clip_files["RN"], *opts
        )


class Interrupted(Exception):
    """Stands for the run being killed."""


def test_interrupted_run_resumes_to_the_same_result(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """Killed mid-epoch 3 and started again: same prompt and accuracy as an uninterrupted run."""
    opts = ("OPTIM.WARMUP_EPOCH", "1", "OPTIM.LR", "0.05")  # warmup + momentum state matter
    clip_file = tiny_clip_files["RN"]
    full = build(monkeypatch, "ProGrad", PROGRAD_YAML, tmp_path / "full", data_root, clip_file,
                 *opts, epochs=3)  # fmt: skip
    full.train()

    run_dir = tmp_path / "killed"
    killed = build(monkeypatch, "ProGrad", PROGRAD_YAML, run_dir, data_root, clip_file, *opts,
                   epochs=3)  # fmt: skip
    original = killed.forward_backward

    def crash_in_third_epoch(batch):
        if killed.epoch == 2 and killed.batch_idx == 1:
            raise Interrupted
        return original(batch)

    killed.forward_backward = crash_in_third_epoch
    with pytest.raises(Interrupted):
        killed.train()
    assert (run_dir / "resume" / "state.pth").is_file()

    restarted = build(monkeypatch, "ProGrad", PROGRAD_YAML, run_dir, data_root, clip_file,
                      *opts, epochs=3)  # fmt: skip
    restarted.train()
    assert restarted.start_epoch == 2
    assert torch.equal(
        restarted.model.prompt_learner.ctx.detach(), full.model.prompt_learner.ctx.detach()
    )
    assert restarted.test() == full.test()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--trainer", "ProGrad2"],
            '--trainer "ProGrad2" is not a registered trainer; use one of this project\'s: '
            "CoCoOp, CoOp, KD, KgCoOp, LinearProbeCLIP, MaPLe, ProGrad, ProGradCoCoOp, "
            "ProGradMaPLe, ZeroshotCLIP, ",
        ),
        (["--trainer", "ProGrad", "DATASET.NAME", "Caltech102"], 'DATASET.NAME "Caltech102"'),
    ],
)
def test_unknown_trainer_or_dataset_names_the_choices(flags, message):
    """An unknown trainer or dataset is refused with the registered names listed."""
    from train import check_names

    cfg = setup_cfg(build_parser().parse_args(flags))
    with pytest.raises(ValueError, match=re.escape(message)):
        check_names(cfg)


def test_failing_run_leaves_existing_outputs_untouched(tmp_path, data_root, tiny_clip_files):
    """A run that fails on a bad value exits with a one-paragraph error; old files stay intact."""
    out = tmp_path / "run"
    (out / "prompt_learner").mkdir(parents=True)
    (out / "log.txt").write_text("old log\n")
    (out / "prompt_learner" / "model.pth.tar-2").write_bytes(b"old checkpoint")
    args = cli_args("ProGrad", PROGRAD_YAML, out, data_root, tiny_clip_files["RN"])
    result = subprocess.run(
        [sys.executable, "train.py", *args, "LOSS.LAMBDA", "2.0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "error: LOSS.LAMBDA is 2.0; it takes a number in [0, 1]" in result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "log.txt").read_text() == "old log\n"
    assert (out / "prompt_learner" / "model.pth.tar-2").read_bytes() == b"old checkpoint"


@pytest.mark.parametrize("precision", ["fp32", "amp"])
def test_nan_batch_is_skipped_counted_and_never_reaches_the_prompt(
    monkeypatch, tmp_path, data_root, tiny_clip_files, capsys, precision
):
    """A batch whose loss is NaN: its step is skipped and logged; the prompt stays finite."""
    trainer = build(monkeypatch, "ProGrad", PROGRAD_YAML, tmp_path, data_root,
                    tiny_clip_files["RN"], "TRAINER.COOP.PREC", precision, "TEST.NO_TEST", "True",
                    epochs=1)  # fmt: skip
    original = trainer.parse_batch_train

    def poison_second_batch(batch):
        image, label = original(batch)
        return (image * float("nan") if trainer.batch_idx == 1 else image), label

    trainer.parse_batch_train = poison_second_batch
    trainer.train()
    assert trainer.skipped_steps == 1
    assert torch.isfinite(trainer.model.prompt_learner.ctx).all()
    assert "Skipped a step with a non-finite gradient (epoch 1, batch 2" in capsys.readouterr().out
