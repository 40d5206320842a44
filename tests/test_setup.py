"""The set-up a new user and CI go through: `make test` / `make demo`'s install step (idempotent,
into the active environment), the requirement check that lets it skip pip, the pinned Dassl
install, and CI's rule that no test may skip for want of Dassl when a copy of Dassl is there."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.requirements_met import missing_requirements

ROOT = Path(__file__).resolve().parents[1]


def test_requirements_met_reports_only_what_is_missing_or_of_another_version(tmp_path):
    """Installed and satisfied: nothing; absent, or the wrong version: that line."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# a comment\npytest\nsetuptools<1000\n"
        "no-such-package-for-prograd-tests\npytest==0.0.1  # too old\n"
        'tqdm; python_version < "3"\n'
    )
    missing = missing_requirements(str(requirements))
    assert missing[0] == "no-such-package-for-prograd-tests"
    assert missing[1].startswith("pytest==0.0.1 (found ")
    assert len(missing) == 2


def test_project_requirements_are_met_here():
    """The environment running the tests has everything requirements.txt asks for."""
    assert missing_requirements(str(ROOT / "requirements.txt")) == []


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_install_a_second_time_only_checks():
    """`make install` (what `make test` / `make demo` run first) with everything in place: it
    names the environment it installs into, and skips pip for the requirements and Dassl."""
    result = subprocess.run(
        ["make", "--no-print-directory", "install", f"PYTHON={sys.executable}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Installing into the active Python environment: {sys.prefix}" in result.stdout
    assert "requirements.txt: everything is installed" in result.stdout
    assert "requirements.txt: installing" not in result.stdout
    if importlib.util.find_spec("dassl") is not None:
        assert "Dassl is already installed" in result.stdout
        assert "Installing Dassl" not in result.stdout


def test_install_dassl_pins_the_tested_commit():
    """scripts/install_dassl.sh clones upstream at c61a1b5, the commit that CI tests."""
    script = (ROOT / "scripts" / "install_dassl.sh").read_text()
    assert "DASSL_COMMIT=${DASSL_COMMIT:-c61a1b5}" in script
    assert "https://github.com/KaiyangZhou/Dassl.pytorch.git" in script


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_install_dassl_clones_the_pinned_commit_and_installs_it(tmp_path):
    """Without Dassl, the script clones DASSL_REPO, checks out DASSL_COMMIT (not the newest
    commit) and pip-installs that copy with --no-build-isolation --no-deps."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git = ["git", "-C", str(upstream), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    for version in ("pinned", "newer"):
        (upstream / "VERSION").write_text(version)
        subprocess.run([*git, "add", "VERSION"], check=True)
        subprocess.run([*git, "commit", "-qm", version], check=True)
    pinned = subprocess.run([*git, "rev-parse", "HEAD~1"], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    # A python in which Dassl is missing and whose pip only records what it is asked.
    fake_python = tmp_path / "python"
    fake_python.write_text(
        f'#!/bin/sh\nif [ "$1" = "-c" ]; then exit 1; fi\necho "$@" >> {tmp_path / "pip_calls"}\n'
    )
    fake_python.chmod(0o755)
    clone = tmp_path / "Dassl.pytorch"
    environment = {**os.environ, "PYTHON": str(fake_python), "DASSL_SRC": str(clone),
                   "DASSL_REPO": str(upstream), "DASSL_COMMIT": pinned}  # fmt: skip
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install_dassl.sh")],
        capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (clone / "VERSION").read_text() == "pinned"
    calls = (tmp_path / "pip_calls").read_text()
    assert calls == f"-m pip install -q --no-build-isolation --no-deps {clone}\n"


def test_ci_runs_make_test_with_the_shared_dassl_copy():
    """.ci/run installs Dassl from a writable copy of ../shared/third_party and runs `make test`."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "../shared/third_party/Dassl.pytorch" in ci
    assert "export DASSL_SRC=" in ci and "export PROGRAD_REQUIRE_DASSL=1" in ci
    assert "\nmake test\n" in ci


@pytest.mark.parametrize("required", [True, False])
def test_a_test_skipped_for_want_of_dassl_fails_the_run_when_dassl_is_required(tmp_path, required):
    """With PROGRAD_REQUIRE_DASSL set, a skip whose reason names Dassl makes pytest exit 1 and
    lists the test; other skips, or the variable unset, leave the run green."""
    (tmp_path / "test_needs_dassl.py").write_text(
        "import pytest\n"
        'pytest.importorskip("no_such_module", reason="upstream Dassl is not installed")\n'
        "def test_uses_dassl():\n    pass\n"
    )
    (tmp_path / "test_other.py").write_text(
        "import pytest\n"
        '@pytest.mark.skip(reason="needs CUDA")\ndef test_gpu():\n    pass\n'
        "def test_plain():\n    pass\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("PROGRAD_REQUIRE_DASSL", None)
    if required:
        environment["PROGRAD_REQUIRE_DASSL"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "devkit.require_dassl",
         "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    assert result.returncode == (1 if required else 0), result.stdout
    listed = "test_needs_dassl.py: Skipped: upstream Dassl is not installed" in result.stdout
    assert listed == required
    assert "test_other.py" not in result.stdout.split("tests skipped for want of Dassl")[-1]
