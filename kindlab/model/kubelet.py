"""The kubelet's sandbox retry back-off, stated once (stdlib only: the model's agent imports it).

When a pod's sandbox fails, the kubelet's pod worker tries again after a constant back-off (10 s) plus up
to 50 % jitter, without growing: each attempt is U[backoff, backoff·(1+jitter)] after the previous failure.
The distribution of the time to heal that this implies is `kindlab.model.backoff`.

The real kubelet (v1.20.2 + containerd 1.6.20, measured in the lab) also retries once at once after a
pod's first failed sandbox (0-0.4 s later, with a SandboxChanged event: the dead sandbox's PLEG event
wakes the pod worker); the back-off governs every retry after that one. kindlab's model does not do
that immediate retry (yet): a backend says which it runs (`Capabilities.immediate_retries`).
"""

from __future__ import annotations

import random

KUBELET_BACKOFF = 10.0
KUBELET_JITTER = 0.5
#: Time allowed for the real kubelet's immediate retry to fail after its SandboxChanged event is seen (measured
#: at most 0.4 s): a fix applied before then races that retry instead of waiting for the back-off.
IMMEDIATE_RETRY_SETTLE = 1.0


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
