"""Our fixes for upstream Dassl on current torch: warmup scheduler and checkpoint loading."""

import math

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
from dassl.config import get_cfg_default  # noqa: E402
from dassl.engine.trainer import TrainerBase  # noqa: E402
from dassl.optim import build_optimizer  # noqa: E402
from dassl.utils import save_checkpoint  # noqa: E402

from trainers.dassl_compat import (  # noqa: E402
    CheckpointMixin,
    build_lr_scheduler,
    load_checkpoint,
)


def make_optim_cfg(max_epoch=5, warmup_type="constant"):
    cfg = get_cfg_default()
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.002
    cfg.OPTIM.MAX_EPOCH = max_epoch
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = warmup_type
    cfg.OPTIM.WARMUP_CONS_LR = 1e-5
    return cfg.OPTIM


def lrs_over_epochs(optim, sched, epochs):
    lrs = []
    for _ in range(epochs):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return lrs


def test_constant_warmup_then_cosine():
    """Epoch 1 runs at WARMUP_CONS_LR, then cosine from LR, as upstream Dassl's schedule."""
    optim_cfg = make_optim_cfg(max_epoch=5)
    optim = build_optimizer(torch.nn.Linear(2, 2), optim_cfg)
    lrs = lrs_over_epochs(optim, build_lr_scheduler(optim, optim_cfg), 5)
    expected = [1e-5] + [0.001 * (1 + math.cos(math.pi * e / 5)) for e in range(4)]
    assert lrs == pytest.approx(expected, rel=1e-6)


def test_scheduler_state_reloads_with_safe_torch_load(tmp_path):
    """Our scheduler state is plain data: it saves and reloads under weights_only=True."""
    optim_cfg = make_optim_cfg(max_epoch=6)
    optim = build_optimizer(torch.nn.Linear(2, 2), optim_cfg)
    sched = build_lr_scheduler(optim, optim_cfg)
    lrs_over_epochs(optim, sched, 3)
    torch.save({"scheduler": sched.state_dict()}, tmp_path / "s.pth")
    state = torch.load(tmp_path / "s.pth", weights_only=True)["scheduler"]

    optim2 = build_optimizer(torch.nn.Linear(2, 2), optim_cfg)
    sched2 = build_lr_scheduler(optim2, optim_cfg)
    sched2.load_state_dict(state)
    optim2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert lrs_over_epochs(optim2, sched2, 3) == pytest.approx(lrs_over_epochs(optim, sched, 3))


def test_upstream_dassl_scheduler_state_with_pickled_successor_loads(tmp_path):
    """A checkpoint whose scheduler state holds the pickled successor (upstream Dassl) loads."""
    optim_cfg = make_optim_cfg(max_epoch=6)
    optim = build_optimizer(torch.nn.Linear(2, 2), optim_cfg)
    sched = build_lr_scheduler(optim, optim_cfg)
    lrs_over_epochs(optim, sched, 3)
    upstream_state = sched.state_dict()
    upstream_state["successor"] = sched.successor  # what Dassl's _LRScheduler state holds
    upstream_state["cons_lr"] = upstream_state.pop("warmup_lr")
    torch.save({"scheduler": upstream_state}, tmp_path / "upstream.pth")

    checkpoint = load_checkpoint(str(tmp_path / "upstream.pth"))
    sched2 = build_lr_scheduler(optim, optim_cfg)
    sched2.load_state_dict(checkpoint["scheduler"])
    assert sched2.successor.last_epoch == sched.successor.last_epoch
    assert sched2.warmup_lr == 1e-5


class PromptTrainer(CheckpointMixin, TrainerBase):
    """Real Dassl TrainerBase with our checkpoint loading and one registered prompt."""

    def __init__(self, ctx_shape=(4, 8)):
        super().__init__()
        module = torch.nn.Module()
        module.ctx = torch.nn.Parameter(torch.zeros(ctx_shape))
        module.register_buffer("token_prefix", torch.zeros(3, 1, 8))
        self.register_model("prompt_learner", module, None, None)


def write_dassl_checkpoint(directory, ctx, epoch=2, prefix_classes=5):
    """A checkpoint written by Dassl's own save_checkpoint (CoOp's format)."""
    state = {"ctx": ctx, "token_prefix": torch.ones(prefix_classes, 1, 8)}
    save_checkpoint(
        {
            "state_dict": state,
            "epoch": epoch,
            "optimizer": None,
            "scheduler": None,
            "val_result": None,
        },
        str(directory / "prompt_learner"),
    )


def test_load_model_reads_epoch_checkpoint_with_val_result_none(tmp_path, capsys):
    """--load-epoch checkpoints (val_result None) load; token_prefix of other classes is ignored."""
    ctx = torch.randn(4, 8)
    write_dassl_checkpoint(tmp_path, ctx)
    trainer = PromptTrainer()
    trainer.load_model(str(tmp_path), epoch=2)
    assert torch.equal(trainer._models["prompt_learner"].ctx.detach(), ctx)
    assert torch.equal(trainer._models["prompt_learner"].token_prefix, torch.zeros(3, 1, 8))
    assert "epoch=2" in capsys.readouterr().out


def test_checkpoint_with_other_shape_names_key_and_settings(tmp_path):
    """A ctx of another N_CTX/CSC is refused with the key, both shapes and the settings to fix."""
    write_dassl_checkpoint(tmp_path, torch.randn(16, 8))
    with pytest.raises(ValueError, match=r"'ctx' has shape \(16, 8\).*\(4, 8\).*N_CTX"):
        PromptTrainer().load_model(str(tmp_path), epoch=2)


def test_missing_checkpoint_names_the_path(tmp_path):
    """A wrong --load-epoch gives FileNotFoundError with the file it looked for."""
    with pytest.raises(FileNotFoundError, match="prompt_learner/model.pth.tar-7"):
        PromptTrainer().load_model(str(tmp_path), epoch=7)
