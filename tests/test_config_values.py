"""Every config value checked by its class: probes generated from the declared tree, so a key
declared later is covered by the same tests (trainers/inputs.py check_values)."""

import re
from pathlib import Path

import pytest
import yaml

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from dassl.config import get_cfg_default  # noqa: E402

import train  # noqa: E402
from experiments import catalog  # noqa: E402
from experiments.declarations import Values  # noqa: E402
from trainers import config  # noqa: E402
from trainers.inputs import allowed, check_values, declared_leaves, merge_options  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("trainers", "datasets", "experiments", "tools", "devkit", "benchmarks")
READ_KEY = re.compile(r"\bcfg\.([A-Z][A-Z0-9_]*(?:\.[A-Z][A-Z0-9_]*)*)")


@pytest.fixture(scope="module")
def declared():
    """Dassl's defaults plus every declared key (train.py's tree before any file)."""
    catalog.import_all()
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    return cfg


@pytest.fixture(scope="module")
def checks() -> dict[str, Values]:
    return config.key_values(catalog.methods().values())


def default_of(declared, key):
    node = declared
    for part in key.split("."):
        node = node[part]
    return node


def wrong_type_words(default, values: Values) -> list[str]:
    """Command-line words of a type the key does not take."""
    if values.types:
        return ["[1, 2]"] if "list" not in values.types else ["3.5"]
    if isinstance(default, str):
        return ["[1, 2]"]
    if isinstance(default, (list, tuple)):
        return ["abc"]
    if isinstance(default, bool):
        return ["maybe", "[1]"]
    if isinstance(default, (int, float)):
        return ["abc", "[1, 2]"] + (["2.5"] if isinstance(default, int) else [])
    raise AssertionError(f"no wrong-type probe for {default!r}")


def out_of_range_values(default, values: Values) -> list:
    """Values of the right type that ``values`` refuses (none for a type-only declaration)."""
    example = default[0] if isinstance(default, (list, tuple)) and default else default
    if isinstance(default, (list, tuple)) and not default:
        example = values.choices[0] if values.choices else None
    integer = isinstance(example, int) and not isinstance(example, bool)
    step = 1 if integer else 0.5
    bad = []
    if values.minimum is not None:
        bad.append(values.minimum - step)
    if values.maximum is not None:
        bad.append(values.maximum + step)
    if values.above is not None:
        bad.append(type(example)(values.above) if example is not None else values.above)
    if values.choices:
        bad.append("not_one_of_the_choices")
    if isinstance(default, (list, tuple)):
        items = list(default) or [example]
        probes = [type(default)(items[:-1] + [item]) for item in bad]
        if values.length is not None:
            probes.append(type(default)(items + items[:1]))
        return probes
    return bad


def test_every_declared_range_refuses_a_wrong_type_and_an_out_of_range_value(declared, checks):
    """For every key with declared values: its default passes; a value of another type and one
    out of range are refused in one paragraph naming key, value and what is allowed."""
    probed = 0
    for key, values in sorted(checks.items()):
        default = default_of(declared, key)
        assert allowed(default, default, values), f"{key}'s default {default!r} is refused"
        for word in wrong_type_words(default, values):
            cfg = declared.clone()
            with pytest.raises(ValueError) as refused:
                merge_options(cfg, declared, [key, word])
                check_values(cfg, declared, checks)
            message = str(refused.value)
            assert key in message and "takes" in message and "\n" not in message, message
        for value in out_of_range_values(default, values):
            cfg = declared.clone()
            _set(cfg, key, value)
            with pytest.raises(ValueError) as refused:
                check_values(cfg, declared, checks, {key: "on the command line"})
            message = str(refused.value)
            shown = f'"{value}"' if isinstance(value, str) else repr(value)
            assert (
                f"{key} is {shown}; it takes " in message and "(set on the command line)" in message
            )
            assert values.describe(default) in message
            probed += 1
    assert probed > 40  # the probes really ran (every range and choice of the tree)


def _set(cfg, key, value) -> None:
    *groups, leaf = key.split(".")
    node = cfg
    for group in groups:
        node = node[group]
    node[leaf] = value


def keys_read_by_the_project(declared) -> set[str]:
    """Every leaf key the project's code reads as cfg.X.Y, or its config files set."""
    leaves = {key for key, _ in declared_leaves(declared)}
    read = set()
    paths = [ROOT / "train.py"]
    for folder in CODE_FOLDERS:
        paths += (ROOT / folder).rglob("*.py")
    for path in paths:
        read |= set(READ_KEY.findall(path.read_text(encoding="utf-8")))

    def walk(mapping, prefix=""):
        for name, value in mapping.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    for path in (ROOT / "configs").rglob("*.yaml"):
        read |= set(walk(yaml.safe_load(path.read_text()) or {}))
    return read & leaves


def test_every_key_the_project_reads_or_sets_declares_its_values(declared, checks):
    """A key read by the code (cfg.X.Y) or set in configs/ has declared values, and every
    ConfigKey of the repository's methods declares them: nothing reaches a trainer unchecked."""
    missing = sorted(keys_read_by_the_project(declared) - set(checks))
    assert not missing, f"declare these keys' values (trainers/config.py DASSL_KEYS): {missing}"
    undeclared = [
        key.key
        for method in catalog.methods().values()
        for key in method.config_keys
        if key.values is None
    ]
    undeclared += [key.key for key in config.COMMON_KEYS if key.values is None]
    assert not undeclared, f"give these ConfigKeys their values=Values(...): {undeclared}"


def test_max_epoch_zero_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """train.py OPTIM.MAX_EPOCH 0: `error:` naming key, value and the range; no run folder."""
    monkeypatch.chdir(ROOT)
    output = tmp_path / "run"
    args = [
        "--trainer", "CoOp", "--config-file", "configs/trainers/CoOp/rn50.yaml",
        "--dataset-config-file", "configs/datasets/caltech101.yaml", "--output-dir", str(output),
        "OPTIM.MAX_EPOCH", "0",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        train.run(args)
    message = str(stopped.value.code)
    assert message.startswith("error: OPTIM.MAX_EPOCH is 0; it takes an integer >= 1")
    assert "(set on the command line)" in message
    assert not output.exists()


def test_every_shipped_config_file_passes_the_value_checks(declared, checks):
    """Each file of configs/ holds only allowed values (the checks refuse no paper setting)."""
    from trainers.inputs import merge_config_file

    files = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(files) > 50
    for path in files:
        cfg = declared.clone()
        merge_config_file(cfg, declared, str(path), "--config-file")
        check_values(cfg, declared, checks)
