"""Shared fixtures: tiny CLIP checkpoints written once per session."""

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OUTDATED_IGNORE", "1")  # no version check on import of Dassl's wilds
# The shared test-time features (TEST.SHARED_FEATURES) of this session's runs, train.py
# subprocesses included, go to a folder of their own, never to the user's cache.
os.environ["PROGRAD_FEATURE_CACHE"] = tempfile.mkdtemp(prefix="prograd-features-")
atexit.register(shutil.rmtree, os.environ["PROGRAD_FEATURE_CACHE"], True)

from devkit.tiny_clip import write_tiny_clip  # noqa: E402

# With PROGRAD_REQUIRE_DASSL set, a test skipped for want of Dassl fails the run (.ci/run).
pytest_plugins = ["devkit.require_dassl"]


@pytest.fixture(scope="session")
def tiny_clip_files(tmp_path_factory) -> dict[str, Path]:
    """{"RN": path, "ViT": path} of tiny CLIP state dicts in OpenAI's format."""
    folder = tmp_path_factory.mktemp("clip")
    return {arch: write_tiny_clip(folder / f"tiny_{arch}.pt", arch) for arch in ("RN", "ViT")}


@pytest.fixture(scope="session")
def tinyworld_root(tmp_path_factory) -> Path:
    """A DATASET.ROOT holding a generated tinyworld/ (written once per session)."""
    from datasets.tinyworld_world import ensure_tinyworld  # the datasets package needs Dassl

    root = tmp_path_factory.mktemp("tinyworld_data")
    ensure_tinyworld(root)
    return root


@pytest.fixture(scope="session")
def tiny_open_clip_files(tmp_path_factory) -> dict[str, Path]:
    """{kind: weights file} of tiny open_clip models of every tower kind ("openai": tiny OpenAI
    weights with open_clip's config; "eva02": a timm EVA02 tower, registered with timm in this
    process), written once."""
    from devkit.tiny_clip import TINY_OPEN_CLIP_KINDS, write_tiny_open_clip

    folder = tmp_path_factory.mktemp("open_clip")
    kinds = [*TINY_OPEN_CLIP_KINDS, "openai", "eva02"]  # eva02 registers its timm tower
    if importlib.util.find_spec("transformers"):  # SigLIP's Hugging Face tokenizer needs it
        kinds.append("siglip")
    return {kind: write_tiny_open_clip(folder / kind, kind) for kind in kinds}
