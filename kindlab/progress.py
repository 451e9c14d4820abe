"""Progress reports: backends call a reporter they are given; only the caller decides how to show it.

A reporter is any callable `report(message, done=None, total=None)`. `quiet` shows nothing (tests),
`printer` prints each message on a line, and `bars` draws a tqdm bar for counted steps (the command
line on a terminal, and notebooks, where a bar prints its final state once).
"""

from __future__ import annotations

import sys
from typing import IO, Any, Protocol


class Reporter(Protocol):
    """Where a backend reports what it is doing."""

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None: ...


def quiet(message: str, done: int | None = None, total: int | None = None) -> None:
    """Show nothing."""


def printer(file: IO[str] | None = None) -> Reporter:
    """Print each message; counted steps only when they complete."""
    def report(message: str, done: int | None = None, total: int | None = None) -> None:
        if total is None or done == total:
            print(message if total is None else f"{message}: {done}/{total}", file=file or sys.stdout, flush=True)
    return report


def bar(total: int, desc: str, file: IO[str] | None = None) -> Any:
    """A tqdm bar: live in a terminal; elsewhere (a notebook run for the book) drawn once, at the end."""
    from tqdm import tqdm

    out = file or sys.stdout
    live = out.isatty()
    return tqdm(total=total, desc=desc, file=out, ncols=80, bar_format="{desc}: {n}/{total} {bar} {elapsed}",
                mininterval=0.2 if live else 1e9, delay=0 if live else 1e-3)


class Bars:
    """A reporter that draws one bar per counted step and prints plain messages."""

    def __init__(self, file: IO[str] | None = None):
        self.file = file
        self._bars: dict[str, Any] = {}

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None:
        if total is None:
            print(message, file=self.file or sys.stdout, flush=True)
            return
        current = self._bars.get(message)
        if current is None:
            current = self._bars[message] = bar(total, message, self.file)
        current.update((done or 0) - current.n)
        if done is not None and done >= total:
            current.close()
            del self._bars[message]


def resolve(progress: Reporter | bool | None) -> Reporter:
    """A reporter from what a caller passed: a reporter, True (bars), or False/None (quiet)."""
    if callable(progress):
        return progress
    return Bars() if progress else quiet
