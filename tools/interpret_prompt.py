"""The vocabulary words nearest to each learned context vector of a CoOp / ProGrad checkpoint.

Usage (from the repository root):
    python tools/interpret_prompt.py CHECKPOINT [--topk 3] [--backbone NAME] [--backbone-path FILE]

CHECKPOINT is ``<run>/prompt_learner/model.pth.tar-N`` (or a run directory: its last epoch). A
learned vector is not a word; its nearest rows of CLIP's token embedding (Euclidean distance, as
in CoOp's interpret_prompt.py), decoded with CLIP's tokenizer, show what it lies close to.

The token embedding is that of the backbone the run was trained with: MODEL.BACKBONE.NAME and
MODEL.BACKBONE.PATH from the run's ``config.yaml``, else from the config block train.py prints
into its ``log.txt``. ``--backbone`` / ``--backbone-path`` override them, e.g. for a checkpoint
copied without its run directory, or trained on a machine whose CLIP file is elsewhere.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import _root  # noqa: F401  (the repository root on sys.path)

# Dassl imports wilds, whose `outdated` dependency asks PyPI for new versions at import time.
os.environ.setdefault("OUTDATED_IGNORE", "1")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # clip's own import

import torch  # noqa: E402
import yaml  # noqa: E402
from clip.simple_tokenizer import SimpleTokenizer  # noqa: E402
from tabulate import tabulate  # noqa: E402

from experiments.cli import positive_int  # noqa: E402
from trainers.backbone import load_backbone, text_tower, tokenizer_of  # noqa: E402
from trainers.dassl_compat import load_checkpoint  # noqa: E402

CONFIG_FILE = "config.yaml"
BACKBONE_NAME_KEY = "MODEL.BACKBONE.NAME"
BACKBONE_PATH_KEY = "MODEL.BACKBONE.PATH"
_CONFIG_HEADER = "** Config **"
# One line of yacs' CfgNode.__str__: "KEY: value" for a leaf, "KEY:" opening a node.
_CONFIG_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?: (?P<value>.*))?$")
_EPOCH_FILE = re.compile(r"model\.pth\.tar-(\d+)")
_SHORTLIST_MARGIN = 32  # extra candidates re-measured exactly, see nearest_words


@dataclass(frozen=True)
class Backbone:
    """The CLIP whose token embedding interprets the context, and where that choice came from."""

    name: str
    path: str  # a local checkpoint file; "" loads `name` from the download cache
    source: str  # for messages: the config file read, or the command-line options

    def describe(self) -> str:
        return f"{self.name} ({self.path})" if self.path else self.name


@dataclass(frozen=True)
class Neighbour:
    """A vocabulary token near a context vector."""

    token_id: int
    word: str
    distance: float


def resolve_checkpoint(path: Path | str) -> Path:
    """The checkpoint file: `path` itself, or the last epoch saved in a run directory.

    Raises:
        FileNotFoundError: nothing at `path`, or a directory without prompt_learner checkpoints.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"No checkpoint at {path}. Give a file such as "
            f"<run>/prompt_learner/model.pth.tar-50, or the run directory."
        )
    folder = path if path.name == "prompt_learner" else path / "prompt_learner"
    epochs = sorted(
        (int(match.group(1)), file)
        for file in folder.glob("model.pth.tar-*")
        if (match := _EPOCH_FILE.fullmatch(file.name))
    )
    if epochs:
        return epochs[-1][1]
    if (folder / "model-best.pth.tar").is_file():
        return folder / "model-best.pth.tar"
    raise FileNotFoundError(
        f"{path} is a directory without prompt_learner/model.pth.tar-<epoch> files; give a "
        f"training run's directory (not an --eval-only one) or the checkpoint file itself."
    )


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory of ``<run>/prompt_learner/model.pth.tar-N``."""
    return Path(checkpoint).resolve().parent.parent


def _flatten(node: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class _TolerantLoader(yaml.SafeLoader):
    """Safe YAML loading that reads a `!!python/tuple` (yaml.dump of a tuple) as a list."""


_TolerantLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple", lambda loader, node: loader.construct_sequence(node)
)


def parse_config_yaml(text: str) -> dict[str, object]:
    """A yacs config dump as flat ``{"MODEL.BACKBONE.NAME": "RN50", ...}``."""
    content = yaml.load(text, Loader=_TolerantLoader)  # a SafeLoader: no arbitrary objects
    return _flatten(content) if isinstance(content, dict) else {}


def parse_log_config(text: str) -> dict[str, str]:
    """The config block train.py prints after "** Config **" in log.txt, as flat string values.

    yacs prints a nested CfgNode with two spaces per level; the block ends at the first line that
    is not a ``KEY: value`` line. Returns {} when the log has no config block.
    """
    lines = text.splitlines()
    try:
        start = lines.index(_CONFIG_HEADER) + 1
    except ValueError:
        return {}
    flat: dict[str, str] = {}
    parents: list[str] = []  # the keys of the nodes enclosing the current line
    for line in lines[start:]:
        match = _CONFIG_LINE.match(line)
        if match is None:
            break
        depth = len(match.group("indent")) // 2
        if depth > len(parents):
            break
        del parents[depth:]
        if match.group("value") is None:
            parents.append(match.group("key"))
        else:
            flat[".".join([*parents, match.group("key")])] = match.group("value").strip()
    return flat


def read_run_config(run_dir: Path) -> tuple[dict[str, object], Path] | None:
    """The run's config (flat keys) and the file it came from, or None when there is none.

    config.yaml is preferred; otherwise the newest log.txt / log.txt-<timestamp> holding a config
    block (a resumed run prints its config again into a new log).
    """
    config_file = run_dir / CONFIG_FILE
    if config_file.is_file():
        flat = parse_config_yaml(config_file.read_text(errors="replace"))
        if BACKBONE_NAME_KEY in flat:
            return flat, config_file
    logs = sorted(run_dir.glob("log.txt-*"), reverse=True) + [run_dir / "log.txt"]
    for log in logs:
        if log.is_file():
            flat = parse_log_config(log.read_text(errors="replace"))
            if BACKBONE_NAME_KEY in flat:
                return flat, log
    return None


def backbone_for(checkpoint: Path, name: str | None = None, path: str | None = None) -> Backbone:
    """The backbone to interpret `checkpoint` with: `path`, else `name`, else the run's config.

    Raises:
        FileNotFoundError: no override and no config in the run directory.
    """
    if path:
        return Backbone(name or Path(path).stem, path, "--backbone-path")
    if name:
        return Backbone(name, "", "--backbone")
    run_dir = run_dir_of(checkpoint)
    found = read_run_config(run_dir)
    if found is None:
        raise FileNotFoundError(
            f"Cannot tell which CLIP {checkpoint} was trained with: its run directory {run_dir} "
            f"has no {CONFIG_FILE} and no log.txt with a config block naming "
            f"{BACKBONE_NAME_KEY}. Pass the backbone, e.g. --backbone RN50 or --backbone-path "
            f"/path/to/RN50.pt."
        )
    config, source = found
    configured_path = config.get(BACKBONE_PATH_KEY) or ""
    return Backbone(str(config[BACKBONE_NAME_KEY]), str(configured_path), str(source))


def load_token_embedding(backbone: Backbone) -> torch.Tensor:
    """CLIP's token embedding of `backbone`: (V, D_t) float32, V = 49408 vocabulary tokens."""
    return load_vocabulary(backbone)[0]


def load_vocabulary(backbone: Backbone) -> tuple[torch.Tensor, object]:
    """(token embedding (V, D_t) float32, the tokenizer that decodes its ids) of `backbone`,
    through the backbone seam (OpenAI CLIP or open_clip)."""
    try:
        clip_model = load_backbone(backbone.name, backbone.path)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"The backbone {backbone.describe()} (from {backbone.source}) is not available here: "
            f"{error} If the run was trained elsewhere, pass the same CLIP with --backbone-path "
            f"FILE or --backbone NAME."
        ) from error
    tokenizer = tokenizer_of(clip_model)
    # CLIP's BPE (OpenAI's or open_clip's copy) decodes ids, with their BPE spelling as fallback.
    decoder = tokenizer if hasattr(tokenizer, "hf_tokenizer") else SimpleTokenizer()
    return text_tower(clip_model).token_embedding.weight.detach().float(), decoder


def load_context(checkpoint: Path) -> torch.Tensor:
    """The learned context `ctx` of a prompt_learner checkpoint: (M, D_t) or (C, M, D_t) float32.

    Raises:
        ValueError: the file holds no `ctx` of two or three dimensions.
    """
    try:
        content = load_checkpoint(str(checkpoint))
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(
            f"{checkpoint} is not a PyTorch checkpoint ({error}); give a file from "
            f"<run>/prompt_learner/, e.g. model.pth.tar-50."
        ) from error
    state_dict = content.get("state_dict", content) if isinstance(content, dict) else {}
    context = state_dict.get("ctx") if isinstance(state_dict, dict) else None
    if not isinstance(context, torch.Tensor) or context.dim() not in (2, 3):
        keys = sorted(state_dict)[:8] if isinstance(state_dict, dict) else []
        raise ValueError(
            f"{checkpoint} holds no learned context: expected state_dict['ctx'] of shape (M, D) "
            f"or (C, M, D) as CoOp/ProGrad save it, found keys {keys}. Give a file from "
            f"<run>/prompt_learner/."
        )
    return context.detach().float()


def nearest_words(
    context: torch.Tensor,
    token_embedding: torch.Tensor,
    tokenizer: SimpleTokenizer,
    topk: int = 3,
    backbone: str = "the backbone",
) -> list[list[Neighbour]]:
    """The `topk` nearest vocabulary tokens of each context vector, nearest first.

    Args:
        context: (M, D_t), or (C, M, D_t) with class-specific context (read class by class).
        token_embedding: (V, D_t) CLIP's token embedding.
        tokenizer: CLIP's tokenizer, to decode the token ids.
        topk: how many tokens per vector.
        backbone: the backbone's name, for the width-mismatch message.

    Returns:
        One list per vector (C * M of them with class-specific context), each of `topk`.

    Raises:
        ValueError: the context and the token embedding differ in width, or `topk` is not in
            [1, V] (V: the tokens whose row is not all zeros).
    """
    width, rows = token_embedding.shape[1], token_embedding.shape[0]
    # A checkpoint may store the rows of tokens it never trained as zeros (the shipped tiny CLIP
    # does): they are not words of its vocabulary.
    untrained = (token_embedding == 0).all(dim=1)
    vocabulary = rows - int(untrained.sum())
    if context.shape[-1] != width:
        raise ValueError(
            f"The context vectors are {context.shape[-1]} wide but the token embedding of "
            f"{backbone} is {width} wide, so the checkpoint was trained with another backbone "
            f"(text widths: RN50, RN101, ViT-B 512; RN50x4 640; RN50x16, ViT-L/14 768; RN50x64 "
            f"1024). Pass that one with --backbone NAME or --backbone-path FILE."
        )
    if not 1 <= topk <= vocabulary:
        raise ValueError(f"--topk is {topk}; give a number from 1 to {vocabulary}.")
    vectors = context.reshape(-1, width)  # (N, D_t), N = M or C * M
    # cdist's matrix-product form is fast over the whole vocabulary but off by ~1e-4 near zero;
    # re-measuring a shortlist exactly keeps near ties in order and an exact word at distance 0.
    shortlist_size = min(rows, topk + _SHORTLIST_MARGIN)
    distances = torch.cdist(vectors, token_embedding)
    distances[:, untrained] = float("inf")
    shortlist_distances, shortlist = distances.topk(shortlist_size, largest=False)
    exact = (vectors[:, None, :] - token_embedding[shortlist]).norm(dim=-1)  # (N, shortlist)
    exact = exact.masked_fill(shortlist_distances.isinf(), float("inf"))
    values, order = exact.topk(topk, dim=1, largest=False)
    indices = shortlist.gather(1, order)
    return [
        [
            Neighbour(int(index), _decode(tokenizer, int(index)), float(value))
            for value, index in zip(row_values, row_indices, strict=True)
        ]
        for row_values, row_indices in zip(values, indices, strict=True)
    ]


def _decode(tokenizer: SimpleTokenizer, token_id: int) -> str:
    word = tokenizer.decode([token_id]).strip()
    if not hasattr(tokenizer, "decoder"):  # a Hugging Face tokenizer (SigLIP's)
        return word or repr(token_id)
    # A whitespace-only token or a piece of a multi-byte character would show as an empty cell or
    # "\ufffd"; its BPE spelling is shown instead.
    return word if word and "\ufffd" not in word else repr(tokenizer.decoder[token_id])


def format_table(neighbours: list[list[Neighbour]], context_shape: tuple[int, ...]) -> str:
    """One row per context vector: its position (and class with CSC), then its nearest words."""
    class_specific = len(context_shape) == 3
    n_ctx = context_shape[-2]
    topk = len(neighbours[0]) if neighbours else 0
    headers = (["class label"] if class_specific else []) + ["ctx"]
    headers += [f"#{rank + 1} word (distance)" for rank in range(topk)]
    rows = []
    for row, candidates in enumerate(neighbours):
        cells = [row // n_ctx, row % n_ctx + 1] if class_specific else [row + 1]
        cells += [f"{c.word} ({c.distance:.4f})" for c in candidates]
        rows.append(cells)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def nearest_prompts(neighbours: list[list[Neighbour]], context_shape: tuple[int, ...]) -> list[str]:
    """The prompt read with each vector's nearest word: one line, or one per class with CSC."""
    n_ctx = context_shape[-2]
    words = [candidates[0].word for candidates in neighbours]
    return [" ".join(words[start : start + n_ctx]) for start in range(0, len(words), n_ctx)]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint", type=Path, help="<run>/prompt_learner/model.pth.tar-N, or a run directory"
    )
    parser.add_argument("--topk", type=positive_int, default=3, help="nearest words per vector (3)")
    parser.add_argument(
        "--backbone",
        metavar="NAME",
        help="CLIP name (RN50, ViT-B/16, ...) instead of the run's config",
    )
    parser.add_argument(
        "--backbone-path", metavar="FILE", help="local CLIP checkpoint instead of the run's config"
    )
    args = parser.parse_args(argv)

    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
        context = load_context(checkpoint)
        backbone = backbone_for(checkpoint, args.backbone, args.backbone_path)
        token_embedding, tokenizer = load_vocabulary(backbone)
        neighbours = nearest_words(
            context, token_embedding, tokenizer, args.topk, backbone.describe()
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shape = tuple(context.shape)
    kind = f"per class, {shape[0]} classes" if len(shape) == 3 else "shared by all classes"
    print(f"Checkpoint: {checkpoint}")
    print(f"Backbone:   {backbone.describe()} (from {backbone.source})")
    print(f"Context:    {shape[-2]} vectors of width {shape[-1]} ({kind})\n")
    print(format_table(neighbours, shape))
    print("\nNearest words read as a prompt:")
    for index, prompt in enumerate(nearest_prompts(neighbours, shape)):
        label = f"class label {index}: " if len(shape) == 3 else ""
        print(f"  {label}{prompt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
