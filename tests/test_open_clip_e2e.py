"""Every method end to end on a tiny open_clip GELU model (MODEL.BACKBONE.NAME open_clip:...),
with real Dassl and the real YAML files, on the CPU."""

from pathlib import Path

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
from devkit.synthetic_data import write_caltech101  # noqa: E402
from devkit.tiny_clip import tiny_open_clip_name  # noqa: E402
from devkit.train_runs import accuracy, build  # noqa: E402

PROGRAD_YAML = "configs/trainers/ProGrad/rn50.yaml"
GELU = tiny_open_clip_name("gelu")


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=3, images_per_class=6)


@pytest.mark.parametrize("kind", ["gelu", "eva02"])
def test_prograd_on_open_clip_resumes_exactly_and_evaluates_again(
    monkeypatch, tmp_path, capsys, data_root, tiny_open_clip_files, kind
):
    """ProGrad on open_clip GELU and on a timm (EVA02) tower: only the prompt changes; a run
    killed in epoch 2 resumes to the same prompt; --eval-only of the checkpoint logs the same
    accuracy."""
    weights = tiny_open_clip_files[kind]
    name = tiny_open_clip_name(kind)
    opts = ("MODEL.BACKBONE.NAME", name, "OPTIM.WARMUP_EPOCH", "1", "OPTIM.LR", "0.05")
    full = build(monkeypatch, "ProGrad", PROGRAD_YAML, tmp_path / "full", data_root, weights, *opts)
    before = {k: v.clone() for k, v in full.model.state_dict().items()}
    capsys.readouterr()
    full.train()
    trained = accuracy(capsys.readouterr().out)
    after = full.model.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == ["prompt_learner.ctx"]

    run_dir = tmp_path / "killed"
    killed = build(monkeypatch, "ProGrad", PROGRAD_YAML, run_dir, data_root, weights, *opts)
    original = killed.forward_backward

    def crash_in_second_epoch(batch):
        if killed.epoch == 1 and killed.batch_idx == 1:
            raise Interrupted
        return original(batch)

    killed.forward_backward = crash_in_second_epoch
    with pytest.raises(Interrupted):
        killed.train()
    restarted = build(monkeypatch, "ProGrad", PROGRAD_YAML, run_dir, data_root, weights, *opts)
    restarted.train()
    assert restarted.start_epoch == 1
    assert torch.equal(restarted.model.prompt_learner.ctx, full.model.prompt_learner.ctx)

    # train.py --eval-only --model-dir full --load-epoch 2, in this process (its same calls).
    evaluated = build(
        monkeypatch, "ProGrad", PROGRAD_YAML, tmp_path / "eval", data_root, weights, *opts,
        flags=("--eval-only", "--model-dir", str(tmp_path / "full"), "--load-epoch", "2"),
    )  # fmt: skip
    evaluated.load_model(str(tmp_path / "full"), epoch=2)
    capsys.readouterr()
    evaluated.test()
    assert accuracy(capsys.readouterr().out) == trained


@pytest.mark.parametrize(
    ("trainer", "config", "opts"),
    [
        ("CoOp", "configs/trainers/CoOp/rn50.yaml", ()),
        ("KD", PROGRAD_YAML, ()),
        ("KgCoOp", "configs/trainers/KgCoOp/rn50_ep100.yaml", ()),
        ("CoCoOp", "configs/trainers/CoCoOp/tiny.yaml", ()),
        ("ProGradCoCoOp", "configs/trainers/ProGradCoCoOp/tiny.yaml", ()),
        ("ZeroshotCLIP", "configs/trainers/CoOp/rn50.yaml", ()),
        ("LinearProbeCLIP", "configs/trainers/LinearProbeCLIP/tiny.yaml", ()),
        ("ProGrad", PROGRAD_YAML, ("siglip",)),
        ("CoCoOp", "configs/trainers/CoCoOp/tiny.yaml", ("siglip",)),
    ],
)
def test_every_method_runs_on_a_gelu_open_clip_model(
    monkeypatch, tmp_path, capsys, data_root, tiny_open_clip_files, trainer, config, opts
):
    """One epoch of each other method on open_clip GELU (ProGrad and CoCoOp also on SigLIP)
    reaches an evaluation with an accuracy."""
    kind = opts[0] if opts == ("siglip",) else "gelu"
    if kind not in tiny_open_clip_files:
        pytest.skip("transformers is not installed (SigLIP's tokenizer needs it)")
    opts = () if kind == "siglip" else opts
    cache = ("TRAINER.LINEAR_PROBE.FEATURE_CACHE", str(tmp_path / "cache"))
    extra = cache if trainer == "LinearProbeCLIP" else ()
    built = build(
        monkeypatch, trainer, config, tmp_path, data_root, tiny_open_clip_files[kind],
        "MODEL.BACKBONE.NAME", tiny_open_clip_name(kind), "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "TRAINER.COCOOP.PREC", "fp32", *opts, *extra, epochs=1,
    )  # fmt: skip
    capsys.readouterr()
    if trainer == "ZeroshotCLIP":
        built.test()
    else:
        built.train()
    assert 0 <= accuracy(capsys.readouterr().out) <= 100


def test_too_long_context_words_are_refused_before_the_backbone_is_loaded(
    monkeypatch, tmp_path, capsys, data_root, tiny_open_clip_files
):
    """CTX_INIT longer than the model's context: ValueError naming the words, CLIP not loaded."""
    words = "a photo of a " * 5
    with pytest.raises(ValueError, match=r'the text "a photo of a a photo .*" has 2\d tokens .*16'):
        build(
            monkeypatch, "CoOp", "configs/trainers/CoOp/rn50.yaml", tmp_path, data_root,
            tiny_open_clip_files["short_context"], "MODEL.BACKBONE.NAME",
            tiny_open_clip_name("short_context"), "TRAINER.COOP.CTX_INIT", words,
        )  # fmt: skip
    assert "Loading CLIP" not in capsys.readouterr().out


PRECISION_CASES = [
    ("bf16", torch.bfloat16, "cpu"),
    ("amp_bf16", torch.float32, "cpu"),
    ("amp_fp16", torch.float32, "cuda"),
    ("bf16", torch.bfloat16, "cuda"),
]


@pytest.mark.parametrize(("precision", "ctx_dtype", "device"), PRECISION_CASES)
def test_prograd_trains_on_open_clip_in_bf16_and_amp(
    monkeypatch, tmp_path, capsys, data_root, tiny_open_clip_files, precision, ctx_dtype, device
):
    """PREC bf16 (weights and compute) and amp_bf16 / amp_fp16 (fp32 weights, autocast): ProGrad
    on open_clip GELU trains with finite losses, the prompt in the expected dtype."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    built = build(
        monkeypatch, "ProGrad", PROGRAD_YAML, tmp_path, data_root, tiny_open_clip_files["gelu"],
        "MODEL.BACKBONE.NAME", GELU, "TRAINER.COOP.PREC", precision,
        "USE_CUDA", str(device == "cuda"), epochs=1,
    )  # fmt: skip
    capsys.readouterr()
    built.train()
    out = capsys.readouterr().out
    assert built.model.prompt_learner.ctx.dtype == ctx_dtype
    assert "Skipped a step" not in out and 0 <= accuracy(out) <= 100
