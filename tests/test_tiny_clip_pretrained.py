"""The shipped tiny CLIP and the script that pretrains it (tools/pretrain_tiny_clip.py)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from datasets import tinyworld_world as world  # noqa: E402
from devkit import pretrain_tiny_clip as pretraining  # noqa: E402
from trainers.clip_prompt import load_clip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHANCE = 100 / 64


@pytest.fixture(scope="module")
def shipped_clip():
    return load_clip("", str(pretraining.SHIPPED)).float()


def test_tiny_configs_load_the_shipped_checkpoint_at_its_resolution():
    """configs/trainers/{CoOp,ProGrad}/tiny.yaml: the shipped file, 32x32 input, fp32."""
    for trainer in ("CoOp", "ProGrad"):
        config = yaml.safe_load((ROOT / "configs" / "trainers" / trainer / "tiny.yaml").open())
        assert ROOT / config["MODEL"]["BACKBONE"]["PATH"] == pretraining.SHIPPED
        assert config["INPUT"]["SIZE"] == f"({world.IMAGE_SIZE}, {world.IMAGE_SIZE})"
        assert config["TRAINER"]["COOP"]["PREC"] == "fp32"


def test_shipped_checkpoint_is_a_small_gzipped_openai_state_dict_of_the_issue_sizes(shipped_clip):
    """~2 MiB gzip of an fp16 state dict that build_model rebuilds with the pretraining sizes."""
    assert pretraining.SHIPPED.stat().st_size < 4 * 2**20
    with gzip.open(pretraining.SHIPPED) as handle:
        state = torch.load(handle, weights_only=True)
    assert all(tensor.dtype == torch.float16 for tensor in state.values())
    rebuilt = shipped_clip
    assert rebuilt.visual.input_resolution == world.IMAGE_SIZE
    assert rebuilt.text_projection.shape == (128, pretraining.ARCHITECTURE["embed_dim"])
    assert len(rebuilt.visual.transformer.resblocks) == pretraining.ARCHITECTURE["vision_layers"]
    assert len(rebuilt.transformer.resblocks) == pretraining.ARCHITECTURE["transformer_layers"]
    # Only the rows of the words TinyWorld uses were kept.
    used = (state["token_embedding.weight"] != 0).any(dim=1)
    assert torch.equal(used.nonzero().flatten(), pretraining.used_token_ids())


def test_shipped_tiny_clip_zero_shot_is_far_above_chance_in_both_domains(shipped_clip):
    """64-way zero-shot on held-out images: >= 30x chance on the pretraining domain, and >= 10x
    chance on the downstream domain of the TinyWorld dataset."""
    accuracy = {}
    for domain in world.DOMAINS:
        images, labels = pretraining.held_out_images(domain, per_class=8)
        accuracy[domain] = pretraining.zero_shot_accuracy(
            shipped_clip, images, labels, world.CLASSNAMES
        )
    assert accuracy["pretrain"] >= 30 * CHANCE, accuracy
    assert accuracy["downstream"] >= 10 * CHANCE, accuracy


def test_pretraining_is_deterministic_and_writes_what_load_clip_reads(tmp_path):
    """Two short runs with one seed give the same bytes; load_clip rebuilds the model."""
    paths = []
    for name in ("first.pt.gz", "second.pt.gz"):
        model = pretraining.pretrain(steps=1, seed=3, batch_size=8)
        paths.append(tmp_path / name)
        pretraining.save_checkpoint(pretraining.compact_state_dict(model), paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes()[:2] == b"\x1f\x8b"  # gzip
    loaded = load_clip("", str(paths[0]))
    assert loaded.visual.input_resolution == world.IMAGE_SIZE
    expected = model.state_dict()["ln_final.weight"].half()
    assert torch.equal(loaded.state_dict()["ln_final.weight"].half(), expected)
    assert not list(tmp_path.glob("*.partial"))


def test_pretrain_script_keeps_an_existing_checkpoint(tmp_path, capsys):
    """--output naming an existing file: exit 1, the file unchanged, nothing trained."""
    existing = tmp_path / "mine.pt.gz"
    existing.write_bytes(b"keep")
    assert pretraining.main(["--output", str(existing), "--steps", "1"]) == 1
    assert "exists and is kept" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        # --steps 0, --batch-size -4, --lr nan: refused by argparse (experiments/cli.py types),
        # probed for every tool by test_tool_flags.py.
        (["--output", "{blocker}/clip.pt.gz"], "is a file; give a folder to write the checkpoint"),
    ],
)
def test_pretrain_script_refuses_bad_arguments_before_training(
    arguments, message, tmp_path, capsys
):
    """Each bad value: exit 1 and a one-line error naming it, before a step is trained (an
    unwritable --output folder is found now, not after the pretraining)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    arguments = [a.format(blocker=blocker) for a in arguments]
    if "--output" not in arguments:
        arguments += ["--output", str(tmp_path / "new.pt.gz")]
    assert pretraining.main(arguments) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Pretraining" not in captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
