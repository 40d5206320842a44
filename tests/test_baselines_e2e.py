"""KgCoOp and CoOp + KD end to end with real Dassl: the real YAML files, a synthetic Caltech101
copy and a tiny CLIP checkpoint in OpenAI's format, on the CPU (CUDA tests skip without one)."""

import re

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
from devkit.synthetic_data import write_caltech101  # noqa: E402
from devkit.train_runs import build, snapshot  # noqa: E402
from trainers.clip_prompt import (  # noqa: E402
    load_clip,
    template_for,
    tokenize,
    zero_shot_text_features,
)

KGCOOP_YAML = "configs/trainers/KgCoOp/rn50_ep100.yaml"
PROGRAD_YAML = "configs/trainers/ProGrad/rn50.yaml"
COOP_CTXV1_YAML = "configs/trainers/CoOp/rn50_ep100_ctxv1.yaml"  # CTX_INIT "a photo of a"
KD = ("LOSS.NAME", "kd")
# method -> (trainer, config, options)
METHODS = {
    "KgCoOp": ("KgCoOp", KGCOOP_YAML, ("TRAINER.COOP.W", "8.0")),
    "KD": ("ProGrad", PROGRAD_YAML, KD),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=4, images_per_class=8)


def trained_ctx(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """(context before, context after) two epochs of `trainer`."""
    start = trainer.model.prompt_learner.ctx.detach().clone()
    trainer.train()
    return start, trainer.model.prompt_learner.ctx.detach().clone()


def test_kgcoop_trains_logs_its_terms_and_its_checkpoint_evaluates_to_the_same_accuracy(
    monkeypatch, tmp_path, data_root, tiny_clip_files, capsys
):
    """KgCoOp with W 8: KgCoOp's prompt announced, loss terms logged, a CoOp checkpoint (4 ctx
    vectors); loading it as train.py --eval-only does gives the same accuracy."""
    out, clip_file = tmp_path / "run", tiny_clip_files["RN"]
    trainer = build(monkeypatch, "KgCoOp", KGCOOP_YAML, out, data_root, clip_file,
                    "TRAINER.COOP.W", "8.0")  # fmt: skip
    end = trained_ctx(trainer)[1]
    printed = capsys.readouterr().out
    assert 'KgCoOp hand-crafted prompt: "a photo of a {}." (W = 8.0)' in printed
    assert re.search(r"loss [\d.]+ .*xe_loss [\d.]+ .*kg_loss [\d.]+ .*acc [\d.]+", printed)
    checkpoint = torch.load(out / "prompt_learner" / "model.pth.tar-2", weights_only=True)
    assert torch.equal(checkpoint["state_dict"]["ctx"], end) and end.shape == (4, 64)
    trained = float(re.findall(r"\* accuracy: ([\d.]+)%", printed)[-1])

    evaluator = build(monkeypatch, "KgCoOp", KGCOOP_YAML, tmp_path / "eval", data_root, clip_file)
    evaluator.load_model(str(out), epoch=2)
    assert evaluator.test() == pytest.approx(trained, abs=0.05)


def test_kgcoop_ctx_init_true_is_a_photo_of_a_and_its_teacher_is_kgcoops_prompt(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """CTX_INIT True: 4 vectors = the embedding of "a photo of a" (any N_CTX); teacher: KgCoOp's
    hand-crafted prompt encoded by CLIP; only the context changes in training."""
    trainer = build(
        monkeypatch, "KgCoOp", KGCOOP_YAML, tmp_path, data_root, tiny_clip_files["RN"],
        "TRAINER.COOP.N_CTX", "16", "TEST.NO_TEST", "True", epochs=1,
    )  # fmt: skip
    model = trainer.model
    clip_model = load_clip("RN50", str(tiny_clip_files["RN"])).float()
    with torch.no_grad():
        words = clip_model.token_embedding(tokenize(["a photo of a"]))[0, 1:5]
    torch.testing.assert_close(model.prompt_learner.ctx.detach(), words)
    classnames = trainer.dm.dataset.classnames
    expected = zero_shot_text_features(clip_model, classnames, template_for("Caltech101", "kgcoop"))
    torch.testing.assert_close(model.teacher_text_features, expected)

    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    assert [k for k in before if not torch.equal(before[k], after[k])] == ["prompt_learner.ctx"]


def test_kgcoop_with_weight_zero_steps_exactly_as_coop(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """W = 0: KgCoOp's prompt after 2 epochs equals CoOp's, bit for bit, from the same start."""
    ends = {}
    for name in ("CoOp", "KgCoOp"):
        trainer = build(
            monkeypatch, name, COOP_CTXV1_YAML, tmp_path / name, data_root,
            tiny_clip_files["RN"], "TRAINER.COOP.W", "0.0", "TEST.NO_TEST", "True",
        )  # fmt: skip
        ends[name] = trained_ctx(trainer)
    assert torch.equal(ends["CoOp"][0], ends["KgCoOp"][0])
    assert not torch.equal(ends["CoOp"][0], ends["CoOp"][1])
    assert torch.equal(ends["CoOp"][1], ends["KgCoOp"][1])


def test_kgcoop_weight_keeps_the_learned_text_features_near_the_hand_crafted_ones(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """A large W ends with text features closer to the hand-crafted ones than W = 0 does."""
    distances = {}
    for weight in ("0.0", "50.0"):
        trainer = build(
            monkeypatch, "KgCoOp", KGCOOP_YAML, tmp_path / weight, data_root,
            tiny_clip_files["RN"], "TRAINER.COOP.W", weight, "TEST.NO_TEST", "True",
            "OPTIM.LR", "2.0", epochs=3,
        )  # fmt: skip
        trainer.train()
        with torch.no_grad():
            learned = trainer.model.text_features()
        cosine = (learned * trainer.model.teacher_text_features).sum(-1).mean()
        distances[weight] = 1 - cosine.item()
    assert distances["0.0"] > 1e-3
    assert distances["50.0"] < 0.5 * distances["0.0"]


def test_kd_with_alpha_zero_steps_exactly_as_coop(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """LOSS.NAME kd, α = 0: the prompt after 2 epochs equals CoOp's, bit for bit."""
    ends = {}
    for name, opts in (("CoOp", ()), ("ProGrad", (*KD, "LOSS.ALPHA", "0.0"))):
        trainer = build(
            monkeypatch, name, PROGRAD_YAML, tmp_path / name, data_root, tiny_clip_files["RN"],
            *opts, "TEST.NO_TEST", "True",
        )  # fmt: skip
        ends[name] = trained_ctx(trainer)
    assert torch.equal(ends["CoOp"][0], ends["ProGrad"][0])
    assert not torch.equal(ends["CoOp"][0], ends["CoOp"][1])
    assert torch.equal(ends["CoOp"][1], ends["ProGrad"][1])


def test_kd_trains_logs_both_terms_and_eval_only_reproduces_its_accuracy(
    monkeypatch, tmp_path, data_root, tiny_clip_files, capsys
):
    """α = 0.5: the prompt moves elsewhere than CoOp's, the log has both terms and no projection
    report; the checkpoint evaluates (as train.py --eval-only does) to the same accuracy."""
    clip_file = tiny_clip_files["RN"]
    coop = build(monkeypatch, "CoOp", PROGRAD_YAML, tmp_path / "coop", data_root, clip_file,
                 "TEST.NO_TEST", "True")  # fmt: skip
    coop_end = trained_ctx(coop)[1]
    out = tmp_path / "kd"
    trainer = build(monkeypatch, "ProGrad", PROGRAD_YAML, out, data_root, clip_file, *KD)
    kd_end = trained_ctx(trainer)[1]
    printed = capsys.readouterr().out
    assert "LOSS.NAME kd: CoOp + knowledge distillation" in printed
    assert re.search(r"loss [\d.]+ .*xe_loss [\d.]+ .*kl_loss [\d.]+ .*acc [\d.]+", printed)
    assert "ProGrad epoch" not in printed and "conflict" not in printed
    assert not torch.equal(coop_end, kd_end)
    trained = float(re.findall(r"\* accuracy: ([\d.]+)%", printed)[-1])

    evaluator = build(monkeypatch, "ProGrad", PROGRAD_YAML, tmp_path / "eval", data_root,
                      clip_file, *KD)  # fmt: skip
    evaluator.load_model(str(out), epoch=2)
    torch.testing.assert_close(evaluator.model.prompt_learner.ctx, kd_end, atol=0, rtol=0)
    assert evaluator.test() == pytest.approx(trained, abs=0.05)


@pytest.mark.parametrize(
    ("trainer_name", "opts", "message"),
    [
        ("KgCoOp", ["TRAINER.COOP.W", "-1.0"], r"TRAINER.COOP.W is -1.0; .*>= 0"),
        ("KgCoOp", ["TRAINER.COOP.W", "1e999"], r"TRAINER.COOP.W is inf; .*finite"),
        (
            "ProGrad",
            [*KD, "LOSS.ALPHA", "1.5"],
            r"LOSS.ALPHA is 1.5; it takes a number in \[0, 1\]",
        ),
        ("ProGrad", [*KD, "LOSS.ALPHA", "-0.5"], r"LOSS.ALPHA is -0.5"),
        (
            "ProGrad",
            ["LOSS.NAME", "distill"],
            r'LOSS.NAME is "distill"; it takes one of prograd, vertical_grad, kd',
        ),
        ("ProGrad", [*KD, "LOSS.T", "0.0"], "LOSS.T is 0.0"),
    ],
)
def test_bad_kgcoop_and_kd_values_are_refused_with_the_key(
    monkeypatch, tmp_path, data_root, tiny_clip_files, trainer_name, opts, message
):
    """W < 0 or not finite, α ∉ [0, 1], an unknown LOSS.NAME, T <= 0: a ValueError naming the
    key and the allowed values, before the data or CLIP is touched."""
    config = KGCOOP_YAML if trainer_name == "KgCoOp" else PROGRAD_YAML
    missing_clip = tmp_path / "not_there.pt"  # check_cfg must fail before CLIP is loaded
    with pytest.raises(ValueError, match=message):
        build(monkeypatch, trainer_name, config, tmp_path, data_root, missing_clip, *opts)


@pytest.mark.parametrize("precision", ["fp16", "amp"])
@pytest.mark.parametrize("trainer_name", ["KgCoOp", "KD"])
def test_kgcoop_and_kd_train_in_fp16_and_amp_on_cpu(
    monkeypatch, tmp_path, data_root, tiny_clip_files, precision, trainer_name
):
    """fp16 and amp: the prompt moves, stays finite, and no step is skipped."""
    name, config, opts = METHODS[trainer_name]
    trainer = build(
        monkeypatch, name, config, tmp_path, data_root, tiny_clip_files["ViT"], *opts,
        "TRAINER.COOP.PREC", precision, "TEST.NO_TEST", "True", "OPTIM.LR", "0.05", epochs=1,
    )  # fmt: skip
    start, end = trained_ctx(trainer)
    assert end.dtype == (torch.float16 if precision == "fp16" else torch.float32)
    assert torch.isfinite(end).all() and not torch.equal(start, end)
    assert trainer.skipped_steps == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp16", "amp", "fp32"])
@pytest.mark.parametrize("trainer_name", ["KgCoOp", "KD"])
def test_kgcoop_and_kd_train_and_evaluate_on_cuda(
    monkeypatch, tmp_path, data_root, tiny_clip_files, precision, trainer_name
):
    """On CUDA in fp16, amp and fp32: the prompt (on the GPU) moves and stays finite, no step is
    skipped, and the test accuracy is a number."""
    name, config, opts = METHODS[trainer_name]
    trainer = build(
        monkeypatch, name, config, tmp_path, data_root, tiny_clip_files["ViT"], *opts,
        "TRAINER.COOP.PREC", precision, "OPTIM.LR", "0.05", "USE_CUDA", "True", epochs=1,
    )  # fmt: skip
    assert trainer.model.prompt_learner.ctx.is_cuda
    start, end = trained_ctx(trainer)
    assert torch.isfinite(end).all() and not torch.equal(start, end)
    assert trainer.skipped_steps == 0
    assert 0.0 <= trainer.test() <= 100.0
