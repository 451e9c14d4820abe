"""Skips counted, and under CI only the listed ones allowed (a pytest plugin; tests/conftest.py loads its hooks).

With the environment variable CI set, a skip that tests/allowed_skips.toml does not list (its test id pattern and
the skip's message) becomes a failure saying so: on a machine that set-up prepared, a missing tool or a daemon that
does not start is a broken machine, not a pass. Every session prints its skip count; where KINDLAB_SKIP_REPORT
names a file, each skip is appended to it (`.ci/run` prints the count from it at the end).
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import pytest

LIST = Path(__file__).with_name("allowed_skips.toml")
REPORT_ENV = "KINDLAB_SKIP_REPORT"
LIST_ENV = "KINDLAB_ALLOWED_SKIPS"   # another list, for the policy's own tests


@dataclass(frozen=True)
class AllowedSkip:
    """One entry of the list: which tests, on which skip message, and why that is no failure."""

    test: str
    when: re.Pattern[str]
    reason: str

    def covers(self, nodeid: str, message: str) -> bool:
        return fnmatch.fnmatchcase(nodeid, self.test) and self.when.search(message) is not None


def load(path: Path) -> list[AllowedSkip]:
    """The list's entries; a malformed list is a usage error naming the file and the entry."""
    try:
        entries = tomllib.loads(path.read_text()).get("skip", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise pytest.UsageError(f"{path}: cannot read the list of allowed skips: {exc}") from exc
    allowed = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or set(entry) != {"test", "when", "reason"} or not all(
                isinstance(v, str) and v.strip() for v in entry.values()):
            raise pytest.UsageError(f"{path}: skip entry {i} must have exactly the non-empty strings "
                                    f"test, when and reason; it has {entry!r}")
        try:
            allowed.append(AllowedSkip(entry["test"], re.compile(entry["when"]), entry["reason"]))
        except re.error as exc:
            raise pytest.UsageError(f"{path}: skip entry {i}: `when` is no regular expression: {exc}") from exc
    return allowed


@dataclass
class Tally:
    """The session's skips: allowed ones, and those turned into failures."""

    allowed: list[AllowedSkip]
    enforce: bool
    skipped: list[tuple[str, str]]
    refused: list[tuple[str, str]]


TALLY = pytest.StashKey[Tally]()


def message_of(report: pytest.TestReport | pytest.CollectReport) -> str:
    """A skip's own message, without pytest's 'Skipped: ' prefix."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def judge(config: pytest.Config, report: pytest.TestReport | pytest.CollectReport) -> None:
    """Count a skip; under CI, turn one the list does not cover into a failure."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    tally, message = config.stash[TALLY], message_of(report)
    if not tally.enforce or any(a.covers(report.nodeid, message) for a in tally.allowed):
        tally.skipped.append((report.nodeid, message))
        return
    tally.refused.append((report.nodeid, message))
    if isinstance(report, pytest.CollectReport):
        return   # a failed collection would stop the session; pytest_sessionfinish fails it instead
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI, and tests/allowed_skips.toml does not allow it: {message}\n"
                       "(fix the machine or the test; or list the skip there with the reason it is no failure)")


def pytest_configure(config: pytest.Config) -> None:
    path = Path(os.environ.get(LIST_ENV) or LIST)
    config.stash[TALLY] = Tally(load(path), bool(os.environ.get("CI")), [], [])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                             pytest.TestReport]:
    report = yield
    judge(item.config, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, pytest.CollectReport,
                                                                          pytest.CollectReport]:
    report = yield
    judge(collector.config, report)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A refused skip of a whole module (at collection) fails the session: its tests never ran."""
    if session.config.stash[TALLY].refused and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    tally = config.stash[TALLY]
    policy = "CI: only tests/allowed_skips.toml's" if tally.enforce else "not CI: every skip allowed"
    terminalreporter.write_line(f"skips: {len(tally.skipped)} taken, {len(tally.refused)} turned into failures "
                                f"({policy})")
    for nodeid, message in tally.refused:
        terminalreporter.write_line(f"skip refused under CI: {nodeid}: {message}", red=True)
    if report := os.environ.get(REPORT_ENV):
        with open(report, "a") as out:
            for verdict, rows in (("skipped", tally.skipped), ("FAILED", tally.refused)):
                out.writelines(f"{verdict}\t{nodeid}\t{message}\n" for nodeid, message in rows)
