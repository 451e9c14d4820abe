"""A pod's sandbox attempts and start from containerd's own log (real/runtime_log.py), on a log recorded from
the lab's real Kubernetes (tests/data/real/containerd-worker2.log, see its README)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kindlab.backends.netns.real import runtime_log

LOG = Path(__file__).parent / "data" / "real" / "containerd-worker2.log"
HEALED = "9604dbda-146f-4869-9bcc-bbfcdf4e9e07"   # failed, retried five times, healed when portmap came back


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_the_first_failure_and_each_failed_retry_are_attempts():
    times = runtime_log.times(LOG, HEALED)
    assert times is not None and len(times.attempts) == 6
    assert abs(times.attempts[0] - at("2026-12-01T12:40:34.404639")) < 1e-5   # RunPodSandbox ... failed
    gaps = [b - a for a, b in zip(times.attempts, times.attempts[1:], strict=False)]
    assert gaps[0] < 0.5                                   # the immediate retry: a kill of the failed sandbox
    assert all(10.0 <= g <= 15.0 for g in gaps[1:]), gaps  # then the kubelet's back-off, 10 s + up to 50 %
    assert abs(times.running_at - at("2026-12-01T12:41:39.183658")) < 1e-5   # StartContainer returns successfully
    assert times.running_at > times.attempts[-1]


def test_a_pod_the_log_never_saw_has_no_record(tmp_path):
    assert runtime_log.times(LOG, "00000000-0000-0000-0000-000000000000") is None
    assert runtime_log.times(tmp_path / "missing.log", HEALED) is None


def test_stamps_keep_microseconds():
    assert runtime_log.epoch("2026-12-01T12:40:34.404639739Z") == at("2026-12-01T12:40:34.404639")
    assert runtime_log.epoch("2026-12-01T12:40:34Z") == at("2026-12-01T12:40:34")
