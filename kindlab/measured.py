"""What the real kubelet v1.20.2 (with containerd 1.7.24) does, as measured in the lab or written in its source.

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
#: PLEG's relist period: every retry of a pod whose failed sandbox containerd kept comes on it.
RELIST = Fact(1.0, 1.0, "kubernetes v1.20.2 pkg/kubelet/kubelet.go: plegRelistPeriod = time.Second * 1")

#: A pod's first failed sandbox -> the retry at once (the kept sandbox found by the relist), RunPodSandbox to
#: RunPodSandbox in containerd's log.
FIRST_RETRY = Fact(0.31, 0.49, "the containerd logs of 4 runs of tests/data/real/record.py on 2026-12-07 "
                               "(0.31, 0.49, 0.49, 0.39 s)")
#: One failed retry -> the next: containerd 1.7 stops the kept sandbox without a CNI DEL, so every retry comes on
#: PLEG's next relist (the back-off is never reached), RunPodSandbox to RunPodSandbox in containerd's log.
RETRY_GAP = Fact(1.0, 1.01, "the containerd logs of 4 runs of tests/data/real/record.py on 2026-12-07 (19 gaps); "
                            "containerd 1.6.20 had 10.96-15.92 s (its stop of the kept sandbox failed in the CNI DEL)")
#: A fix (portmap back) that came just after a failed attempt -> the pod Running: the longest a heal takes.
HEAL_AFTER_FIX = Fact(1.69, 1.81, "tests/data/real/README.md: 4 runs on 2026-12-07, fix 0.12-0.18 s after a "
                                  "failure, 1.69-1.81 s")
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


#: What a loaded machine may add to a real kubelet's heal (the attempt's sandbox, pull and start, a relist that comes
#: late): a margin, not a measurement; the real heals above stayed within 0.12 s of each other.
LOADED_MACHINE = 1.5


def heal_bound(backoff: float | None = None, kubelet: str = "real") -> float:
    """The latest a pod may turn Running after a fix and still heal as the real kubelet was measured to: its longest
    heal at this back-off, plus the model's own unscaled work (`kubelet` "model", as `Capabilities.kubelet` says)
    with 0.1 s to spare, or a loaded machine's margin (a real kubelet)."""
    extra = MODEL_OWN_WORK.high + 0.1 if kubelet == "model" else LOADED_MACHINE
    return latest_heal(backoff) + extra


def retry_gap_bounds(backoff: float | None = None) -> tuple[float, float]:
    """The earliest and latest gap between two failed retries, for a lab whose back-off is `backoff` (None: the real
    kubelet's 10 s): one relist period, and the relist's own time at most (1-1.05 s on the real kubelet)."""
    scale = 1.0 if backoff is None else backoff / BACKOFF.low
    return RELIST.low * scale, RELIST.high * (1 + RELIST_TIME) * scale


#: A relist's own time, as a fraction of its period at most: the next one starts a period after it ends.
RELIST_TIME = 0.05
