"""MaPLe and ProGradMaPLe: the prompted towers against the official computation, the trainers
end to end with real Dassl (train.py's config path, the tiny ViT CLIP, a synthetic Caltech101),
the official checkpoint format, exact resume and the refusals."""

import re

import pytest
import torch
from torch.nn import functional as F

import trainers.maple_prompt as maple_prompt
from devkit.tiny_clip import CLASSNAMES, build_tiny_clip, tiny_open_clip_name
from trainers.backbone import load_backbone
from trainers.maple_prompt import MaPLeCLIP, MaPLePromptLearner, ReferenceMaPLeCLIP

MAPLE_TINY = "configs/trainers/MaPLe/tiny.yaml"
PROGRAD_MAPLE_TINY = "configs/trainers/ProGradMaPLe/tiny.yaml"
# Depth 2 on the tiny CLIP (2 layers per tower): ctx, proj, one deep text prompt, one coupling.
TRAINABLE = [
    "prompt_learner.ctx",
    "prompt_learner.proj.weight",
    "prompt_learner.proj.bias",
    "prompt_learner.compound_prompts_text.0",
    "prompt_learner.compound_prompt_projections.0.weight",
    "prompt_learner.compound_prompt_projections.0.bias",
]
FAST = ("TRAINER.MAPLE.PREC", "fp32", "TRAINER.MAPLE.PROMPT_DEPTH", "2", "OPTIM.LR", "0.05")


def tiny_maple(model_class, depth=2):
    """A MaPLe model on the tiny ViT CLIP (3 text layers), every prompt tensor moved off its
    initial value so that none of them is special."""
    clip_model = build_tiny_clip("ViT", text_layers=3, text_heads=2).float()
    torch.manual_seed(0)
    learner = MaPLePromptLearner(clip_model, CLASSNAMES, 2, "a photo of a", depth)
    with torch.no_grad():
        for param in learner.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model = model_class(clip_model, learner)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("prompt_learner."))
    return model


@pytest.mark.parametrize("inserted_dtype", [torch.float32, torch.float16])
def test_fast_towers_give_the_official_computations_logits_and_gradients(
    monkeypatch, inserted_dtype
):
    """Packed text tower (shared [SOS][ctx][of a] once, classes up to their end-of-text) and the
    SDPA vision tower equal CLIP's own blocks over every position: logits, and gradients of every
    prompt tensor (to fp32 rounding; with the official fp16 pass of the inserted prompts, to
    fp16's rounding of the gradients that pass through it)."""
    monkeypatch.setattr(maple_prompt, "INSERTED_PROMPT_DTYPE", inserted_dtype)
    fast, reference = tiny_maple(MaPLeCLIP), tiny_maple(ReferenceMaPLeCLIP)
    assert fast.prompt_learner.n_shared == 5  # [SOS] ctx ctx "of" "a"
    image = torch.randn(3, 3, 32, 32)
    logits, expected = fast(image), reference(image)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    params = list(fast.prompt_learner.parameters())
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3, 6]))
    reference_loss = torch.nn.functional.cross_entropy(expected, torch.tensor([0, 3, 6]))
    gradients = torch.autograd.grad(loss, params)
    reference_params = list(reference.prompt_learner.parameters())
    reference_gradients = torch.autograd.grad(reference_loss, reference_params)
    tolerance = 1e-5 if inserted_dtype == torch.float32 else 2e-3
    for gradient, expected_gradient in zip(gradients, reference_gradients, strict=True):
        assert gradient.abs().sum() > 0
        assert (gradient - expected_gradient).norm() <= tolerance * expected_gradient.norm()


def test_vision_transformers_only():
    """A ResNet CLIP is refused with the reason and the backbones to use."""
    clip_model = build_tiny_clip("RN").float()
    with pytest.raises(ValueError, match=r"MaPLe needs a vision transformer .* ModifiedResNet"):
        MaPLePromptLearner(clip_model, CLASSNAMES, 2, "a photo of a", 1)


def open_clip_maple(files, kind, model_class):
    """A MaPLe model (depth 2) on a tiny open_clip model, every prompt tensor moved off its
    initial value."""
    clip_model = load_backbone(tiny_open_clip_name(kind), str(files[kind]))
    torch.manual_seed(0)
    learner = MaPLePromptLearner(clip_model, CLASSNAMES, 2, "a photo of a", 2)
    with torch.no_grad():
        for param in learner.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model = model_class(clip_model, learner)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("prompt_learner."))
    return model


@pytest.mark.parametrize(
    ("kind", "activation"),
    [("gelu", "gelu"), ("quickgelu", "quick_gelu"), ("layerscale", "gelu"), ("eos_pool", "gelu")],
)
def test_fast_towers_give_the_reference_computation_on_open_clip_vits(
    monkeypatch, tiny_open_clip_files, kind, activation
):
    """On open_clip ViTs (GELU or QuickGELU blocks, batch-first, text LayerScale, end-of-text
    pooling by id; their own blocks as the reference), the packed text tower and the SDPA vision
    tower give the reference's logits and prompt gradients (to fp32 rounding)."""
    monkeypatch.setattr(maple_prompt, "INSERTED_PROMPT_DTYPE", torch.float32)
    fast = open_clip_maple(tiny_open_clip_files, kind, MaPLeCLIP)
    reference = open_clip_maple(tiny_open_clip_files, kind, ReferenceMaPLeCLIP)
    activations = {*fast.image_encoder.activations, *fast.text_encoder.activations}
    assert activations == {activation}
    image = torch.randn(3, 3, 32, 32)
    logits, expected = fast(image), reference(image)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    labels = torch.tensor([0, 3, 6])
    gradients = torch.autograd.grad(
        F.cross_entropy(logits, labels), list(fast.prompt_learner.parameters())
    )
    reference_gradients = torch.autograd.grad(
        F.cross_entropy(expected, labels), list(reference.prompt_learner.parameters())
    )
    for gradient, expected_gradient in zip(gradients, reference_gradients, strict=True):
        assert gradient.abs().sum() > 0
        assert (gradient - expected_gradient).norm() <= 1e-5 * expected_gradient.norm()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("eva02", "its image tower is timm's .*EVA02 and SigLIP"),
        ("bidirectional_last", "its text attention is bidirectional"),
        ("first_pool", "its text attention is bidirectional"),
    ],
)
def test_open_clip_towers_maple_cannot_prompt_are_refused_naming_the_backbone(
    tiny_open_clip_files, kind, message
):
    """A timm image tower (EVA02, SigLIP) or a non-causal text tower: a ValueError naming the
    backbone, the reason and the backbones MaPLe runs on."""
    clip_model = load_backbone(tiny_open_clip_name(kind), str(tiny_open_clip_files[kind]))
    name = re.escape(tiny_open_clip_name(kind))
    with pytest.raises(ValueError, match=rf"MaPLe cannot run on {name}: {message}.*CLIP-arch"):
        MaPLePromptLearner(clip_model, CLASSNAMES, 2, "a photo of a", 1)


# ------------------------------------------------------------------------------------------------
# The Dassl trainers

dassl = pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README)")
from devkit.train_runs import accuracy, build, cli_args, run_train_py, snapshot  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from devkit.synthetic_data import write_caltech101

    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=4, images_per_class=8)


def trainable(trainer) -> dict[str, torch.Tensor]:
    return {
        name: param.detach().clone()
        for name, param in trainer.model.named_parameters()
        if param.requires_grad
    }


def test_every_prompt_tensor_gets_a_gradient_and_only_the_prompt_learner_changes(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """One epoch of MaPLe: every trainable tensor has a non-zero gradient, all of them move, CLIP
    (both towers) stays as it was, and the checkpoint holds the official keys."""
    trainer = build(
        monkeypatch, "MaPLe", MAPLE_TINY, tmp_path, data_root, tiny_clip_files["ViT"], *FAST,
        "TEST.NO_TEST", "True", epochs=1,
    )  # fmt: skip
    assert sorted(trainable(trainer)) == sorted(TRAINABLE)
    batch = next(iter(trainer.train_loader_x))
    step = trainer.gradients(*trainer.parse_batch_train(batch))
    assert all(float(gradient.abs().sum()) > 0 for gradient in step.gradients)
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == sorted(TRAINABLE)
    state = torch.load(tmp_path / "MultiModalPromptLearner" / "model.pth.tar-1")["state_dict"]
    assert sorted(state) == sorted(TRAINABLE)


def test_prograd_maple_with_lambda_zero_steps_exactly_as_maple(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """λ=0: ProGradMaPLe's prompts after an epoch equal MaPLe's, bit for bit (its teacher pass
    changes nothing); its diagnostics are logged per epoch."""
    results = {}
    for name in ("MaPLe", "ProGradMaPLe"):
        trainer = build(
            monkeypatch, name, PROGRAD_MAPLE_TINY, tmp_path / name, data_root,
            tiny_clip_files["ViT"], *FAST, "LOSS.LAMBDA", "0.0", "TEST.NO_TEST", "True",
            epochs=1,
        )  # fmt: skip
        start = trainable(trainer)
        trainer.train()
        results[name] = (start, trainable(trainer))
    (maple_start, maple_end), (prograd_start, prograd_end) = results.values()
    for name in TRAINABLE:
        assert torch.equal(maple_start[name], prograd_start[name])
        assert torch.equal(maple_end[name], prograd_end[name]), name
        assert not torch.equal(maple_start[name], maple_end[name]), name
    assert trainer.diagnostics.summary()["mean_removed_norm"] == 0.0  # λ=0 removes nothing


def test_resume_after_an_interruption_ends_where_the_uninterrupted_run_ends(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """ProGradMaPLe, 2 epochs: stopped after epoch 1 and started again (resume state: prompts,
    optimizer, schedule, RNG), it ends bit for bit where the run without a stop ends."""
    opts = (*FAST, "TEST.NO_TEST", "True")
    whole = build(monkeypatch, "ProGradMaPLe", PROGRAD_MAPLE_TINY, tmp_path / "whole", data_root,
                  tiny_clip_files["ViT"], *opts)  # fmt: skip
    whole.train()
    stopped = build(monkeypatch, "ProGradMaPLe", PROGRAD_MAPLE_TINY, tmp_path / "cut", data_root,
                    tiny_clip_files["ViT"], *opts)  # fmt: skip
    stopped.before_train()
    stopped.epoch = 0
    stopped.before_epoch()
    stopped.run_epoch()
    stopped.after_epoch()  # writes the resume state, as after any epoch but the last
    resumed = build(monkeypatch, "ProGradMaPLe", PROGRAD_MAPLE_TINY, tmp_path / "cut", data_root,
                    tiny_clip_files["ViT"], *opts)  # fmt: skip
    resumed.train()
    for name, value in trainable(whole).items():
        assert torch.equal(value, trainable(resumed)[name]), name


def test_official_form_checkpoint_evaluates_through_train_py_eval_only(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """A MaPLe run writes MultiModalPromptLearner/model.pth.tar-1; the same checkpoint holding
    the frozen CLIP too, as the official code saves it, evaluates through `train.py --eval-only`
    to the trained model's accuracy."""
    out, clip_file = tmp_path / "run", tiny_clip_files["ViT"]
    trainer = build(monkeypatch, "MaPLe", MAPLE_TINY, out, data_root, clip_file, *FAST, epochs=1)
    trainer.train()
    trained_accuracy = trainer.test()
    checkpoint = torch.load(out / "MultiModalPromptLearner" / "model.pth.tar-1")
    assert sorted(checkpoint["state_dict"]) == sorted(TRAINABLE)
    clip_state = build_tiny_clip("ViT").state_dict()
    checkpoint["state_dict"].update({f"image_encoder.{k}": v for k, v in clip_state.items()})
    official = tmp_path / "official"
    (official / "MultiModalPromptLearner").mkdir(parents=True)
    torch.save(checkpoint, official / "MultiModalPromptLearner" / "model.pth.tar-1")
    flags = ("--eval-only", "--model-dir", str(official), "--load-epoch", "1")
    log = run_train_py(
        *cli_args("MaPLe", MAPLE_TINY, tmp_path / "eval", data_root, clip_file, *FAST, flags=flags)
    )
    assert "frozen CLIP tensors, not read" in log
    assert accuracy(log) == round(trained_accuracy, 1)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["TRAINER.MAPLE.PREC", "bf16"], 'TRAINER.MAPLE.PREC is "bf16"; it takes one of'),
        (["TRAINER.MAPLE.PROMPT_DEPTH", "3"], "PROMPT_DEPTH is 3; use an integer from 1 .* to 2"),
        (["TRAINER.MAPLE.N_CTX", "3", "TRAINER.MAPLE.CTX_INIT", "a_photo"], "has 2 tokens but"),
        (["MODEL.BACKBONE.NAME", "RN50", "MODEL.BACKBONE.PATH", "''"], "a ResNet; MaPLe prompts"),
    ],
)
def test_bad_maple_settings_are_refused_with_key_value_and_fix(
    monkeypatch, tmp_path, data_root, tiny_clip_files, opts, message
):
    """Bad PREC / PROMPT_DEPTH / CTX_INIT, a ResNet backbone: a ValueError naming
    the key, the value and what to use instead."""
    with pytest.raises(ValueError, match=message):
        build(monkeypatch, "MaPLe", MAPLE_TINY, tmp_path, data_root, tiny_clip_files["ViT"],
              *FAST, *opts)  # fmt: skip


def test_prograd_maple_trains_on_a_gelu_open_clip_vit(
    monkeypatch, tmp_path, data_root, tiny_open_clip_files
):
    """ProGradMaPLe built by train.py's config path on an open_clip GELU ViT: one epoch moves
    every prompt tensor and keeps it finite."""
    trainer = build(
        monkeypatch, "ProGradMaPLe", PROGRAD_MAPLE_TINY, tmp_path, data_root,
        tiny_open_clip_files["gelu"], *FAST, "MODEL.BACKBONE.NAME", tiny_open_clip_name("gelu"),
        "TEST.NO_TEST", "True", epochs=1,
    )  # fmt: skip
    assert sorted(trainable(trainer)) == sorted(TRAINABLE)
    assert trainer.model.text_encoder.activations == ["gelu", "gelu"]
    start = trainable(trainer)
    trainer.train()
    for name, value in trainable(trainer).items():
        assert torch.isfinite(value).all()
        assert not torch.equal(value, start[name]), name


@pytest.mark.parametrize("precision", ["fp16", "amp"])
def test_prograd_maple_fp16_and_amp_train_on_the_cpu(
    monkeypatch, tmp_path, data_root, tiny_clip_files, precision
):
    """fp16 (ctx and proj in half, the deep prompts and couplings in fp32, as the official code)
    and amp train: every tensor finite and moved, no step skipped."""
    trainer = build(
        monkeypatch, "ProGradMaPLe", PROGRAD_MAPLE_TINY, tmp_path, data_root,
        tiny_clip_files["ViT"], *FAST, "TRAINER.MAPLE.PREC", precision, "TEST.NO_TEST", "True",
        epochs=1,
    )  # fmt: skip
    half = torch.float16 if precision == "fp16" else torch.float32
    assert trainer.prompt_learner.ctx.dtype == trainer.prompt_learner.proj.weight.dtype == half
    assert trainer.prompt_learner.compound_prompts_text[0].dtype == torch.float32
    start = trainable(trainer)
    trainer.train()
    for name, value in trainable(trainer).items():
        assert torch.isfinite(value).all()
        assert not torch.equal(value, start[name]), name
    assert trainer.skipped_steps == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("trainer_name", ["MaPLe", "ProGradMaPLe"])
@pytest.mark.parametrize("precision", ["fp16", "amp"])
def test_maple_trains_and_evaluates_on_cuda(
    monkeypatch, tmp_path, data_root, tiny_clip_files, precision, trainer_name
):
    """CUDA fp16 (ctx and proj in half, as the official code) / amp: the step runs on the GPU,
    stays finite, moves every trainable tensor, and a reloaded checkpoint gives the same
    accuracy."""
    opts = (*FAST, "TRAINER.MAPLE.PREC", precision, "USE_CUDA", "True")
    trainer = build(monkeypatch, trainer_name, PROGRAD_MAPLE_TINY, tmp_path, data_root,
                    tiny_clip_files["ViT"], *opts, epochs=1)  # fmt: skip
    assert trainer.device.type == "cuda"
    half = precision == "fp16"
    assert trainer.prompt_learner.ctx.dtype == (torch.float16 if half else torch.float32)
    assert trainer.prompt_learner.compound_prompts_text[0].dtype == torch.float32  # official
    start = trainable(trainer)
    trainer.train()
    for name, value in trainable(trainer).items():
        assert torch.isfinite(value).all()
        assert not torch.equal(value, start[name]), name
    assert trainer.skipped_steps == 0
    trained = trainer.test()
    fresh = build(monkeypatch, trainer_name, PROGRAD_MAPLE_TINY, tmp_path / "eval", data_root,
                  tiny_clip_files["ViT"], *opts)  # fmt: skip
    fresh.load_model(str(tmp_path), epoch=1)
    assert fresh.test() == trained


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "amp"])
def test_prograd_maple_trains_on_an_open_clip_vit_on_cuda(
    monkeypatch, tmp_path, data_root, tiny_open_clip_files, precision
):
    """CUDA fp16 / amp on an open_clip GELU ViT: the step runs on the GPU, stays finite, moves
    every trainable tensor and skips no step."""
    trainer = build(
        monkeypatch, "ProGradMaPLe", PROGRAD_MAPLE_TINY, tmp_path, data_root,
        tiny_open_clip_files["gelu"], *FAST, "TRAINER.MAPLE.PREC", precision, "USE_CUDA", "True",
        "MODEL.BACKBONE.NAME", tiny_open_clip_name("gelu"), epochs=1,
    )  # fmt: skip
    assert trainer.device.type == "cuda"
    start = trainable(trainer)
    trainer.train()
    for name, value in trainable(trainer).items():
        assert torch.isfinite(value).all()
        assert not torch.equal(value, start[name]), name
    assert trainer.skipped_steps == 0
