"""Every file the project writes is written whole or not at all, and a failed write says why.

One helper for every write (checkpoints, resume state, run.json, caches, tables, plots, the demo
world): the content goes to a temporary file in the target's folder (so the rename never crosses
file systems), is flushed to disk (fsync), and is renamed over the target (``os.replace``, atomic
on POSIX). A kill or a full disk at any moment leaves the previous file whole, so a run can
always resume from its last complete state.

A write that fails because the file system is full (ENOSPC), the quota is used up (EDQUOT), the
file system is read-only (EROFS), the folder is not writable (EACCES) or the path is a folder
(EISDIR) or lies under a file (ENOTDIR) raises
:class:`DiskWriteError`: one paragraph naming the path, what was being written and the fix
(``train.py`` and the tools print it as ``error: ...``, without a traceback).

Test hook: with ``PROGRAD_TEST_PAUSE_WRITE=<text>``, a write whose path contains ``<text>`` stops
after its temporary file is complete and before the rename, prints ``paused writing <path>`` to
stderr and waits until the file named by ``PROGRAD_TEST_PAUSE_UNTIL`` exists (or 300 s), so a test
can kill or race a process at that point deterministically. Standard library only (torch is
imported only by :func:`save_torch`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

PAUSE_VARIABLE = "PROGRAD_TEST_PAUSE_WRITE"
GATE_VARIABLE = "PROGRAD_TEST_PAUSE_UNTIL"

# errno -> (what happened, how to fix it); {folder} is the folder of the file.
DISK_ERRORS = {
    errno.ENOSPC: (
        "the file system is full (no space left on device)",
        "free space there (`df -h {folder}` shows how much is left) or give the run a folder on "
        "another disk",
    ),
    errno.EDQUOT: (
        "your disk quota on that file system is used up",
        "delete or move files you own there (`quota -s` shows the quota) or give the run a "
        "folder on another file system",
    ),
    errno.EROFS: (
        "the file system is read-only",
        "give a folder on a writable file system (e.g. another --output-dir), or have it "
        "remounted read-write",
    ),
    errno.EACCES: (
        "permission denied",
        "give a folder you can write to, or fix the permissions of {folder}",
    ),
    errno.EISDIR: ("that path is a folder", "give the path of a file (inside it, or elsewhere)"),
    errno.EEXIST: (
        "a file is where one of its folders should be",
        "give a path whose folders are folders",
    ),
    errno.ENOTDIR: (
        "a part of its folder path is a file, not a folder",
        "give a path whose folders are folders",
    ),
}


# The errors of the disk itself (not of one path): every later write there fails too.
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class DiskWriteError(OSError):
    """A write that failed for want of space, quota or permission; the message says what to do.

    ``errno`` and ``filename`` are those of the failed write; ``str()`` is the message alone.
    """

    def __init__(self, message: str, code: int | None = None, path: str = ""):
        super().__init__(message)
        self.message = message
        self.errno = code
        self.filename = path

    def __str__(self) -> str:
        return self.message


def describe_write_error(error: OSError, path: str | os.PathLike, what: str) -> str | None:
    """The one-paragraph message for a disk error while writing ``what`` to ``path``, or None
    when ``error`` is not one of :data:`DISK_ERRORS`."""
    if error.errno not in DISK_ERRORS:
        return None
    happened, fix = DISK_ERRORS[error.errno]
    folder = os.path.dirname(os.path.abspath(path)) or "."
    free = ""
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(folder)
        free = f", {usage.free // 1024} KiB free of {usage.total // 1024} KiB"
    return (
        f"could not write {what} to {path}: {happened}{free}. Nothing was lost: the previous "
        f"file, if any, is whole. To fix it, {fix.format(folder=folder)}; then run the same "
        f"command again: a run resumes from its last complete state and ends exactly as an "
        f"uninterrupted run."
    )


def translate(error: OSError, path: str | os.PathLike, what: str) -> OSError:
    """``error`` as a :class:`DiskWriteError` when it is a disk error, else unchanged."""
    if isinstance(error, DiskWriteError):
        return error
    message = describe_write_error(error, path, what)
    if message is None:
        return error
    return DiskWriteError(message, error.errno, str(path))


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike, what: str, mode: str = "wb", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit make it ``path`` atomically.

    Args:
        path: the file to write; its folder is created if missing.
        what: what is being written, in a few words, for the error message
            (e.g. "the checkpoint of epoch 2").
        mode: "wb" or "w" (text, UTF-8).
        newline: for text, as open()'s (csv wants "").

    Raises:
        DiskWriteError: out of space, quota, permission or on a read-only file system; the
            temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        encoding = None if "b" in mode else "utf-8"
        with open(temporary, mode, encoding=encoding, newline=newline) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        _pause_for_tests(path)
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise translate(error, path, what) from error
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes | memoryview, what: str) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, what, "wb") as file:
        file.write(data)


def write_text(path: str | os.PathLike, text: str, what: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, what, "w") as file:
        file.write(text)


def copy_file(source: str | os.PathLike, path: str | os.PathLike, what: str) -> None:
    """Copy ``source`` to ``path`` atomically (see :func:`atomic_file`)."""
    with open(source, "rb") as reader, atomic_file(path, what, "wb") as file:
        shutil.copyfileobj(reader, file)


def save_torch(obj: Any, path: str | os.PathLike, what: str) -> None:
    """``torch.save(obj, path)``, atomically and with a clear error on a full disk.

    The object is serialised in memory first: torch's zip writer, writing to a full disk,
    fails with "unexpected pos ..." instead of the disk error.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer(), what)


def save_figure(figure: Any, path: str | os.PathLike, what: str, **savefig_options: Any) -> None:
    """A matplotlib figure to ``path`` (its format from the suffix), atomically."""
    suffix = Path(path).suffix.lstrip(".") or "png"
    with atomic_file(path, what, "wb") as file:
        figure.savefig(file, format=suffix, **savefig_options)


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of ``path`` left by killed processes of this host."""
    host = socket.gethostname()
    for leftover in path.parent.glob(f".{path.name}.{host}.*.tmp"):
        pid = leftover.name[len(f".{path.name}.{host}.") : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _pause_for_tests(path: Path) -> None:
    """The test hook of the module docstring."""
    wanted = os.environ.get(PAUSE_VARIABLE)
    if not wanted or wanted not in str(path):
        return
    print(f"paused writing {path}", file=sys.stderr, flush=True)
    gate = os.environ.get(GATE_VARIABLE, "")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (gate and os.path.exists(gate)):
        time.sleep(0.05)
