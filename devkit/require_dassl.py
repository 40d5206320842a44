"""A pytest plugin: with PROGRAD_REQUIRE_DASSL set (.ci/run sets it when it has installed Dassl),
a test that skips because Dassl is missing fails the run instead of passing unnoticed."""

from __future__ import annotations

import os

import pytest

ENVIRONMENT_VARIABLE = "PROGRAD_REQUIRE_DASSL"
_dassl_skips: list[str] = []


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return str(longrepr[-1] if isinstance(longrepr, tuple) else longrepr)


def _record(report) -> None:
    if report.skipped and os.environ.get(ENVIRONMENT_VARIABLE):
        reason = _skip_reason(report)
        if "dassl" in reason.lower():
            _dassl_skips.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report) -> None:
    _record(report)  # module-level pytest.importorskip("dassl")


def pytest_runtest_logreport(report) -> None:
    _record(report)


def pytest_terminal_summary(terminalreporter) -> None:
    if _dassl_skips:
        terminalreporter.section(f"{ENVIRONMENT_VARIABLE}: tests skipped for want of Dassl")
        for line in _dassl_skips:
            terminalreporter.write_line(line, red=True)


def pytest_sessionfinish(session) -> None:
    if _dassl_skips:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
