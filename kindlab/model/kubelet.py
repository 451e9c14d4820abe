"""The kubelet's sandbox retry, stated once (stdlib only: the model's agent imports it).

When a pod's sync fails, the kubelet's pod worker tries again after a constant back-off (10 s) plus up to 50 %
jitter, read on the sync loop's next 1 s tick. A pod whose sandbox fails in its CNI ADD never gets that far on
containerd 1.7 (measured in the lab with v1.20.2 and containerd 1.7.24: tests/data/real, benchmarks/bench_fidelity.py):
the chain's DEL after the failed ADD fails the same way, containerd keeps the sandbox in state SANDBOX_UNKNOWN,
PLEG's 1 s relist finds it and wakes the pod worker (the first relist that starts after the failed sync, since a
pod worker syncs only on a status cache newer than its last sync), and the kubelet records SandboxChanged, stops
the sandbox, which succeeds (containerd 1.7 runs no CNI DEL for it), and makes a new one, which fails again. So
every retry comes on the next relist, about once a second, and the back-off is never reached; a fix is picked up
within a second. (containerd 1.6.20's stop ran the DEL and failed, so it kept the one sandbox and the retries
came on the back-off, 10-16 s apart.) kindlab's model does the same, on the same clocks, scaled by its back-off
(`scaled`).

A pod's first sandbox attempt waits for its volumes (every v1.20 pod has its service account token's): the
pod worker's WaitForAttachAndMount looks at once, finds the volume manager (two 100 ms loops) not done yet,
and looks again 300 ms later (`VOLUME_POLL`). The real kubelet's first failed attempt came 0.39-0.47 s after
the apply, RunPodSandbox itself taking 0.13 s of it.

A deleted pod leaves the API only when the kubelet's status manager finds its resources reclaimed, and it looks
on its own 10 s tick (`STATUS_SYNC_PERIOD`): once the pod's container stopped, PLEG's first relist sees it exited
and the kubelet removes it, the second sees it gone and the sandbox is removed, the third sees the sandbox gone
(`RECLAIM_RELISTS`); none of these changes the pod's status, so nothing looks sooner than the tick. Measured in
the lab (the kubelet's log at -v=4, 8 deletes): the third relist 2.2-3.7 s after the delete, the pod gone at
the next tick. It fixes bench_fidelity's row *worker3: delete -> gone* (30 real runs): real 1.55 / 9.77 / 13.85 /
22.19 s (min / p50 / p95 / max) against the model's 0.13-0.29 s before.

Now and then the sandbox waits for the container GC's round instead, once a minute from the kubelet's start
(`CONTAINER_GC_PERIOD`): when the relist that first sees the container exited comes before the kill has stopped
the sandbox too (`left_to_gc`; 45-122 ms in the 8 deletes). The pod worker, busy with the kill, syncs only at the
next relist, so when that relist reports the container removed the kubelet still holds the pod's status as
running and keeps its one sandbox; the pod's status then shows the container waiting (ContainerCreating), not
terminated, and no later event asks for the sandbox again until the GC. Measured: 1 of the 8 deletes (a relist
3 ms after the container's exit, 35 ms before the sandbox's stop; gone after 16.08 s), and 2 of bench_fidelity's
34 real runs (22.19 s and 69.62 s).

A pod deleted while its sandbox keeps failing always waits for the GC: containerd 1.7 stops the sandbox it kept
after the failed set-up without a CNI DEL, so the kill succeeds even with the plugin still missing, and the pod
leaves the API at the first status tick after the GC's next round. Measured in the lab (real lab, containerd
1.7.24, portmap missing): gone 61.4 and 57.9 s after the delete, each at the first tick after a round.
"""

from __future__ import annotations

import math
import random

KUBELET_BACKOFF = 10.0
KUBELET_JITTER = 0.5
#: The kubelet's sync loop tick and PLEG's relist period at the 10 s back-off (s).
SYNC_PERIOD = 1.0
RELIST_PERIOD = 1.0
#: A relist's own time, as a fraction of its period at most (the next relist waits a period after it ends).
RELIST_TIME = 0.05
#: The status manager's sync period: a deleted pod whose resources are reclaimed is deleted from the API on its tick.
STATUS_SYNC_PERIOD = 10.0
#: PLEG relists from a deleted pod's stopped container to the kubelet finding its resources reclaimed.
RECLAIM_RELISTS = 3
#: The kubelet's container garbage collection runs once a minute (ContainerGCPeriod), the first time at its start.
CONTAINER_GC_PERIOD = 60.0
#: WaitForAttachAndMount's poll period: a new pod's first sync waits this long for its volumes (s).
VOLUME_POLL = 0.3


def scaled(period: float, backoff: float = KUBELET_BACKOFF) -> float:
    """A kubelet period for a lab whose back-off is `backoff` (the model's short back-off shortens all of them)."""
    return period * backoff / KUBELET_BACKOFF


def volumes_ready_after(backoff: float = KUBELET_BACKOFF) -> float:
    """How long a new pod's first sync waits for its volumes before its sandbox is made (s)."""
    return scaled(VOLUME_POLL, backoff)


def next_tick(t: float, origin: float, period: float) -> float:
    """The first tick of a clock (ticks at origin + k·period) at or after `t`."""
    return origin + max(0, math.ceil((t - origin) / period - 1e-9)) * period


def left_to_gc(first_relist: float, exited: float, stopped: float, backoff: float = KUBELET_BACKOFF) -> bool:
    """Whether a deleted pod's sandbox waits for the container GC: PLEG's first relist after its container
    `exited` came before the kill had `stopped` its sandbox too (the kill's time scaled, as the model's runtime
    steps are)."""
    return first_relist < exited + scaled(stopped - exited, backoff)


def removed_at(seen: float, origin: float, backoff: float = KUBELET_BACKOFF, gc_origin: float | None = None) -> float:
    """When a deleted pod leaves the API: the status manager's first tick (from `origin`) at or after the relist
    that finds its resources reclaimed. That is `RECLAIM_RELISTS` relists from `seen` (the relist that saw its
    container stopped) on or, when its sandbox was left to the container GC (whose clock starts at `gc_origin`),
    the first relist after the GC's next round."""
    relist = scaled(RELIST_PERIOD, backoff)
    if gc_origin is None:
        reclaimed = seen + (RECLAIM_RELISTS - 1) * relist
    else:
        reclaimed = next_tick(next_tick(seen, gc_origin, scaled(CONTAINER_GC_PERIOD, backoff)), seen, relist)
    return next_tick(reclaimed, origin, scaled(STATUS_SYNC_PERIOD, backoff))


def longest_stay(backoff: float = KUBELET_BACKOFF) -> float:
    """The longest a deleted pod whose kill succeeded stays in the API once its container stopped: a GC round
    missed by a moment, the relist after the next one, then a status tick."""
    return scaled(CONTAINER_GC_PERIOD + 2 * RELIST_PERIOD * (1 + RELIST_TIME) + STATUS_SYNC_PERIOD, backoff)


def retry_delay(backoff: float = KUBELET_BACKOFF, jitter: float = KUBELET_JITTER,
                rng: random.Random | None = None) -> float:
    """The wait before the next sandbox attempt: backoff·(1 + jitter·U), U uniform in [0, 1)."""
    return backoff * (1 + jitter * (rng or random).random())


def window(backoff: float = KUBELET_BACKOFF, jitter: float = KUBELET_JITTER) -> tuple[float, float]:
    """The earliest and latest next attempt after a failure (s)."""
    return backoff, backoff * (1 + jitter)


def describe_window(backoff: float = KUBELET_BACKOFF, jitter: float = KUBELET_JITTER) -> str:
    """The window as words: '10-15 s'."""
    low, high = window(backoff, jitter)
    return f"{low:g}-{high:g} s"


def retry_window(backoff: float = KUBELET_BACKOFF) -> tuple[float, float]:
    """The earliest and latest next sandbox attempt after a failed one whose sandbox containerd kept (every failed
    CNI ADD, on containerd 1.7): the next relist, a period after the last one ended (s)."""
    return window(scaled(RELIST_PERIOD, backoff), RELIST_TIME)


def describe_retry_window(backoff: float = KUBELET_BACKOFF) -> str:
    """The retry window as words: '1-1.05 s'."""
    return describe_window(scaled(RELIST_PERIOD, backoff), RELIST_TIME)
