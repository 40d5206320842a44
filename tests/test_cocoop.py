"""CoCoOp and ProGradCoCoOp end to end with real Dassl: train.py with the real YAML files on a
synthetic Caltech101 copy and tiny CLIP checkpoints in OpenAI's format."""

import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
import train  # noqa: E402
from devkit.train_runs import accuracy, build, cli_args, run_train_py, snapshot  # noqa: E402
from trainers.clip_prompt import ReferenceTextEncoder  # noqa: E402
from trainers.prograd_ops import cross_entropy_loss, kl_to_teacher_loss  # noqa: E402
from trainers.steps import prograd_rule  # noqa: E402

COCOOP_YAML = "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"
COCOOP_RANDOM_YAML = "configs/trainers/CoCoOp/rn50_c4_ep10_batch1.yaml"
PROGRAD_COCOOP_YAML = "configs/trainers/ProGradCoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"
TRAINABLE = [
    "prompt_learner.ctx",
    "prompt_learner.meta_net.linear1.weight",
    "prompt_learner.meta_net.linear1.bias",
    "prompt_learner.meta_net.linear2.weight",
    "prompt_learner.meta_net.linear2.bias",
]
# Small CPU runs: fp32, 2 images per step (the configs' batch 1 is kept where it matters).
FAST = ("TRAINER.COCOOP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "OPTIM.LR", "0.05")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from devkit.synthetic_data import write_caltech101

    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=4, images_per_class=8)


def trainable(trainer) -> dict[str, torch.Tensor]:
    return {
        name: param.detach().clone()
        for name, param in trainer.model.named_parameters()
        if param.requires_grad
    }


def test_cocoop_rn_trains_writes_a_cocoop_checkpoint_and_eval_only_reproduces_it(
    tmp_path, data_root, tiny_clip_files
):
    """train.py --trainer CoCoOp (RN): checkpoint with CoCoOp's keys; --eval-only, same accuracy."""
    out = tmp_path / "run"
    run_train_py(
        *cli_args(
            "CoCoOp", COCOOP_RANDOM_YAML, out, data_root, tiny_clip_files["RN"], *FAST, epochs=1
        )
    )
    log = (out / "log.txt").read_text()
    assert "Finish training" in log
    assert re.search(r"loss [\d.]+ .*acc [\d.]+", log)
    checkpoint = torch.load(out / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert set(checkpoint["state_dict"]) == {
        "ctx",
        "token_prefix",
        "token_suffix",
        "meta_net.linear1.weight",
        "meta_net.linear1.bias",
        "meta_net.linear2.weight",
        "meta_net.linear2.bias",
    }
    assert checkpoint["state_dict"]["ctx"].shape == (4, 64)  # N_CTX 4, random init

    eval_out = tmp_path / "eval"
    flags = ("--eval-only", "--model-dir", str(out), "--load-epoch", "1")
    args = cli_args(
        "CoCoOp", COCOOP_RANDOM_YAML, eval_out, data_root, tiny_clip_files["RN"], *FAST,
        flags=flags, epochs=1,
    )  # fmt: skip
    run_train_py(*args)
    assert accuracy((eval_out / "log.txt").read_text()) == accuracy(log)


def test_cocoop_vit_changes_only_the_prompt_learner_and_reloads_to_the_same_accuracy(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """CoCoOp (ViT), batch 1 as its configs: only ctx and the meta-net move; the saved epoch
    loads into a fresh trainer and gives the same accuracy."""
    clip_file = tiny_clip_files["ViT"]
    trainer = build(
        monkeypatch, "CoCoOp", COCOOP_YAML, tmp_path, data_root, clip_file, *FAST,
        "DATALOADER.TRAIN_X.BATCH_SIZE", "1", epochs=1,
    )  # fmt: skip
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == sorted(TRAINABLE)
    assert sorted(trainable(trainer)) == sorted(TRAINABLE)
    trained_accuracy = trainer.test()

    fresh = build(monkeypatch, "CoCoOp", COCOOP_YAML, tmp_path / "eval", data_root, clip_file,
                  *FAST)  # fmt: skip
    fresh.load_model(str(tmp_path), epoch=1)
    for name, value in trainable(fresh).items():
        assert torch.equal(value, after[name])
    assert fresh.test() == trained_accuracy


def coop_repository_checkpoint(path: Path, state: dict[str, torch.Tensor], n_classes: int) -> None:
    """A checkpoint as the CoOp repository's CoCoOp saves it (upstream Dassl's save_model): its
    keys, token buffers of the run it came from (here: another class count), an SGD state."""
    ctx_dim, n_ctx = state["ctx"].shape
    state_dict = OrderedDict(
        [
            ("ctx", state["ctx"]),
            ("token_prefix", torch.randn(n_classes, 1, ctx_dim)),
            ("token_suffix", torch.randn(n_classes, 77 - 1 - n_ctx, ctx_dim)),
            *((f"meta_net.{k}", v) for k, v in state.items() if k != "ctx"),
        ]
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(v.clone()) for v in state.values()], lr=0.1)
    path.parent.mkdir(parents=True)
    torch.save(
        {
            "state_dict": state_dict,
            "epoch": 10,
            "optimizer": optimizer.state_dict(),
            "scheduler": {"last_epoch": 10, "base_lrs": [0.002]},
            "val_result": None,
        },
        path,
    )


def test_a_coop_repository_checkpoint_evaluates(monkeypatch, tmp_path, data_root, tiny_clip_files):
    """--eval-only on a checkpoint in the CoOp repository's format (from 10 other classes): its
    context and meta-net are what is evaluated; the accuracy matches the loaded weights."""
    clip_file = tiny_clip_files["RN"]
    torch.manual_seed(5)
    reference = build(monkeypatch, "CoCoOp", COCOOP_YAML, tmp_path / "ref", data_root, clip_file,
                      *FAST)  # fmt: skip
    state = {
        name.removeprefix("meta_net."): value + 0.1 * torch.randn_like(value)
        for name, value in reference.prompt_learner.state_dict().items()
        if not name.startswith("token_")
    }
    model_dir = tmp_path / "coop_repository_run"
    coop_repository_checkpoint(model_dir / "prompt_learner" / "model.pth.tar-10", state, 10)
    with torch.no_grad():
        reference.prompt_learner.ctx.copy_(state["ctx"])
        for name, param in reference.prompt_learner.meta_net.named_parameters():
            param.copy_(state[name])
    expected = reference.test()

    eval_out = tmp_path / "eval"
    flags = ("--eval-only", "--model-dir", str(model_dir), "--load-epoch", "10")
    run_train_py(
        *cli_args("CoCoOp", COCOOP_YAML, eval_out, data_root, clip_file, *FAST, flags=flags)
    )
    log = (eval_out / "log.txt").read_text()
    assert 'Loading weights to prompt_learner from "' in log
    assert accuracy(log) == pytest.approx(expected, abs=1e-6)
    loaded = build(monkeypatch, "CoCoOp", COCOOP_YAML, tmp_path / "in_process", data_root,
                   clip_file, *FAST)  # fmt: skip
    loaded.load_model(str(model_dir), epoch=10)
    assert torch.equal(loaded.prompt_learner.ctx.detach(), state["ctx"])
    for name, param in loaded.prompt_learner.meta_net.named_parameters():
        assert torch.equal(param.detach(), state[name])


def test_init_weights_start_from_a_prompt_learner_checkpoint(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """MODEL.INIT_WEIGHTS: the context and meta-net start from the checkpoint (token buffers of
    another class set are ignored)."""
    clip_file = tiny_clip_files["RN"]
    source = build(monkeypatch, "CoCoOp", COCOOP_YAML, tmp_path / "a", data_root, clip_file, *FAST)
    state = {k: v + 0.5 for k, v in source.prompt_learner.state_dict().items()}
    state["token_suffix"] = torch.zeros(7, 72, 64)
    path = tmp_path / "init.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    started = build(monkeypatch, "CoCoOp", COCOOP_YAML, tmp_path / "b", data_root, clip_file,
                    *FAST, "MODEL.INIT_WEIGHTS", str(path))  # fmt: skip
    for name, value in started.prompt_learner.state_dict().items():
        if name.startswith("token_"):
            assert torch.equal(value, source.prompt_learner.state_dict()[name])
        else:
            assert torch.equal(value, state[name])


def test_prograd_cocoop_with_lambda_zero_steps_exactly_as_cocoop(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """λ=0: ProGradCoCoOp's context and meta-net after an epoch equal CoCoOp's, bit for bit."""
    results = {}
    for name in ("CoCoOp", "ProGradCoCoOp"):
        trainer = build(
            monkeypatch, name, PROGRAD_COCOOP_YAML, tmp_path / name, data_root,
            tiny_clip_files["RN"], *FAST, "LOSS.LAMBDA", "0.0", "TEST.NO_TEST", "True", epochs=1,
        )  # fmt: skip
        start = trainable(trainer)
        trainer.train()
        results[name] = (start, trainable(trainer))
    (cocoop_start, cocoop_end), (prograd_start, prograd_end) = results.values()
    assert sorted(cocoop_end) == sorted(TRAINABLE)
    for name in TRAINABLE:
        assert torch.equal(cocoop_start[name], prograd_start[name])
        assert torch.equal(cocoop_end[name], prograd_end[name]), name
    assert not torch.equal(cocoop_start[TRAINABLE[0]], cocoop_end[TRAINABLE[0]])


def test_prograd_cocoop_projects_conflicting_steps_per_tensor_or_as_a_whole(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """λ=1: some step conflicts (logged); per-tensor and whole-vector runs end elsewhere than
    CoCoOp's and than each other (several tensors: the two readings differ)."""
    summaries, ends = {}, {}
    for name, projection in (
        ("CoCoOp", "per_tensor"),
        ("ProGradCoCoOp", "per_tensor"),
        ("ProGradCoCoOp", "whole"),
    ):
        trainer = build(
            monkeypatch, name, PROGRAD_COCOOP_YAML, tmp_path / f"{name}_{projection}", data_root,
            tiny_clip_files["RN"], *FAST, "LOSS.PROJECTION", projection, "TEST.NO_TEST", "True",
            epochs=1,
        )  # fmt: skip
        run = summaries.setdefault(f"{name}_{projection}", [])
        original = trainer.forward_backward

        def recording(batch, original=original, run=run):
            run.append(original(batch))
            return run[-1]

        trainer.forward_backward = recording
        trainer.train()
        ends[f"{name}_{projection}"] = trainable(trainer)[TRAINABLE[0]]
    for projection in ("per_tensor", "whole"):
        run = summaries[f"ProGradCoCoOp_{projection}"]
        assert {"xe_loss", "kl_loss", "acc", "conflict"} <= set(run[0])
        assert any(summary["conflict"] == 1.0 for summary in run), projection
        assert not torch.equal(ends["CoCoOp_per_tensor"], ends[f"ProGradCoCoOp_{projection}"])
    assert not torch.equal(ends["ProGradCoCoOp_per_tensor"], ends["ProGradCoCoOp_whole"])


@pytest.mark.parametrize("per_tensor", [True, False])
def test_a_conflicting_cocoop_update_with_lambda_one_ends_orthogonal_to_the_general_direction(
    monkeypatch, tmp_path, data_root, tiny_clip_files, per_tensor
):
    """On a real ProGradCoCoOp step whose gradients conflict: the whole update is orthogonal to
    g_kl (whole vector), or each conflicting tensor's is to its part (per tensor)."""
    trainer = build(monkeypatch, "ProGradCoCoOp", PROGRAD_COCOOP_YAML, tmp_path, data_root,
                    tiny_clip_files["ViT"], *FAST)  # fmt: skip
    params = trainer.trainable_params
    with torch.no_grad():  # the tiny meta-net has 2 hidden units: keep them active (non-zero grads)
        trainer.prompt_learner.meta_net.linear1.bias.add_(1.0)
    image, label = trainer.parse_batch_train(next(iter(trainer.train_loader_x)))
    student = trainer.model(image)
    xe_loss = cross_entropy_loss(student, label)
    # A general direction that conflicts with the domain one: the KL to a teacher sure of
    # another class than the label.
    teacher = 20.0 * torch.nn.functional.one_hot((label + 1) % student.shape[1], student.shape[1])
    kl_loss = kl_to_teacher_loss(student, teacher.float(), 1.0)
    g_ce = torch.autograd.grad(xe_loss, params, retain_graph=True)
    g_kl = torch.autograd.grad(kl_loss, params, retain_graph=True)
    dots = [float((c * k).sum()) for c, k in zip(g_ce, g_kl, strict=True)]
    assert sum(dots) < 0 and any(d < 0 for d in dots)  # the premise: they conflict

    result = prograd_rule(xe_loss, kl_loss, params, trainer.precision, 1.0, per_tensor)
    assert result.conflicted and result.cosine < 0
    after = [float((g * k).sum()) for g, k in zip(result.gradients, g_kl, strict=True)]
    scale = [float(c.norm() * k.norm()) for c, k in zip(g_ce, g_kl, strict=True)]
    if per_tensor:
        for before_dot, after_dot, size, g, c in zip(
            dots, after, scale, result.gradients, g_ce, strict=True
        ):
            if before_dot < 0:
                assert abs(after_dot) < 1e-4 * size
            else:
                assert torch.equal(g, c.float())
    else:
        assert abs(sum(after)) < 1e-4 * sum(s**2 for s in scale) ** 0.5


@pytest.mark.parametrize("precision", ["fp16", "amp"])
def test_cocoop_fp16_and_amp_train_on_the_cpu(
    monkeypatch, tmp_path, data_root, tiny_clip_files, precision
):
    """fp16 (CLIP's half weights, half meta-net, as CoCoOp) and amp train: finite, moved."""
    trainer = build(
        monkeypatch, "CoCoOp", COCOOP_YAML, tmp_path, data_root, tiny_clip_files["ViT"], *FAST,
        "TRAINER.COCOOP.PREC", precision, "TEST.NO_TEST", "True", epochs=1,
    )  # fmt: skip
    half = precision == "fp16"
    assert trainer.prompt_learner.ctx.dtype == (torch.float16 if half else torch.float32)
    assert trainer.prompt_learner.meta_net.linear1.weight.dtype == trainer.prompt_learner.ctx.dtype
    with torch.no_grad():  # the tiny meta-net has 2 hidden units: keep them active (non-zero grads)
        trainer.prompt_learner.meta_net.linear1.bias.add_(1.0)
    start = trainable(trainer)
    trainer.train()
    for name, value in trainable(trainer).items():
        assert torch.isfinite(value).all()
        assert not torch.equal(value, start[name]), name
    assert trainer.skipped_steps == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("trainer_name", ["CoCoOp", "ProGradCoCoOp"])
@pytest.mark.parametrize("precision", ["fp16", "amp"])
def test_cocoop_trains_and_evaluates_on_cuda(
    monkeypatch, tmp_path, data_root, tiny_clip_files, precision, trainer_name
):
    """CUDA fp16 / amp: the step runs on the GPU, stays finite, moves every trainable tensor, and
    the evaluation accuracy is reproduced by a reloaded checkpoint."""
    trainer = build(
        monkeypatch, trainer_name, PROGRAD_COCOOP_YAML, tmp_path, data_root,
        tiny_clip_files["ViT"], *FAST, "TRAINER.COCOOP.PREC", precision, "USE_CUDA", "True",
        epochs=1,
    )  # fmt: skip
    assert trainer.device.type == "cuda"
    assert trainer.prompt_learner.ctx.is_cuda
    with torch.no_grad():  # the tiny meta-net has 2 hidden units: keep them active (non-zero grads)
        trainer.prompt_learner.meta_net.linear1.bias.add_(1.0)
    start = trainable(trainer)
    trainer.train()
    for name, value in trainable(trainer).items():
        assert torch.isfinite(value).all()
        assert not torch.equal(value, start[name]), name
    trained = trainer.test()
    fresh = build(
        monkeypatch, trainer_name, PROGRAD_COCOOP_YAML, tmp_path / "eval", data_root,
        tiny_clip_files["ViT"], *FAST, "TRAINER.COCOOP.PREC", precision, "USE_CUDA", "True",
    )  # fmt: skip
    fresh.load_model(str(tmp_path), epoch=1)
    assert fresh.test() == trained


@pytest.mark.parametrize(
    ("trainer_name", "opts", "message"),
    [
        (
            "CoCoOp",
            ["TRAINER.COCOOP.PREC", "fp8"],
            'TRAINER.COCOOP.PREC is "fp8"; it takes one of',
        ),
        (
            "CoCoOp",
            ["TRAINER.COCOOP.N_CTX", "0"],
            "TRAINER.COCOOP.N_CTX is 0; it takes an integer >= 1",
        ),
        ("CoCoOp", ["CTX_INIT: True"], "TRAINER.COCOOP.CTX_INIT is True; give the words"),
        (
            "CoCoOp",
            ["CTX_INIT: 4"],
            "TRAINER.COCOOP.CTX_INIT is 4; it takes None or True or False or text",
        ),
        ("CoCoOp", ["CTX_INIT: ___"], "TRAINER.COCOOP.CTX_INIT is '___', which has no tokens"),
        (
            "CoCoOp",
            ["TRAINER.COCOOP.CTX_INIT", "''", "TRAINER.COCOOP.N_CTX", "80"],
            r"TRAINER.COCOOP.N_CTX gives 80 context vectors, too many .* use at most 7\d",
        ),
        (
            "ProGradCoCoOp",
            ["LOSS.LAMBDA", "1.5"],
            r"LOSS.LAMBDA is 1.5; it takes a number in \[0, 1\]",
        ),
        (
            "ProGradCoCoOp",
            ["MODEL.TEXT_ENCODER", "fast"],
            'MODEL.TEXT_ENCODER is "fast"; it takes one of pa',
        ),
        (
            "ProGradCoCoOp",
            ["LOSS.PROJECTION", "tensor"],
            'LOSS.PROJECTION is "tensor"; it takes one of per_',
        ),
        (
            "ProGrad",
            ["LOSS.PROJECTION", "all"],
            'LOSS.PROJECTION is "all"; it takes one of per_tensor',
        ),
    ],
)
def test_bad_values_of_the_new_keys_are_refused_with_key_value_and_fix(
    monkeypatch, tmp_path, data_root, tiny_clip_files, trainer_name, opts, message
):
    """Bad PREC / N_CTX / CTX_INIT / PROJECTION: a ValueError naming the key, value and fix."""
    config = "configs/trainers/ProGrad/rn50.yaml" if trainer_name == "ProGrad" else COCOOP_YAML
    if opts[0].startswith("CTX_INIT:"):  # a YAML value (the command line must match its type)
        config = str(tmp_path / "cocoop.yaml")
        Path(config).write_text(f"TRAINER:\n  COCOOP:\n    {opts[0]}\n")
        opts = []
    with pytest.raises(ValueError, match=message):
        build(monkeypatch, trainer_name, config, tmp_path, data_root, tiny_clip_files["RN"], *opts)


def test_text_encoder_reference_builds_cocoop_with_clips_plain_encoder(
    monkeypatch, tmp_path, data_root, tiny_clip_files
):
    """MODEL.TEXT_ENCODER reference reaches CoCoOpCLIP (CoCoOp's own build_custom_clip)."""
    opts = ("MODEL.TEXT_ENCODER", "reference")
    trainer = build(monkeypatch, "CoCoOp", COCOOP_YAML, tmp_path, data_root, tiny_clip_files["RN"],
                    *FAST, *opts)  # fmt: skip
    assert isinstance(trainer.model.text_encoder, ReferenceTextEncoder)


def test_cocoop_configs_of_the_coop_repository_are_here():
    """CoCoOp's config names (and ProGradCoCoOp's), for every backbone; ProGrad's LOSS block."""
    root = Path(train.__file__).parent / "configs" / "trainers"
    variants = ("c4_ep10_batch1", "c4_ep10_batch1_ctxv1", "c8_ep10_batch1", "c16_ep10_batch1")
    for folder in ("CoCoOp", "ProGradCoCoOp"):
        for backbone in ("vit_b16", "rn50", "rn101", "vit_b32", "vit_l14"):
            for variant in variants:
                assert (root / folder / f"{backbone}_{variant}.yaml").is_file()
    cfg = train.setup_cfg(train.build_parser().parse_args(["--config-file", PROGRAD_COCOOP_YAML]))
    assert (cfg.TRAINER.COCOOP.N_CTX, cfg.TRAINER.COCOOP.CTX_INIT) == (4, "a photo of a")
    assert (cfg.LOSS.NAME, cfg.LOSS.LAMBDA, cfg.LOSS.PROJECTION) == ("prograd", 1.0, "per_tensor")
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 1 and cfg.OPTIM.MAX_EPOCH == 10
