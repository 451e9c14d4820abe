"""The kubelet's sandbox retry back-off, stated once (stdlib only: the model's agent imports it).

When a pod's sandbox fails, the kubelet's pod worker tries again after a constant back-off (10 s) plus up
to 50 % jitter, without growing: each attempt is U[backoff, backoff·(1+jitter)] after the previous failure.
The distribution of the time to heal that this implies is `kindlab.model.backoff`.
"""

from __future__ import annotations

import random

KUBELET_BACKOFF = 10.0
KUBELET_JITTER = 0.5


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
