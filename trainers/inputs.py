"""What a user gives train.py, checked before anything is built or written: config files,
KEY VALUE options and paths.

Left to yacs, a misspelt key ends in a KeyError traceback, a key without its value in an
AssertionError, and a value of another type in "Type mismatch (<class 'int'> vs. <class 'str'>)".
yacs also types a key by the value it holds, so a key declared None to take several types
(``TRAINER.COOP.CTX_INIT``: True or words) that a file has set to True would refuse words on the
command line. Here every key and value is checked against the declared tree, Dassl's defaults plus
``extend_cfg``, so keys that trainers add are covered without being listed:

* keys: unknown ones are refused with the closest declared key;
* values: checked against the type of the declared default. A key declared None takes any type;
  an integer is taken for a float, ``true``/``false`` for a boolean, any word for a text key;
* command-line options: a key without its value, or a ``--flag`` after the options, is named;
* ranges and choices: once everything is merged, :func:`check_values` checks each key that
  declares its values (``Values`` of experiments/declarations.py: the project's ``ConfigKey`` s
  and trainers/config.py ``DASSL_KEYS``), e.g. ``OPTIM.MAX_EPOCH 0`` is refused.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml
from yacs.config import CfgNode

from experiments.declarations import Values

# The value types yacs can hold.
VALUE_TYPES = (str, int, float, bool, list, tuple, type(None))
COMMAND_LINE = "on the command line"


def declared_leaves(cfg: CfgNode, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full key, value) of every key that holds a value (not a group of keys)."""
    for name, value in cfg.items():
        if isinstance(value, CfgNode):
            yield from declared_leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def node_at(cfg: CfgNode, key: str) -> Any:
    """The value or group at a full key, or KeyError."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def open_group(declared: CfgNode, key: str) -> bool:
    """Whether ``key`` lies under a group declared with ``new_allowed=True`` (any key goes)."""
    parts = key.split(".")
    node: Any = declared
    for part in parts[:-1]:
        if not isinstance(node, CfgNode) or part not in node:
            return False
        node = node[part]
        if isinstance(node, CfgNode) and node.is_new_allowed():
            return True
    return False


def closest_key(key: str, keys: Sequence[str]) -> str | None:
    """The declared key a misspelt ``key`` most likely means, or None."""
    wanted = key.upper().strip(".")
    if wanted in keys:  # only the case differs
        return wanted
    by_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == wanted.rsplit(".", 1)[-1]]
    if len(by_leaf) == 1:  # the right name in the wrong group, or without its group
        return by_leaf[0]
    if by_leaf:  # a name of several groups (TRAINER.COOP.N_CTX, TRAINER.COCOOP.N_CTX): all
        return " or ".join(by_leaf)
    close = difflib.get_close_matches(wanted, keys, n=1, cutoff=0.6)
    if close:
        return close[0]
    leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
    close = difflib.get_close_matches(wanted.rsplit(".", 1)[-1], list(leaves), n=1, cutoff=0.75)
    return leaves[close[0]] if close else None


def check_key(key: str, declared: CfgNode, source: str) -> Any:
    """The declared default of ``key``; a clear ValueError for anything that is not a key.

    Args:
        key: the key as given, e.g. "TRAINER.COOP.N_CTX".
        declared: the config tree before any file or option is merged.
        source: where the key was given, e.g. "on the command line" or "in configs/x.yaml".
    """
    if key.startswith("--"):
        raise ValueError(
            f"{key} comes after the KEY VALUE config options {source}; put every --flag before "
            f"the first config option (everything after it is read as KEY VALUE pairs)."
        )
    try:
        default = node_at(declared, key)
    except KeyError:
        if open_group(declared, key):
            return None
        leaves = [name for name, _ in declared_leaves(declared)]
        close = closest_key(key, leaves)
        hint = f"Did you mean {close}? " if close else ""
        raise ValueError(
            f"{key} {source} is not a config key. {hint}The keys are Dassl's defaults plus those "
            f"train.py's extend_cfg() declares; the config.yaml of any run lists them all."
        ) from None
    if isinstance(default, CfgNode):
        members = ", ".join(list(default.keys())[:8])
        raise ValueError(
            f"{key} {source} is a group of keys ({members}, ...), not a key; set one of them, "
            f"e.g. {key}.{next(iter(default.keys()))} VALUE."
        )
    return default


def describe_type(default: Any) -> str:
    """How to write a value of the type of ``default``, for messages."""
    if isinstance(default, bool):
        return "True or False"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "text"
    if isinstance(default, (list, tuple)):
        example = tuple(default) if isinstance(default, tuple) else list(default)
        return f'a {type(default).__name__} such as "{example!r}"'
    return type(default).__name__


def coerce(key: str, value: Any, default: Any, given: Any, source: str) -> Any:
    """``value`` as the type of the key's declared ``default``, or a ValueError naming both.

    Args:
        key: the full key, for messages.
        value: the decoded value (yacs's literal_eval of what was given).
        default: the declared default; None means the key takes any type.
        given: what the user wrote (the command-line word, or the YAML value).
        source: where it was given, for messages.
    """
    if default is None or value is None:  # a key of several types; None clears any key (yacs)
        if isinstance(value, VALUE_TYPES):
            return value
    elif type(value) is type(default):
        return value
    elif isinstance(default, str) and isinstance(value, (int, float, bool)):
        return given if isinstance(given, str) else str(value)  # e.g. a folder named 2024
    elif isinstance(default, bool) and isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    elif isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    if isinstance(value, Mapping):
        shown = "a group of keys"
    else:
        shown = repr(given)
    raise ValueError(
        f"{key} {source} is {shown}, but it takes {describe_type(default)} (its default is "
        f"{default!r}). Give it as e.g. {key} {format_value(default)}."
    )


def format_value(value: Any) -> str:
    """A value as typed on the command line."""
    if isinstance(value, str):
        return value if value and " " not in value else repr(value)
    return f'"{value!r}"' if isinstance(value, (list, tuple)) else repr(value)


def set_value(cfg: CfgNode, key: str, value: Any) -> None:
    """Set a full key of a mutable config (its groups exist: ``check_key`` came first)."""
    *groups, name = key.split(".")
    node = cfg
    for group in groups:
        if group not in node:  # under a new_allowed group
            node[group] = CfgNode(new_allowed=True)
        node = node[group]
    node[name] = value


def pair_options(opts: Sequence[str], declared: CfgNode) -> list[tuple[str, str, Any]]:
    """Split command-line options into (key, value, declared default), checking each key.

    Raises:
        ValueError: naming an unknown key (with the closest one), a key without its value, or a
            --flag given after the options.
    """
    leaves = {name for name, _ in declared_leaves(declared)}
    odd = len(opts) % 2 == 1
    triples = []
    for position in range(0, len(opts), 2):
        key = opts[position]
        default = check_key(key, declared, COMMAND_LINE)
        value = opts[position + 1] if position + 1 < len(opts) else None
        if value is None or (odd and value in leaves):
            why = f"the word after it, {value}, is a key" if value else "it is the last word"
            example = format_value(default) if default is not None else "VALUE"
            raise ValueError(
                f"{key} {COMMAND_LINE} has no value ({why}). Config options come in KEY VALUE "
                f"pairs, e.g. {key} {example}."
            )
        triples.append((key, value, default))
    return triples


def merge_options(
    cfg: CfgNode,
    declared: CfgNode,
    opts: Sequence[str],
    sources: dict[str, str] | None = None,
) -> None:
    """Merge command-line ``KEY VALUE`` options into ``cfg``, every key and value checked.

    Args:
        cfg: the config being built (mutable).
        declared: the config tree before any file or option was merged.
        opts: the words after train.py's flags.
        sources: if given, {key: where it was set} is recorded in it (for check_values).
    """
    for key, given, default in pair_options(opts, declared):
        value = CfgNode._decode_cfg_value(given)
        set_value(cfg, key, coerce(key, value, default, given, COMMAND_LINE))
        if sources is not None:
            sources[key] = COMMAND_LINE


def flatten(mapping: Mapping, declared: CfgNode, source: str, prefix: str = ""):
    """(full key, value, declared default) of every value of a loaded YAML mapping."""
    for name, value in mapping.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            node = None
            try:
                node = node_at(declared, key)
            except KeyError:
                if not open_group(declared, f"{key}.x"):
                    check_key(key, declared, source)  # raises, with the closest key
            if node is None or isinstance(node, CfgNode):
                yield from flatten(value, declared, source, f"{key}.")
                continue
        yield key, value, check_key(key, declared, source)


def merge_config_file(
    cfg: CfgNode,
    declared: CfgNode,
    path: str,
    flag: str,
    sources: dict[str, str] | None = None,
) -> None:
    """Merge a YAML config file into ``cfg``, every key and value checked.

    Args:
        cfg: the config being built (mutable).
        declared: the config tree before any file or option was merged.
        path: the YAML file.
        flag: the command-line flag that named it, for messages.
        sources: if given, {key: where it was set} is recorded in it (for check_values).
    """
    check_readable_file(path, flag, "a YAML config file from configs/")
    try:
        with open(path, encoding="utf-8") as file:
            loaded = yaml.safe_load(file)
    except UnicodeDecodeError as error:
        raise ValueError(f"{flag} {path} is not a text file ({error}); give a YAML file.") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(
            f"{flag} {path} is not valid YAML ({problem}{line}); fix that line (configs/ has "
            f"working examples)."
        ) from None
    if loaded is None:
        return
    if not isinstance(loaded, Mapping):
        raise ValueError(
            f"{flag} {path} holds a {type(loaded).__name__}, not KEY: VALUE settings; give a "
            f"config file like those in configs/."
        )
    source = f"in {path}"
    for key, given, default in flatten(loaded, declared, source):
        value = CfgNode._decode_cfg_value(given)
        set_value(cfg, key, coerce(key, value, default, given, source))
        if sources is not None:
            sources[key] = source


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(item: Any, example: Any) -> bool:
    """Whether ``item`` is of the type of ``example`` (an integer counts as a number)."""
    if isinstance(example, bool):
        return isinstance(item, bool)
    if isinstance(example, int):
        return isinstance(item, int) and not isinstance(item, bool)
    if isinstance(example, float):
        return _is_number(item)
    if isinstance(example, str):
        return isinstance(item, str)
    if isinstance(example, (list, tuple)):
        return isinstance(item, (list, tuple))
    return True


def allowed(value: Any, default: Any, values: Values) -> bool:
    """Whether ``value`` is of the declared type (that of ``default``, or ``values.types``) and
    within ``values``' bounds, choices and length (each item of a list or tuple)."""
    if values.types:
        if type(value).__name__ not in values.types:
            return False
    elif default is not None and not _same_kind(value, default):
        return False
    if isinstance(value, (list, tuple)):
        if values.length is not None and len(value) != values.length:
            return False
        items = list(value)
        example = default[0] if isinstance(default, (list, tuple)) and default else None
        if example is not None and not all(_same_kind(item, example) for item in items):
            return False
    else:
        items = [value]
    for item in items:
        if values.choices and item not in values.choices:
            return False
        bounded = (values.minimum, values.maximum, values.above) != (None, None, None)
        if bounded and not _is_number(item):
            return False
        if values.minimum is not None and item < values.minimum:
            return False
        if values.maximum is not None and item > values.maximum:
            return False
        if values.above is not None and item <= values.above:
            return False
    return True


def check_values(
    cfg: CfgNode,
    declared: CfgNode,
    checks: Mapping[str, Values],
    sources: Mapping[str, str] | None = None,
) -> None:
    """Every key of ``checks`` holds an allowed value; else a ValueError naming key, value,
    where it was set and what is allowed.

    Args:
        cfg: the merged config.
        declared: the config tree before any file or option was merged (the declared defaults).
        checks: {key: its Values} (trainers/config.py ``key_values``).
        sources: {key: where it was set}, as recorded by the merge functions.
    """
    sources = sources or {}
    for key, values in checks.items():
        if not _declared(cfg, key):
            continue  # a key of a method that is not loaded
        value, default = node_at(cfg, key), node_at(declared, key)
        if allowed(value, default, values):
            continue
        where = f" (set {sources[key]})" if key in sources else ""
        example = format_value(default) if default is not None else "VALUE"
        shown = f'"{value}"' if isinstance(value, str) else repr(value)
        raise ValueError(
            f"{key} is {shown}; it takes {values.describe(default)}{where}. Give an allowed "
            f"value, e.g. its default: {key} {example}."
        )


def check_readable_file(path: str, what: str, expected: str) -> None:
    """A path the user gave must be an existing file (not a folder).

    Args:
        path: the path.
        what: the flag or key that gave it, for messages.
        expected: what it should be, e.g. "a YAML config file".
    """
    if os.path.isdir(path):
        raise ValueError(f"{what} {path} is a folder; give {expected}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{what} {path} does not exist; give {expected} (relative paths start from "
            f"{os.getcwd()})."
        )


def check_folder(path: str, what: str, must_exist: bool = True) -> None:
    """A path the user gave must be a folder (when it exists, or always with ``must_exist``)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path} is a file, not a folder; give a folder.")
    if must_exist and not os.path.isdir(path):
        raise FileNotFoundError(f"{what} {path} does not exist; give an existing folder.")


def check_writable_folder(path: str, what: str, purpose: str = "write the run to") -> None:
    """The folder a run writes to must be a folder that can be written, or be creatable.

    Nothing is left behind: the test file (or folder) is removed at once.
    """
    path = os.path.abspath(os.path.expanduser(path))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        blocked = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise ValueError(f"{what} {path} {blocked}; give a folder to {purpose}.")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as error:
        where = path if existing == path else f"{existing} (where {path} would be created)"
        raise ValueError(
            f"{what}: cannot write to {where} ({error.strerror or error}); give a folder you "
            f"can write to, or fix its permissions."
        ) from None


# Config keys that name paths, and what they must be.
FILE_KEYS = {
    "MODEL.BACKBONE.PATH": "a CLIP checkpoint file (OpenAI's .pt, a state dict, or open_clip's)",
    "MODEL.INIT_WEIGHTS": "a prompt checkpoint file (prompt_learner/model.pth.tar-N)",
}
FOLDER_KEYS = ("RESUME",)


def check_paths(cfg: CfgNode, model_dir: str = "") -> None:
    """Every path of the config (and --model-dir) is of the right kind; the output is writable.

    DATASET.ROOT may not exist yet (datasets that write themselves create it), but if it exists
    it must be a folder.
    """
    for key, expected in FILE_KEYS.items():
        path = node_at(cfg, key) if _declared(cfg, key) else ""
        if path:
            check_readable_file(os.path.expanduser(path), key, expected)
    for key in FOLDER_KEYS:
        if _declared(cfg, key) and node_at(cfg, key):
            check_folder(os.path.expanduser(node_at(cfg, key)), key)
    if cfg.DATASET.ROOT:
        check_folder(os.path.expanduser(cfg.DATASET.ROOT), "--root (DATASET.ROOT)", False)
    if model_dir:
        check_folder(os.path.expanduser(model_dir), "--model-dir")
    check_writable_folder(cfg.OUTPUT_DIR, "--output-dir (OUTPUT_DIR)")


def _declared(cfg: CfgNode, key: str) -> bool:
    try:
        node_at(cfg, key)
    except KeyError:
        return False
    return True


def error_text(error: BaseException) -> str:
    """The message of an error for the user: a DataLoader worker's traceback reduced to its
    last line (torch re-raises a worker's error with the worker's traceback in the message)."""
    text = str(error)
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    marker = "Original Traceback (most recent call last):"
    if marker in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text
