"""Waiting with a deadline, written once: every loop that polls until something holds uses these."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import KindlabError, WaitTimeout

T = TypeVar("T")


class Deadline:
    """A point `seconds` from now on the monotonic clock."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds until the deadline, never below 0."""
        return max(0.0, self.at - time.monotonic())

    @property
    def passed(self) -> bool:
        """True once the deadline is reached."""
        return time.monotonic() >= self.at

    def sleep(self, interval: float) -> None:
        """Sleep `interval` seconds, or until the deadline if that comes first."""
        time.sleep(min(interval, self.left()))


def until(check: Callable[[], T], timeout: float, every: float = 0.05, what: str = "condition",
          fail: Callable[[str], KindlabError] = WaitTimeout,
          tolerate: tuple[type[Exception], ...] = ()) -> T:
    """Call `check` every `every` seconds until it returns something true, and return that.

    Exceptions of the `tolerate` types count as "not yet" (the last one is named if time runs out);
    after `timeout` seconds `fail("WHAT: not reached in Ns ...")` is raised. `check` runs at least once.
    """
    deadline = Deadline(timeout)
    last: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except tolerate as exc:
            last = exc
        if deadline.passed:
            raise fail(f"{what}: not reached in {timeout:g}s"
                       + (f" (last error: {str(last)[:200]})" if last is not None else ""))
        deadline.sleep(every)
