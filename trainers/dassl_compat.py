"""Where upstream Dassl (KaiyangZhou/Dassl.pytorch, unmodified) breaks on current torch: the fix.

Covered upstream code, each fixed here and nowhere else:
1. dassl/optim/lr_scheduler.py `_BaseWarmupScheduler.__init__` passes `verbose` to torch's
   LRScheduler, which current torch rejects. -> `build_lr_scheduler` below builds Dassl's
   successor scheduler with Dassl's own code and wraps it in `WarmupScheduler`, which has the
   same schedule (constant or linear warmup, then the successor) without `verbose`, and whose
   state dict holds the successor's state dict instead of the pickled successor object.
2. dassl/utils/torchtools.py `load_checkpoint` calls `torch.load` with today's default
   `weights_only=True`, which cannot read the checkpoints Dassl itself writes (their scheduler
   state holds a pickled scheduler). -> `load_checkpoint` below; it is used by
   `CheckpointMixin.resume_model_if_exist` (covers `TrainerBase.resume_model_if_exist` /
   `resume_from_checkpoint`) and `CheckpointMixin.load_model`.
3. dassl/engine/trainer.py `TrainerBase.load_model` formats `val_result=None` with `:.1f`, which
   fails on every epoch checkpoint, and loads `token_prefix`/`token_suffix` strictly.
   -> `CheckpointMixin.load_model`, which also reads CoOp's and the official ProGrad's
   checkpoints (it ignores their class-name-dependent buffers).
4. Dassl's resume restores no RNG and finds only TRAIN.CHECKPOINT_FREQ checkpoints.
   -> `CheckpointMixin.resume_model_if_exist` also reads the per-epoch state of resume.py.
5. dassl/utils/torchtools.py `save_checkpoint` (called by `TrainerBase.save_model`) writes the
   checkpoint, its `checkpoint` pointer and `model-best.pth.tar` in place: a kill leaves a
   half-written file, and a full disk ends in torch's "unexpected pos ..." traceback.
   -> `SaveModelMixin.save_model` / `save_checkpoint` below: the same files and format, each
   written atomically by experiments/atomic.py, a full disk named in one paragraph.
"""

from __future__ import annotations

import os
import os.path as osp
import pickle
from collections import OrderedDict

import torch
from dassl.optim import build_lr_scheduler as dassl_build_lr_scheduler
from torch.optim.lr_scheduler import LRScheduler

from experiments.atomic import copy_file, save_torch, write_text

from .resume import RESUME_FILE, load_resume_state, rng_state, save_resume_state, set_rng_state

# Buffers that PromptLearner rebuilds from the class names of the run: never loaded.
IGNORED_CHECKPOINT_KEYS = ("token_prefix", "token_suffix")


class WarmupScheduler(LRScheduler):
    """Dassl's ConstantWarmupScheduler / LinearWarmupScheduler without the `verbose` argument.

    Epochs [0, warmup_epoch) use the warmup learning rate (constant `warmup_lr`, or linear from
    `warmup_lr` towards the base LR); afterwards the successor (e.g. cosine) takes over.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        warmup_type: str,
        warmup_lr: float,
    ):
        if warmup_type not in ("constant", "linear"):
            raise ValueError(
                f'OPTIM.WARMUP_TYPE must be "constant" or "linear", got "{warmup_type}"'
            )
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        self.warmup_type = warmup_type
        self.warmup_lr = warmup_lr
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        if self.warmup_type == "constant" or self.last_epoch == 0:
            return [self.warmup_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]

    def step(self, epoch: int | None = None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        successor = state.pop("successor")
        if isinstance(successor, LRScheduler):  # a checkpoint written by upstream Dassl
            successor = successor.state_dict()
        self.successor.load_state_dict(successor)
        # Upstream Dassl's own attribute name for the constant warmup LR.
        if "cons_lr" in state:
            state["warmup_lr"] = state.pop("cons_lr")
        if "min_lr" in state:
            state["warmup_lr"] = state.pop("min_lr")
        self.__dict__.update(state)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> LRScheduler:
    """Dassl's `build_lr_scheduler`, with the warmup that works on current torch."""
    if optim_cfg.WARMUP_EPOCH <= 0:
        return dassl_build_lr_scheduler(optimizer, optim_cfg)
    successor_cfg = optim_cfg.clone()
    successor_cfg.defrost()
    successor_cfg.WARMUP_EPOCH = 0
    successor = dassl_build_lr_scheduler(optimizer, successor_cfg)
    if not optim_cfg.WARMUP_RECOUNT:
        successor.last_epoch = optim_cfg.WARMUP_EPOCH
    warmup_lr = (
        optim_cfg.WARMUP_CONS_LR if optim_cfg.WARMUP_TYPE == "constant" else optim_cfg.WARMUP_MIN_LR
    )
    return WarmupScheduler(
        optimizer, successor, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_TYPE, warmup_lr
    )


def load_checkpoint(path: str) -> dict:
    """Read a Dassl checkpoint (ours, CoOp's or the official ProGrad's) onto the CPU.

    Tensors-only checkpoints load with torch's safe loader; checkpoints written by upstream Dassl
    pickle their scheduler, so those fall back to full unpickling, which is only safe for files you
    trust (your own runs, or released checkpoints). A missing, damaged or foreign file raises an
    error naming it (and, when missing, the checkpoints that are there).
    """
    if osp.isdir(path):
        raise ValueError(f"{path} is a folder, where a checkpoint file is expected.")
    if not osp.isfile(path):
        folder = osp.dirname(path)
        found = (
            sorted(f for f in os.listdir(folder) if f.startswith("model"))
            if osp.isdir(folder)
            else []
        )
        there = f" Checkpoints in {folder}: {', '.join(found)}." if found else ""
        raise FileNotFoundError(
            f"No checkpoint at {path}. Check --model-dir/--load-epoch (files are named "
            f"<model-dir>/prompt_learner/model.pth.tar-<epoch>, or model-best.pth.tar).{there}"
        )
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # unpickling a damaged or foreign file raises about anything
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise ValueError(
            f"{path} cannot be read as a checkpoint ({type(error).__name__}: {first_line}): it is "
            f"damaged (e.g. a run stopped while writing it, or a copy cut short) or not a "
            f"checkpoint. Copy it again from where it was trained, or use another epoch's file."
        ) from None
    if not isinstance(checkpoint, dict):
        raise not_a_checkpoint(path, type(checkpoint).__name__)
    return checkpoint


def not_a_checkpoint(path: str, held: object) -> ValueError:
    """The error for a file that loads but is not a Dassl checkpoint."""
    return ValueError(
        f"{path} is not a Dassl checkpoint: it has no 'state_dict' (it holds {held}). Give a "
        f"checkpoint written by a CoOp/ProGrad run (prompt_learner/model.pth.tar-<epoch>)."
    )


def checkpoint_state_dict(checkpoint: dict, path: str) -> dict:
    """The weights of a checkpoint read by :func:`load_checkpoint`, or a clear error."""
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, dict):
        raise not_a_checkpoint(path, list(checkpoint)[:6])
    return state_dict


def without_token_buffers(state_dict: dict) -> dict:
    """A prompt state dict without the buffers rebuilt from the class names."""
    return {k: v for k, v in state_dict.items() if k not in IGNORED_CHECKPOINT_KEYS}


def load_state_checked(model: torch.nn.Module, state_dict: dict, path: str) -> None:
    """Copy a checkpoint's tensors (token buffers ignored) into `model`, with a clear error when
    they do not fit."""
    state_dict = without_token_buffers(state_dict)
    expected = model.state_dict()
    for key, value in state_dict.items():
        if key in expected and expected[key].shape != value.shape:
            raise ValueError(
                f"{path}: '{key}' has shape {tuple(value.shape)} but this model expects "
                f"{tuple(expected[key].shape)}. The checkpoint was trained with other "
                f"N_CTX / CTX_INIT / CSC settings (TRAINER.COOP or TRAINER.COCOOP) or another "
                f"backbone; use the same ones to evaluate it."
            )
    missing = [k for k in expected if k not in state_dict and k not in IGNORED_CHECKPOINT_KEYS]
    if missing:
        raise ValueError(
            f"{path} lacks {missing}; it is not a checkpoint of a {type(model).__name__}."
        )
    unused = sorted(k for k in state_dict if k not in expected)
    if unused:  # e.g. a CoCoOp meta-net given to CoOp: say so rather than drop it silently
        print(f"Note: {path} also holds {unused}, which a {type(model).__name__} does not use")
    model.load_state_dict(state_dict, strict=False)


def save_checkpoint(state: dict, save_dir: str, is_best: bool = False, model_name: str = "") -> str:
    """Dassl's `save_checkpoint` (same files, same format), every file written atomically.

    Args:
        state: {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}.
        save_dir: `<run>/<model name>`.
        is_best: also copy it to `model-best.pth.tar`.
        model_name: the file name; default `model.pth.tar-<epoch>`.

    Returns:
        the checkpoint's path.
    """
    state = dict(state)  # Dassl drops DataParallel's "module." prefix
    state["state_dict"] = OrderedDict(
        (key[len("module.") :] if key.startswith("module.") else key, value)
        for key, value in state["state_dict"].items()
    )
    epoch = state["epoch"]
    name = model_name or f"model.pth.tar-{epoch}"
    path = osp.join(save_dir, name)
    save_torch(state, path, f"the checkpoint of epoch {epoch}")
    print(f"Checkpoint saved to {path}")
    write_text(osp.join(save_dir, "checkpoint"), f"{name}\n", "the name of the newest checkpoint")
    if is_best:
        best = osp.join(save_dir, "model-best.pth.tar")
        copy_file(path, best, "the best checkpoint")
        print(f'Best checkpoint saved to "{best}"')
    return path


class SaveModelMixin:
    """Dassl's `TrainerBase.save_model` through the atomic `save_checkpoint` (item 5)."""

    def save_model(
        self,
        epoch: int,
        directory: str,
        is_best: bool = False,
        val_result: float | None = None,
        model_name: str = "",
    ) -> None:
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
            }
            save_checkpoint(state, osp.join(directory, name), is_best, model_name)


class CheckpointMixin(SaveModelMixin):
    """Checkpoint saving and loading for Dassl trainers (module docstring, items 2, 3 and 5)."""

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load `<directory>/<name>/model.pth.tar-<epoch>` (default: model-best.pth.tar)."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            path = osp.join(directory, name, model_file)
            checkpoint = load_checkpoint(path)
            val_result = checkpoint.get("val_result")
            shown = "" if val_result is None else f", val_result={val_result:.1f}"
            epoch_shown = checkpoint.get("epoch", "?")
            print(f'Loading weights to {name} from "{path}" (epoch={epoch_shown}{shown})')
            state = self.checkpoint_state(checkpoint_state_dict(checkpoint, path), path)
            load_state_checked(self._models[name], state, path)

    def checkpoint_state(self, state_dict: dict, path: str) -> dict:
        """The part of a checkpoint's weights that the registered model takes (here: all)."""
        return state_dict

    def resume_model_if_exist(self, directory: str) -> int:
        """Continue from the newest of our per-epoch resume state and Dassl's last checkpoint.

        A state that cannot be resumed from (damaged, foreign, or from other settings) raises an
        error saying how to restart the run from scratch while keeping its logs.

        Returns:
            the epoch to start from (0: train from scratch).
        """
        try:
            return self.resume_from(directory)
        except Exception as error:  # whatever fails, the run cannot continue from these files
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(
                f"Cannot resume the run in {directory}: {message}. "
                f"{restart_instructions(directory, self.get_model_names())}"
            ) from error

    def resume_from(self, directory: str) -> int:
        """The body of :meth:`resume_model_if_exist`, without the error translation."""
        names = self.get_model_names()
        resume = load_resume_state(directory)
        dassl_epoch, checkpoints = 0, {}
        if all(osp.exists(osp.join(directory, name, "checkpoint")) for name in names):
            for name in names:
                with open(osp.join(directory, name, "checkpoint")) as file:
                    path = osp.join(directory, name, file.readline().strip())
                checkpoints[name] = (path, load_checkpoint(path))
            dassl_epoch = min(checkpoint["epoch"] for _, checkpoint in checkpoints.values())
        if resume is not None and resume["epoch"] > dassl_epoch:
            print(f"Resuming from {osp.join(directory, RESUME_FILE)} (epoch {resume['epoch']})")
            for name in names:
                self.restore_training_state(name, resume["models"][name], directory)
            self.restore_extra_state(resume.get("extra", {}))
            set_rng_state(resume["rng"])
            return resume["epoch"]
        if not checkpoints:
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        for name, (path, checkpoint) in checkpoints.items():
            print(f'Loading checkpoint from "{path}" (epoch {checkpoint["epoch"]})')
            self.restore_training_state(name, checkpoint, path)
        return dassl_epoch

    def restore_training_state(self, name: str, checkpoint: dict, path: str) -> None:
        """Weights, optimizer and scheduler of one registered model from a checkpoint dict."""
        load_state_checked(self._models[name], checkpoint_state_dict(checkpoint, path), path)
        if self._optims[name] is not None and checkpoint.get("optimizer") is not None:
            self._optims[name].load_state_dict(checkpoint["optimizer"])
        if self._scheds[name] is not None and checkpoint.get("scheduler") is not None:
            self._scheds[name].load_state_dict(checkpoint["scheduler"])

    def extra_state(self) -> dict:
        """Trainer state beyond the registered models to carry over a restart (e.g. a scaler)."""
        return {}

    def restore_extra_state(self, state: dict) -> None:
        """Restore what :meth:`extra_state` returned."""

    def save_resume_state(self) -> None:
        """After an epoch that is not the last: the state to continue exactly from here."""
        models = {}
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            models[name] = {
                "state_dict": without_token_buffers(self._models[name].state_dict()),
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
            }
        state = {
            "epoch": self.epoch + 1,
            "models": models,
            "extra": self.extra_state(),
            "rng": rng_state(),
        }
        save_resume_state(self.output_dir, state)


def restart_instructions(directory: str, model_names: list[str]) -> str:
    """How to restart a run from scratch: move its saved state aside; its logs stay.

    Args:
        directory: the run's output folder.
        model_names: the registered models, whose folders hold Dassl's checkpoints.
    """
    state = [
        osp.join(directory, name)
        for name in (str(RESUME_FILE.parent), *model_names, "tensorboard")
        if osp.exists(osp.join(directory, name))
    ]
    aside = osp.join(directory, "before-restart")
    moves = " ".join(f"'{path}'" for path in state)
    return (
        f"To restart this run from scratch and keep its logs, move its saved state aside: "
        f"mkdir '{aside}' && mv {moves} '{aside}/' and run the same command again (log.txt and "
        f"the older logs stay where they are; the new run writes its log beside them)."
    )
