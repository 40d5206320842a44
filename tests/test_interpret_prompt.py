"""tools/interpret_prompt.py: nearest vocabulary words of learned context vectors, read with the
token embedding of the backbone named in the run's config (tiny CLIP files, no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
from clip.simple_tokenizer import SimpleTokenizer  # noqa: E402

from tools.interpret_prompt import (  # noqa: E402
    backbone_for,
    load_token_embedding,
    main,
    nearest_words,
    parse_config_yaml,
    parse_log_config,
)
from train import build_parser, setup_cfg  # noqa: E402
from trainers.clip_prompt import load_clip, tokenize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORDS = "a photo of a dog"


@pytest.fixture(scope="module")
def tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def token_embedding(clip_file: Path) -> torch.Tensor:
    return load_clip("RN50", str(clip_file)).token_embedding.weight.detach().float()


def word_context(clip_file: Path, words: str = WORDS) -> torch.Tensor:
    """(M, D_t) context whose rows are exactly the token embeddings of `words`."""
    ids = tokenize([words])[0, 1 : 1 + len(words.split())]
    return token_embedding(clip_file)[ids].clone()


def config_dump(name: str, clip_file: Path, as_log: bool) -> str:
    """The run config train.py would record, as config.yaml (yacs dump) or as log.txt."""
    args = build_parser().parse_args([
        "--trainer", "ProGrad", "--config-file", str(ROOT / "configs/trainers/ProGrad/rn50.yaml"),
        "MODEL.BACKBONE.NAME", name, "MODEL.BACKBONE.PATH", str(clip_file),
    ])  # fmt: skip
    cfg = setup_cfg(args)
    if not as_log:
        return cfg.dump()
    return f"** Arguments **\nseed: 1\n** Config **\n{cfg}\nSetting fixed seed: 1\nepoch [1/1]\n"


def write_run(run_dir: Path, context: torch.Tensor, epoch: int = 3) -> Path:
    """A run directory holding a prompt_learner checkpoint in Dassl's format; returns its path."""
    checkpoint = run_dir / "prompt_learner" / f"model.pth.tar-{epoch}"
    checkpoint.parent.mkdir(parents=True)
    state_dict = {"ctx": context, "token_prefix": torch.zeros(4, 1, context.shape[-1])}
    torch.save({"state_dict": state_dict, "epoch": epoch, "optimizer": None}, checkpoint)
    return checkpoint


def test_context_made_of_word_embeddings_reads_back_those_words(tiny_clip_files, tokenizer):
    """ctx rows equal to the token embeddings of "a photo of a dog" give those words at 0."""
    clip_file = tiny_clip_files["RN"]
    neighbours = nearest_words(word_context(clip_file), token_embedding(clip_file), tokenizer, 3)
    assert [row[0].word for row in neighbours] == WORDS.split()
    assert all(row[0].distance < 1e-5 < row[1].distance for row in neighbours)
    assert all(row[1].distance <= row[2].distance for row in neighbours)


def test_class_specific_context_is_read_class_by_class(tiny_clip_files, tokenizer):
    """A (C, M, D) context gives C * M rows, class 0's vectors first."""
    clip_file = tiny_clip_files["RN"]
    context = torch.stack(
        [
            word_context(clip_file, "a photo of a dog"),
            word_context(clip_file, "the picture of one cat"),
        ]
    )
    neighbours = nearest_words(context, token_embedding(clip_file), tokenizer, 1)
    assert [row[0].word for row in neighbours] == "a photo of a dog the picture of one cat".split()


@pytest.mark.parametrize("config_file", ["config.yaml", "log.txt"])
def test_backbone_named_in_the_run_config_is_the_one_used(
    tmp_path, tiny_clip_files, capsys, config_file
):
    """A ViT-trained context is read with the ViT embedding the run's config names, not RN's."""
    context = word_context(tiny_clip_files["ViT"])
    # Sanity: the two tiny CLIPs embed words differently, so the choice shows in the result.
    assert not torch.allclose(context, word_context(tiny_clip_files["RN"]))
    run_dir = tmp_path / "run"
    checkpoint = write_run(run_dir, context)
    # With config.yaml, a log naming the RN file is there too: config.yaml must win.
    if config_file == "config.yaml":
        (run_dir / "log.txt").write_text(config_dump("RN50", tiny_clip_files["RN"], as_log=True))
    as_log = config_file == "log.txt"
    (run_dir / config_file).write_text(config_dump("ViT-B/16", tiny_clip_files["ViT"], as_log))

    backbone = backbone_for(checkpoint)
    assert (backbone.name, backbone.path) == ("ViT-B/16", str(tiny_clip_files["ViT"]))
    assert backbone.source.endswith(config_file)
    assert main([str(checkpoint), "--topk", "2"]) == 0
    assert f"  {WORDS}\n" in capsys.readouterr().out
    # --backbone-path overrides the config: the RN embedding reads other words.
    assert main([str(run_dir), "--backbone-path", str(tiny_clip_files["RN"])]) == 0
    output = capsys.readouterr().out
    assert f"  {WORDS}\n" not in output and f"({tiny_clip_files['RN']})" in output


def test_log_and_yaml_config_parsers_agree(tiny_clip_files):
    """log.txt's printed config and config.yaml's dump give the same keys and backbone."""
    from_log = parse_log_config(config_dump("RN50", tiny_clip_files["RN"], as_log=True))
    from_yaml = parse_config_yaml(config_dump("RN50", tiny_clip_files["RN"], as_log=False))
    assert set(from_log) == set(from_yaml) and len(from_log) > 100
    for key in ("MODEL.BACKBONE.NAME", "MODEL.BACKBONE.PATH", "TRAINER.NAME"):
        assert from_log[key] == from_yaml[key]


def test_context_width_other_than_the_embedding_is_a_clear_error(
    tmp_path, tiny_clip_files, tokenizer, capsys
):
    """A 32-wide context against a 64-wide token embedding: error naming both widths."""
    embedding = token_embedding(tiny_clip_files["RN"])
    with pytest.raises(ValueError, match=r"context vectors are 32 wide .* tiny is 64 wide"):
        nearest_words(torch.zeros(4, 32), embedding, tokenizer, backbone="tiny")
    checkpoint = write_run(tmp_path / "run", torch.zeros(4, 32))
    assert main([str(checkpoint), "--backbone-path", str(tiny_clip_files["RN"])]) == 2
    assert "--backbone-path FILE" in capsys.readouterr().err


def test_run_without_config_asks_for_the_backbone(tmp_path, tiny_clip_files, capsys):
    """No config.yaml and no log.txt: the error says to pass --backbone or --backbone-path."""
    checkpoint = write_run(tmp_path / "run", word_context(tiny_clip_files["RN"]))
    assert main([str(checkpoint)]) == 2
    error = capsys.readouterr().err
    assert "has no config.yaml and no log.txt" in error and "--backbone-path" in error


def test_missing_backbone_file_from_the_config_is_a_clear_error(tmp_path, tiny_clip_files):
    """A config naming a CLIP file that is not here: the error says where it came from."""
    run_dir = tmp_path / "run"
    checkpoint = write_run(run_dir, word_context(tiny_clip_files["RN"]))
    (run_dir / "config.yaml").write_text(config_dump("RN50", tmp_path / "gone.pt", as_log=False))
    with pytest.raises(FileNotFoundError, match=r"config.yaml\) is not available here"):
        load_token_embedding(backbone_for(checkpoint))
