"""A pod's sandbox attempts and start from containerd's own log (real/runtime_log.py), on logs recorded from
the lab's real Kubernetes (tests/data/real/containerd-worker2.log, containerd 1.6.20, and
containerd-1.7-worker2.log, containerd 1.7.24: see its README)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from kindlab.backends.netns.real import runtime_log, task_events

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
    assert times.container_id == "db33357b47ad32acc8b772035c2b5755dff414e72e3bb893647bcb4bd10ac363"   # that start's


LOG_17 = LOG.with_name("containerd-1.7-worker2.log")
HEALED_17 = "f0585394-4bcf-4a66-b281-03feb2470629"   # record.py's worker2 pod: 6 failures, healed by the 7th


def test_on_containerd_17_every_failed_sandbox_is_an_attempt_a_relist_apart():
    times = runtime_log.times(LOG_17, HEALED_17)
    assert times is not None and len(times.attempts) == 6
    gaps = [b - a for a, b in zip(times.attempts, times.attempts[1:], strict=False)]
    assert gaps[0] < 0.6 and all(0.95 <= g <= 1.1 for g in gaps[1:]), gaps   # the first relist, then each one
    assert abs(times.running_at - at("2026-12-07T11:16:04.668533")) < 1e-5   # StartContainer returns successfully
    assert times.container_id == "68deec7627a26a6649807f5092fb6e696fbe7348c73af49876bb08b63e4c6478"


def test_a_pod_the_log_never_saw_has_no_record(tmp_path):
    assert runtime_log.times(LOG, "00000000-0000-0000-0000-000000000000") is None
    assert runtime_log.times(tmp_path / "missing.log", HEALED) is None


def test_a_growing_log_is_read_as_it_grows(tmp_path):
    lines = LOG.read_bytes().splitlines(keepends=True)
    log = tmp_path / "containerd.log"
    cut = next(i for i, line in enumerate(lines) if b"StartContainer for" in line)
    log.write_bytes(b"".join(lines[:cut]) + lines[cut][:40])          # the start's line half written
    early = runtime_log.times(log, HEALED)
    assert early is not None and early.running_at is None and len(early.attempts) == 6
    with open(log, "ab") as f:
        f.write(lines[cut][40:] + b"".join(lines[cut + 1:]))
    assert runtime_log.times(log, HEALED) == runtime_log.times(LOG, HEALED)   # the appended part counted once
    log.write_bytes(b"".join(lines[:3]))                             # a new, shorter log: read again from its start
    assert runtime_log.times(log, HEALED) is None


def test_stamps_keep_microseconds():
    assert runtime_log.epoch("2026-12-01T12:40:34.404639739Z") == at("2026-12-01T12:40:34.404639")
    assert runtime_log.epoch("2026-12-01T12:40:34Z") == at("2026-12-01T12:40:34")


def test_task_start_events_as_ctr_events_prints_them():
    start = task_events.parse('2026-12-01 12:41:39.179912345 +0000 UTC k8s.io /tasks/start '
                              '{"container_id":"db33357b","pid":4242}\n')
    assert start == ("db33357b", at("2026-12-01T12:41:39.179912"))
    assert task_events.parse('2026-12-01 12:41:39.2 +0000 UTC k8s.io /tasks/exit {"container_id":"db33357b"}') is None
    assert task_events.parse("2026-12-01 12:41:39 +0000 UTC k8s.io /tasks/start {not json}") is None
    assert task_events.parse("") is None


def test_task_starts_follow_ctr_events_while_open(tmp_path):
    """TaskStarts runs `ctr events` in the node (here a stand-in `ctr` that prints two events and waits)."""
    ctr = tmp_path / "ctr"
    ctr.write_text("#!/bin/sh\n[ \"$1\" = events ] || exit 2\n"
                   "echo '2026-12-01 12:41:39.179912345 +0000 UTC k8s.io /tasks/create {\"container_id\":\"a\"}'\n"
                   "echo '2026-12-01 12:41:39.179912345 +0000 UTC k8s.io /tasks/start {\"container_id\":\"a\"}'\n"
                   "exec sleep 30\n")
    ctr.chmod(0o755)
    with task_events.TaskStarts(["env", f"PATH={tmp_path}:/usr/bin:/bin"]) as starts:
        start = starts.start_of("a", timeout=5)
        assert start is not None and start.runtime_at == at("2026-12-01T12:41:39.179912")
        assert start.arrived_at >= start.runtime_at
        assert starts.start_of("b", timeout=0.1) is None
        process = starts.process
    assert process is not None and process.poll() is not None   # `ctr events` ends with the block


def test_a_start_is_stamped_when_it_arrives_even_while_the_caller_holds_the_interpreter(tmp_path):
    """The arrival is stamped by a process of its own: a caller busy in C code (no thread of its can run) does not
    make a start look later than it reached kindlab."""
    ctr = tmp_path / "ctr"
    ctr.write_text("#!/bin/sh\nsleep 0.6\n"   # once TaskStarts is open (it waits SUBSCRIBE) and the caller is busy
                   "printf '%s +0000 UTC k8s.io /tasks/start {\"container_id\":\"a\"}\\n' \"$(date -u '+%F %T.%N')\"\n"
                   "exec sleep 30\n")
    ctr.chmod(0o755)
    with task_events.TaskStarts(["env", f"PATH={tmp_path}:/usr/bin:/bin"]) as starts:
        began = time.time()
        sum(range(60_000_000))   # C code holding the interpreter's lock for about a second
        busy = time.time() - began
        start = starts.start_of("a", timeout=5)
    assert start is not None and busy > 0.5, busy
    assert start.arrived_at - start.runtime_at < 0.1, (start, busy)
