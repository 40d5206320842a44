"""Each path a tool reads or writes, given as the wrong kind of thing (missing, empty, damaged, a
folder for a file, a file for a folder, under a file): the tool exits non-zero with an `error:`
naming the path, no traceback. The probes are generated per kind of path; each tool only says
which kind each of its paths is."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from devkit.logs import training_log, write

# Probes per kind of path: name -> how to make the bad thing at `path`.
PROBES = {
    "input-file": ("missing", "empty", "damaged", "folder"),
    "input-folder": ("missing", "file"),
    "output-file": ("folder", "under-a-file"),
    "output-folder": ("file", "under-a-file"),
}


def make(kind: str, path: Path) -> Path:
    """The bad thing ``kind`` at ``path``; returns the path to give the tool."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "damaged":
        path.write_bytes(os.urandom(512))
    elif kind == "folder":
        path.mkdir()
    elif kind == "file":
        path.write_text("not a folder\n")
    elif kind == "under-a-file":
        path.write_text("a file\n")
        return path / "inside"
    return path


def parse_results(argv):
    from tools.parse_results import main

    return main(argv)


def plot_curves(argv):
    from experiments.plots import main

    return main(argv)


def interpret_prompt(argv):
    pytest.importorskip("clip", reason="OpenAI's clip package is not installed")
    from tools.interpret_prompt import main

    return main(argv)


def sort_imagenet_val(argv):
    from tools.sort_imagenet_val import main

    return main(argv)


def sweep(argv):
    from experiments.sweep import main

    return main(argv)


def finished_runs(root: Path) -> Path:
    """An output folder holding one finished few-shot run (for the output probes)."""
    run_dir = root / "caltech101" / "CoOp" / "rn50_1shots" / "nctx16_cscFalse_ctpend" / "seed1"
    write(run_dir, training_log(50.0))
    return root


# (tool, its arguments with {path} for the probed one and {runs}/{folder} for good ones, kind)
CASES = [
    (parse_results, ["{path}"], "input-folder"),
    (parse_results, ["{runs}", "--markdown", "{path}"], "output-file"),
    (parse_results, ["{runs}", "--plot", "{path}"], "output-file"),
    (parse_results, ["{runs}", "--csv", "{path}"], "output-folder"),
    (plot_curves, ["{path}"], "input-folder"),
    (interpret_prompt, ["{path}"], "input-file"),
    (sort_imagenet_val, ["{folder}", "{path}", "--dry-run"], "input-file"),
    (sort_imagenet_val, ["{path}", "{folder}/labels.txt", "--dry-run"], "input-folder"),
    (sweep, ["status", "{path}"], "input-folder"),
]


@pytest.mark.parametrize(
    ("tool", "arguments", "kind"),
    CASES,
    ids=[f"{tool.__name__}:{' '.join(args)}:{kind}" for tool, args, kind in CASES],
)
def test_each_path_of_the_wrong_kind_is_named(tool, arguments, kind, tmp_path):
    """Every probe of the path's kind: exit status non-zero, `error:` naming the path."""
    runs = finished_runs(tmp_path / "runs")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "labels.txt").write_text("n01440764\n")
    for probe in PROBES[kind]:
        path = make(probe, tmp_path / f"probe-{probe}")
        argv = [word.format(path=path, runs=runs, folder=folder) for word in arguments]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                status = tool(argv)
            except SystemExit as stopped:
                status = stopped.code
        message = stderr.getvalue()
        assert status not in (0, None), (probe, argv, message)
        assert "error" in message and str(path) in message, (probe, argv, message)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root, which reads any file: an unreadable file cannot be made",
)
@pytest.mark.parametrize(
    ("tool", "arguments"),
    [(tool, args) for tool, args, kind in CASES if kind == "input-file"],
    ids=[tool.__name__ for tool, _, kind in CASES if kind == "input-file"],
)
def test_an_unreadable_input_file_is_named(tool, arguments, tmp_path):
    """A file without read permission: exit status non-zero, `error:` naming it."""
    folder = tmp_path / "folder"
    folder.mkdir()
    path = tmp_path / "unreadable"
    path.write_text("n01440764\n")
    path.chmod(0)
    argv = [word.format(path=path, folder=folder, runs=tmp_path) for word in arguments]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = tool(argv)
        except SystemExit as stopped:
            status = stopped.code
    assert status not in (0, None) and str(path) in stderr.getvalue()
