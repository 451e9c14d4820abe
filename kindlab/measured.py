"""What the real kubelet v1.20.2 (with containerd 1.6.20) does, as measured in the lab or written in its source.

These are the bounds a test holds a backend to: kindlab's model of the kubelet (`kindlab.model.kubelet`) copies
them, so a bound taken from the model itself, or from a backend's `Capabilities.heal_slack`, cannot fail when the
model is wrong; one taken from here can. Each fact says where it comes from. Times are seconds at the real
kubelet's 10 s back-off; a lab with a shorter back-off scales them (`kindlab.model.kubelet.scaled`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    """The lowest and highest value seen (equal for a constant read in the source), and where."""

    low: float
    high: float
    source: str


#: The pod worker's back-off after a failed sync.
BACKOFF = Fact(10.0, 10.0, "kubernetes v1.20.2 pkg/kubelet/kubelet.go: backOffPeriod = time.Second * 10")
#: The back-off's jitter: wait.Jitter adds up to this fraction of it.
BACKOFF_JITTER = Fact(0.5, 0.5, "kubernetes v1.20.2 pkg/kubelet/pod_workers.go: workerBackOffPeriodJitterFactor = 0.5")
#: The sync loop's tick, on which a backed-off pod worker's retry is read.
SYNC_TICK = Fact(1.0, 1.0, "kubernetes v1.20.2 pkg/kubelet/kubelet.go, syncLoop: time.NewTicker(time.Second)")
#: PLEG's relist period: the retry at once after a pod's first failed sandbox comes on it.
RELIST = Fact(1.0, 1.0, "kubernetes v1.20.2 pkg/kubelet/kubelet.go: plegRelistPeriod = time.Second * 1")

#: A pod's first failed sandbox -> the retry at once (the kept sandbox found by the relist).
FIRST_RETRY = Fact(0.0, 0.41, "tests/data/real/README.md: 3 runs of record.py on 2026-12-01 (0.41, 0.0, 0.0 s)")
#: One failed retry -> the next, after the back-off and the sync tick.
RETRY_GAP = Fact(10.96, 15.92, "tests/data/real/README.md: 15 gaps in 3 runs on 2026-12-01, 10.96-15.0 s; "
                               "15.92 s in a CI run of tests/test_real_lab.py (commit e368c9e)")
#: A fix (portmap back) that came just after a failed attempt -> the pod Running: the longest a heal takes.
HEAL_AFTER_FIX = Fact(14.04, 16.5, "tests/data/real/README.md: 3 runs, fix 0.10-0.13 s after a failure, "
                                   "14.04-16.04 s; 16.5 s on kind with Cilium (kindlab/backends/kind/cluster.py)")
#: What kindlab's model adds, unscaled, to those times scaled to its short back-off (its sandbox's namespaces, the
#: real CNI ADD, the echo server's start), on a loaded machine.
MODEL_OWN_WORK = Fact(0.0, 0.41, "a CI run of tests/test_heal.py at a 0.5 s back-off: Running 1.16 s after the fix, "
                                 "0.41 s past the 0.75 s window (commit 2edcf8c)")
#: A new pod's apply -> its first failed sandbox attempt (volumes first, then RunPodSandbox's 0.13 s).
FIRST_ATTEMPT = Fact(0.39, 0.47, "the real kubelet's log in the lab, as kindlab/model/kubelet.py's docstring gives it")


def latest_heal(backoff: float | None = None) -> float:
    """The longest measured fix -> Running on the real kubelet, for a lab whose back-off is `backoff` (its
    clocks scaled as the model scales them; None: the real kubelet's own 10 s)."""
    return HEAL_AFTER_FIX.high * (1.0 if backoff is None else backoff / BACKOFF.low)


#: What a loaded machine may add to a real kubelet's heal (the attempt's sandbox, pull and start): a margin, not a
#: measurement; the real heals above stayed within 0.5 s of 16.04 s.
LOADED_MACHINE = 1.5


def heal_bound(backoff: float | None = None, kubelet: str = "real") -> float:
    """The latest a pod may turn Running after a fix and still heal as the real kubelet was measured to: its longest
    heal at this back-off, plus the model's own unscaled work (`kubelet` "model", as `Capabilities.kubelet` says)
    with 0.1 s to spare, or a loaded machine's margin (a real kubelet)."""
    extra = MODEL_OWN_WORK.high + 0.1 if kubelet == "model" else LOADED_MACHINE
    return latest_heal(backoff) + extra


def retry_gap_bounds(backoff: float | None = None) -> tuple[float, float]:
    """Upstream's earliest and latest gap between two backed-off retries (back-off, its jitter, the sync tick),
    for a lab whose back-off is `backoff` (None: 10 s): 10-16 s on the real kubelet."""
    scale = 1.0 if backoff is None else backoff / BACKOFF.low
    return BACKOFF.low * scale, (BACKOFF.low * (1 + BACKOFF_JITTER.high) + SYNC_TICK.high) * scale
