"""The config keys this project adds to Dassl's defaults, read from the method declarations.

Each method declares the keys it owns (``METHOD.config_keys`` in its trainer module, with a
default and a one-line comment); keys no single method owns are :data:`COMMON_KEYS`. A key is
declared once: two declarations of one key are an error, so two methods never disagree on a
default. ``docs/methods.md`` lists the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable

from yacs.config import CfgNode as CN

from experiments.declarations import ConfigKey, Method

COMMON_KEYS = (
    ConfigKey("DATASET.SUBSAMPLE_CLASSES", "all", "all, base or new (base-to-new protocol)"),
    ConfigKey(
        "MODEL.BACKBONE.PATH",
        "",
        "local weights file (OpenAI's JIT archive or a state dict; open_clip's checkpoint), "
        "offline use; MODEL.BACKBONE.NAME may be open_clip:ARCH/TAG (docs/backbones.md)",
    ),
    ConfigKey(
        "MODEL.TEXT_ENCODER",
        "packed",
        'learned prompts\' text encoder: "packed" (fast, exact; the reference one on towers where '
        'it would not be exact, docs/backbones.md) or "reference" (the tower\'s plain one)',
    ),
)


def declared_keys(methods: Iterable[Method]) -> dict[str, tuple[ConfigKey, str]]:
    """{key: (its declaration, who declares it)}: the common keys, then each method's.

    Raises:
        ValueError: a key declared twice, naming both declarations.
    """
    keys: dict[str, tuple[ConfigKey, str]] = {}
    owners = [(key, "trainers/config.py COMMON_KEYS") for key in COMMON_KEYS]
    for method in methods:
        owners += [(key, f"method {method.name}") for key in method.config_keys]
    for key, owner in owners:
        if key.key in keys:
            raise ValueError(
                f"config key {key.key} is declared twice, by {keys[key.key][1]} and by {owner}; "
                f"keep one declaration (a method may read keys another method declares)"
            )
        keys[key.key] = (key, owner)
    return keys


def extend_cfg(cfg: CN, methods: Iterable[Method]) -> None:
    """Add every declared key, with its default, to Dassl's default config ``cfg``."""
    for key, _ in declared_keys(methods).values():
        *groups, leaf = key.key.split(".")
        node = cfg
        for group in groups:
            if group not in node:
                node[group] = CN()
            node = node[group]
        if leaf in node:
            raise ValueError(
                f"config key {key.key} is already one of Dassl's defaults; declare a new key, "
                f"or read Dassl's"
            )
        node[leaf] = key.default
