"""Exact resumption of an interrupted run: a small rolling state file written after each epoch.

Dassl only saves `model.pth.tar-N` at TRAIN.CHECKPOINT_FREQ or the last epoch (a CoOp checkpoint
holds the token buffers of every class: 60 MB for ImageNet, too much for every epoch), and it
does not save the random-number generators, so a resumed run would draw other batches and
augmentations. After every epoch but the last we write `<output>/resume/state.pth`: the trainable
state (no token buffers), optimizer, scheduler, loss scaler and every RNG, replaced atomically.
Restarting the same command continues from it and ends with the same result as an uninterrupted
run.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from experiments.atomic import save_torch

RESUME_FILE = Path("resume") / "state.pth"
STATE_KEYS = ("epoch", "models", "rng")  # what save_resume_state's state always holds


def rng_state() -> dict:
    """Every RNG a Dassl training loop draws from, as tensors and plain values."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.copy()), position, has_gauss, cached_gaussian),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy(), position, has_gauss, cached_gaussian))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume_state(output_dir: str, state: dict) -> Path:
    """Write `state` to `<output_dir>/resume/state.pth` atomically (never a half-written file)."""
    path = Path(output_dir) / RESUME_FILE
    save_torch(state, path, f"the resume state after epoch {state['epoch']}")
    return path


def load_resume_state(output_dir: str) -> dict | None:
    """The resume state of a run directory, or None when there is none."""
    path = Path(output_dir) / RESUME_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling a damaged or foreign file raises about anything
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise ValueError(f"{path} is damaged ({type(error).__name__}: {first_line})") from error
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"{path} is not a resume state (it lacks {', '.join(missing)})")
    return state
