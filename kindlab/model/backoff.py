"""The retry model: how long a pod takes to heal after a fix, given how far apart the kubelet's retries come
(a period and its jitter: PLEG's relist on containerd 1.7, `retry_model`; the pod worker's back-off otherwise)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .kubelet import KUBELET_BACKOFF, KUBELET_JITTER, RELIST_PERIOD, RELIST_TIME, scaled, window


@dataclass(frozen=True)
class BackoffModel:
    """The kubelet's sandbox retry: each attempt U[backoff, backoff·(1+jitter)] after the previous failure.

    A fix applied `delay` s after a failure heals at the first attempt later than the fix, so the time to
    heal is that attempt's time minus `delay`, plus `setup` (sandbox, CNI ADD, container start until Ready).
    For delay ≤ backoff it is uniform on [backoff - delay, backoff·(1+jitter) - delay] + setup.
    """

    backoff: float = KUBELET_BACKOFF
    jitter: float = KUBELET_JITTER
    setup: float = 0.0

    @property
    def low(self) -> float:
        """The earliest retry after a failure (s)."""
        return window(self.backoff, self.jitter)[0]

    @property
    def high(self) -> float:
        """The latest retry after a failure (s)."""
        return window(self.backoff, self.jitter)[1]

    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, n) if self.high > self.low else np.full(n, self.low)

    def sample(self, delay: float = 0.0, n: int = 100_000, seed: int | None = 0) -> np.ndarray:
        """`n` sampled times to heal for a fix at `delay` s after a failure."""
        rng = np.random.default_rng(seed)
        attempt = self._gaps(rng, n)
        while (late := attempt <= delay).any():  # the fix came after this attempt: it failed too
            attempt[late] += self._gaps(rng, int(late.sum()))
        return attempt - delay + self.setup

    def mean(self, delay: float = 0.0) -> float:
        """Expected time to heal (s); exact for delay ≤ backoff, sampled beyond."""
        if delay <= self.low:
            return (self.low + self.high) / 2 - delay + self.setup
        return float(self.sample(delay).mean())

    def quantile(self, q: float | Sequence[float], delay: float = 0.0) -> float | np.ndarray:
        """Quantile(s) of the time to heal (s); exact for delay ≤ backoff, sampled beyond."""
        qs = np.asarray(q, dtype=float)
        if delay <= self.low:
            out = self.low + qs * (self.high - self.low) - delay + self.setup
        else:
            out = np.quantile(self.sample(delay), qs)
        return float(out) if out.ndim == 0 else out

    def pdf(self, x: float | np.ndarray, delay: float = 0.0) -> np.ndarray:
        """Density of the time to heal at `x` for delay ≤ backoff (uniform); NaN beyond."""
        x = np.asarray(x, dtype=float) - self.setup
        if delay > self.low:
            return np.full_like(x, np.nan)
        width = self.high - self.low
        inside = (x >= self.low - delay) & (x <= self.high - delay)
        return np.where(inside, 1.0 / width if width else np.inf, 0.0)

    def curve(self, delays: Iterable[float], quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
        """Per delay: mean and quantiles of the time to heal; columns delay, mean, p5, p50, p95, ..."""
        rows = []
        for d in delays:
            values = np.atleast_1d(self.quantile(quantiles, float(d)))
            rows.append({"delay": float(d), "mean": self.mean(float(d)),
                         **{f"p{round(q * 100):g}": float(v) for q, v in zip(quantiles, values, strict=True)}})
        return pd.DataFrame(rows)


def backoff_model(backoff: float = KUBELET_BACKOFF, jitter: float = KUBELET_JITTER,
                  setup: float = 0.0) -> BackoffModel:
    """The back-off model for a kubelet (10 s, 50 % jitter) or a lab's configured back-off.

    `setup` (s) shifts the times by the sandbox and container start, e.g. `estimate_setup(df)`.
    """
    if backoff <= 0 or jitter < 0 or setup < 0:
        raise ValueError(f"backoff must be > 0, jitter and setup >= 0; got {backoff}, {jitter}, {setup}")
    return BackoffModel(float(backoff), float(jitter), float(setup))


def retry_model(backoff: float = KUBELET_BACKOFF, setup: float = 0.0) -> BackoffModel:
    """The retry model of a pod whose sandbox fails in its CNI ADD on containerd 1.7: every retry on PLEG's next
    relist (kubelet.retry_window), for a lab whose clocks are scaled by `backoff` (the kubelet's 10 s: 1 s apart)."""
    return backoff_model(scaled(RELIST_PERIOD, backoff), RELIST_TIME, setup)
