"""Every command-line tool refuses a bad flag clearly: probes generated from each tool's own
argparse parser (a word for each number flag, a number out of its range, an unknown choice, an
unknown flag or subcommand), so a flag added later is probed too. In-process: each tool's parser
is captured, not run."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
import sys
from pathlib import Path

import pytest

from experiments.cli import Bounded

ROOT = Path(__file__).resolve().parents[1]
# Every command-line tool with an argparse parser (tools/protocols.py has its own fixed form,
# tested in test_protocols.py; methods_doc.py takes no arguments).
TOOLS = sorted(
    path
    for folder in ("tools", "benchmarks")
    for path in (ROOT / folder).glob("*.py")
    if not path.name.startswith("_") and path.name not in ("protocols.py", "methods_doc.py")
)


class Captured(Exception):
    """Raised by the patched parse_args, carrying the tool's parser."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser


def tool_parser(path: Path, monkeypatch) -> argparse.ArgumentParser:
    """The parser that ``path``'s main() builds, taken when main() asks it to parse."""
    monkeypatch.syspath_prepend(str(path.parent))
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(sys, "argv", [str(path)])
    spec = importlib.util.spec_from_file_location(f"tool_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)

    def grab(self, args=None, namespace=None):
        raise Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", grab)
    with pytest.raises(Captured) as captured:
        module.main([]) if "argv" in module.main.__code__.co_varnames else module.main()
    monkeypatch.undo()
    return captured.value.parser


def required_words(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder words for the required arguments, so that a probe reaches its flag."""
    words = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or not action.required:
            continue
        value = str(next(iter(action.choices))) if action.choices else "1"
        words += [action.option_strings[0], value] if action.option_strings else [value]
    return words


def probes(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(argv, words the error must contain) for every flag of ``parser`` and its subcommands."""
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in commands:
        for name, sub in action.choices.items():
            yield from probes(sub, (*prefix, name))
        yield [*prefix, "no-such-command"], ["no-such-command"]
    if commands:
        return
    filled = [*prefix, *required_words(parser)]
    yield [*filled, "--no-such-flag"], ["--no-such-flag"]
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0:
            continue
        flag = action.option_strings[-1]
        if action.type in (int, float) or isinstance(action.type, Bounded):
            yield [*filled, flag, "not-a-number"], [flag, "not-a-number"]
        if isinstance(action.type, Bounded) and action.type.out_of_range() is not None:
            bad = action.type.out_of_range()
            yield [*filled, flag, bad], [flag, bad, action.type.describe()]
        if isinstance(action.type, Bounded) and action.type.kind is float:
            yield [*filled, flag, "nan"], [flag, "nan", "not finite"]
        if action.choices:
            yield [*filled, flag, "no-such-choice"], [flag, "no-such-choice"]


@pytest.mark.parametrize("path", TOOLS, ids=[f"{p.parent.name}/{p.name}" for p in TOOLS])
def test_every_flag_of_every_tool_refuses_a_bad_value_by_name(path, monkeypatch):
    """A typed flag given a word, an unknown choice, an unknown flag or subcommand: exit 2 and
    one `error:` line naming the flag and the value, no traceback."""
    parser = tool_parser(path, monkeypatch)
    count = 0
    for argv, named in probes(parser):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as stopped:
            parser.parse_args(argv)
        message = stderr.getvalue()
        assert stopped.value.code == 2, (argv, message)
        assert "error:" in message and "Traceback" not in message, (argv, message)
        assert all(word in message for word in named), (argv, message)
        count += 1
    assert count >= 1


@pytest.mark.parametrize("path", TOOLS, ids=[f"{p.parent.name}/{p.name}" for p in TOOLS])
def test_every_number_flag_declares_its_range(path, monkeypatch):
    """An int or float flag uses a type of experiments/cli.py (e.g. positive_int), so a zero or
    negative count is refused by argparse rather than failing later."""

    def actions(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from actions(sub)
            else:
                yield action

    bare = [
        action.option_strings or action.dest
        for action in actions(tool_parser(path, monkeypatch))
        if action.type in (int, float)
    ]
    assert not bare, f"{path.name}: give these flags a type of experiments/cli.py: {bare}"


SCRIPTS = sorted(
    path
    for path in (ROOT / "scripts").rglob("*.sh")
    if "usage_unless" in path.read_text() and path.name != "common.sh"
)


def test_every_run_script_refuses_a_wrong_argument_count_by_its_usage():
    """Each run script given one argument too few or too many: exit non-zero before anything runs,
    `error:` with its usage on stderr, nothing on stdout (generated over scripts/)."""
    import subprocess

    assert len(SCRIPTS) > 30
    env = {"PATH": os.environ["PATH"], "DATA": "/nonexistent", "DRY_RUN": "1"}
    for script in SCRIPTS:
        relative = script.relative_to(ROOT)
        expected = int(re.search(r"usage_unless (\d+)", script.read_text()).group(1))
        wrong = [["a"] * (expected - 1), ["a"] * (expected + 1)] if expected else [["a"]]
        if script.name == "run.sh":  # METHOD SCRIPT ARGS...: fewer than two words
            wrong = [[], ["CoOp"]]
        for arguments in wrong:
            completed = subprocess.run(
                ["bash", str(relative), *arguments], cwd=ROOT, env=env, capture_output=True,
                text=True, timeout=60,
            )  # fmt: skip
            assert completed.returncode != 0, (relative, arguments)
            assert completed.stderr.startswith("error:"), (relative, completed.stderr)
            assert "sage" in completed.stderr and "Traceback" not in completed.stderr
            assert completed.stdout == "", (relative, completed.stdout)
