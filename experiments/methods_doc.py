"""The reference part of docs/methods.md, generated from the method declarations.

    python tools/methods_doc.py            # rewrite the generated block of docs/methods.md
    python tools/methods_doc.py --check    # exit 1 when it is out of date (a test runs this)

Everything between the two marker lines is replaced; the hand-written prose around it is kept.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from experiments import catalog
from experiments.declarations import ConfigKey, FixedEpochs, Method

START = "<!-- methods:generated:start -->"
END = "<!-- methods:generated:end -->"
DOC = catalog.ROOT / "docs" / "methods.md"


def _epochs(rule) -> str:
    if rule is None:
        return "–"
    if isinstance(rule, FixedEpochs):
        return str(rule.epochs)
    return (rule.__doc__ or rule.__name__).strip().split("\n")[0].rstrip(".")


def _keys_table(keys: Iterable[ConfigKey]) -> list[str]:
    lines = ["| key | default | values | what it does |", "|---|---|---|---|"]
    for key in keys:
        comment = key.comment.replace("|", "\\|")
        values = key.values.describe(key.default) if key.values is not None else "any"
        lines.append(f"| `{key.key}` | `{key.default!r}` | {values} | {comment} |")
    return lines


def render_method(method: Method) -> list[str]:
    """The reference section of one method."""
    epoch = method.checkpoint_epoch or "N (its epochs)"
    checkpoint = f"checkpoint `{method.model_name}/model.pth.tar-{epoch}`"
    if set(method.defaults) == {"zeroshot"}:
        checkpoint = "no checkpoint (evaluation only)"
    facts = [
        f"trainer `{method.trainer}`",
        f"configs `configs/trainers/{method.config_folder}/`",
        checkpoint,
    ]
    if method.has_lambda:
        facts.append(f"λ: `LOSS.LAMBDA` ({_epochs(method.lambda_rule)})")
    if method.fixed_opts:
        facts.append(f"every command adds `{' '.join(method.fixed_opts)}`")
    if method.prompt is not None:
        facts.append(
            f"prompt keys `{method.prompt.prefix}.*` (N_CTX default {method.prompt.default_nctx})"
        )
    summary = method.summary[:1].upper() + method.summary[1:]
    lines = [f"### {method.name}", "", f"{summary}.", "", "; ".join(facts) + ".", ""]
    lines += ["| protocol | CFG | shots | epochs |", "|---|---|---|---|"]
    for protocol, defaults in method.defaults.items():
        cfg = defaults.cfg + (
            f" (ImageNet: {defaults.imagenet_cfg})" if defaults.imagenet_cfg else ""
        )
        shots = "per run" if defaults.shots is None else str(defaults.shots)
        epochs = _epochs(defaults.epochs)
        if protocol == "xd" and defaults.epochs is None and "fewshot" in method.defaults:
            epochs = "the few-shot protocol's (training on ImageNet)"
        lines.append(f"| {protocol} | `{cfg}` | {shots} | {epochs} |")
    if method.config_keys:
        lines += ["", "Config keys it declares:", "", *_keys_table(method.config_keys)]
    return lines + [""]


def render(methods: Sequence[Method] | None = None) -> str:
    """The generated block (between the markers), for the declared methods in table order."""
    from trainers.config import COMMON_KEYS  # yacs only

    if methods is None:  # the repository's own methods, whatever PROGRAD_PLUGINS adds
        methods = list(catalog.methods(environ={}).values())
    lines = [START, ""]
    for method in methods:
        lines += render_method(method)
    lines += ["### Keys every method reads", "", *_keys_table(COMMON_KEYS), "", END]
    return "\n".join(lines)


def updated(text: str, block: str) -> str:
    """``text`` with the block between the markers replaced by ``block``."""
    if START not in text or END not in text:
        raise ValueError(f"{DOC} lacks the marker lines {START} and {END}; put them back")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + block + tail


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    new = updated(text, render())
    if args.check:
        if new != text:
            print(f"{DOC} is out of date: run python tools/methods_doc.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        Path(DOC).write_text(new, encoding="utf-8")
        print(f"wrote {DOC}")
    return 0
