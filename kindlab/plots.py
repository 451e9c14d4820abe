"""Figures for the book: self-healing latency, the attempts timeline, the CNI chain, a packet's path.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so nothing leaks
between calls; it renders itself as PNG in Jupyter, so a notebook shows it once, as the cell's value.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from .heal import fixed_after
from .model.backoff import retry_model
from .model.kubelet import retry_window
from .model.pods import SANDBOX_FAILED

FAIL = "#c0392b"
OK = "#1e8449"
FIX = "#2e86c1"
CURL = "#8e44ad"
MODEL = "#7f8c8d"


class _BookFigure(Figure):
    """A Figure that Jupyter displays as PNG without pyplot's inline backend."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


# -- the retry model ---------------------------------------------------------------
def model_heal_times(delay: float, backoff: float, samples: int = 4000, seed: int = 0) -> np.ndarray:
    """Times from a fix to the next sandbox attempt, for a lab whose back-off is `backoff`: the retry model
    (:func:`kindlab.model.backoff.retry_model`, a retry on every relist) sampled."""
    return retry_model(backoff).sample(delay, n=samples, seed=seed)


def _model_for(delays: Iterable[float], backoff: float, per_delay: int = 2000) -> np.ndarray:
    return np.concatenate([model_heal_times(float(d), backoff, per_delay, seed=i)
                           for i, d in enumerate(delays)]) if delays is not None else np.array([])


def _backoff_of(df: pd.DataFrame, backoff: float | None) -> float:
    if backoff is not None:
        return float(backoff)
    if "backoff" in df and df["backoff"].notna().any():
        return float(df["backoff"].dropna().iloc[0])
    raise ValueError("pass backoff= or give the frame a 'backoff' column")


# -- self-healing latency ---------------------------------------------------------------
def plot_heal_vs_delay(df: pd.DataFrame, backoff: float | None = None) -> Figure:
    """Time to heal against the delay of the fix after the last failed attempt, with the retry model.

    ``df`` is :func:`kindlab.heal.experiment`'s frame (columns ``delay``, ``running_after``,
    ``curl_after`` and ``backoff``). The shaded band is where the model puts the time to heal.
    """
    b = _backoff_of(df, backoff)
    fig = _BookFigure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    fixed = fixed_after(df)
    top = float(fixed.max())
    earliest, latest = retry_window(b)
    delays = np.linspace(0, top * 1.05 if top >= earliest else min(top * 1.05 + 0.05 * earliest, earliest * 0.999), 60)
    lo, mid, hi = (np.array([np.percentile(model_heal_times(d, b, 1500), q) for d in delays])
                   for q in (0, 50, 100))
    ax.fill_between(delays, lo, hi, color=MODEL, alpha=0.18, lw=0,
                    label=f"retry window: next retry {earliest:g}–{latest:g} s after the failure")
    ax.plot(delays, mid, color=MODEL, lw=1, ls="--", label="model median")
    ax.scatter(fixed, df["running_after"], color=OK, s=28, zorder=3, label="fix → pod Running")
    if "curl_after" in df and df["curl_after"].notna().any():
        ax.scatter(fixed, df["curl_after"], facecolors="none", edgecolors=CURL, s=46, zorder=3,
                   label="fix → first curl 200")
    ax.set_xlabel("fix applied this long after the last failed attempt (s)")
    ax.set_ylabel("time to heal after the fix (s)")
    ax.set_title(f"Self-healing of a pod on a node missing portmap (retries {earliest:g}–{latest:g} s apart)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_heal_distribution(df: pd.DataFrame, backoff: float | None = None) -> Figure:
    """The distribution of time to heal, measured and modelled (histogram and cumulative distribution).

    The model draws, for each run's delay, the wait until the next retry (the next relist).
    """
    b = _backoff_of(df, backoff)
    measured = df["running_after"].dropna().to_numpy(dtype=float)
    model = _model_for(fixed_after(df).to_numpy(dtype=float), b)
    fig = _BookFigure(figsize=(9, 3.8), layout="constrained")
    hist, cdf = fig.subplots(1, 2)
    earliest, latest = retry_window(b)
    top = max(float(measured.max()) if len(measured) else 0.0, latest) * 1.05
    bins = np.linspace(0, top, 20)
    hist.hist(model, bins=bins, density=True, color=MODEL, alpha=0.35, label="retry model")
    hist.hist(measured, bins=bins, density=True, histtype="step", lw=2, color=OK, label=f"measured ({len(measured)})")
    hist.set_xlabel("fix → pod Running (s)")
    hist.set_ylabel("density")
    hist.legend(fontsize=8)
    for data, color, label in ((model, MODEL, "retry model"), (measured, OK, "measured")):
        xs = np.sort(data)
        cdf.step(xs, np.arange(1, len(xs) + 1) / max(len(xs), 1), where="post", color=color, lw=2, label=label)
    cdf.axvline(latest, color=FAIL, ls=":", lw=1.2, label=f"end of the retry window ({latest:g} s)")
    cdf.set_xlabel("fix → pod Running (s)")
    cdf.set_ylabel("fraction of runs healed")
    cdf.set_xlim(0, top)
    cdf.set_ylim(0, 1.02)
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Time to heal: {len(measured)} runs against the retry model (a retry {earliest:g}–{latest:g} s "
                 "after each failure)")
    return fig


def plot_heal_by_kubelet(df: pd.DataFrame) -> Figure:
    """The real kubelet's and the model's heals side by side: time to Running against the fix's delay, and
    their distributions of the wait past the earliest retry.

    ``df`` holds experiment frames of both, with a ``kubelet`` column ("real", "model"), as chapter 07 writes
    them to its CSV. Both should have run at the same back-off; each kubelet gets its own colour.
    """
    colours = {"real": FAIL, "model": FIX}
    fig = _BookFigure(figsize=(9.5, 3.9), layout="constrained")
    scatter, cdf = fig.subplots(1, 2)
    for kubelet, runs in df.groupby("kubelet", sort=False):
        colour = colours.get(str(kubelet), MODEL)
        label = "the real kubelet" if kubelet == "real" else "kindlab's model" if kubelet == "model" else kubelet
        runs = runs.dropna(subset=["running_after"])
        scatter.scatter(fixed_after(runs), runs["running_after"], color=colour, s=30, alpha=0.8, zorder=3,
                        label=f"{label} ({len(runs)})")
        first = np.array([retry_window(float(b))[0] for b in runs["backoff"]])
        past = np.sort((runs["running_after"] + fixed_after(runs) - first).to_numpy(dtype=float))
        if len(past):
            cdf.step(np.concatenate([[0.0], past]), np.arange(len(past) + 1) / len(past), where="post",
                     color=colour, lw=2, label=label)
    b = _backoff_of(df, None)
    delays = np.linspace(0, max(float(fixed_after(df).max()), 0.0), 30)
    earliest, latest = retry_window(b)
    scatter.fill_between(delays, earliest - delays, latest - delays, color=MODEL, alpha=0.15, lw=0,
                         label=f"retry window {earliest:g}–{latest:g} s after the failure")
    scatter.set_xlabel("fix applied this long after the last failed attempt (s)")
    scatter.set_ylabel("fix → pod Running (s)")
    scatter.set_ylim(bottom=0)
    scatter.grid(alpha=0.3)
    scatter.legend(fontsize=8, loc="upper right")
    cdf.set_xlabel(f"failure → Running, less the earliest retry's {earliest:g} s (s)")
    cdf.set_ylabel("fraction of runs")
    cdf.set_xlim(left=0)
    cdf.set_ylim(0, 1.02)
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"The real kubelet and kindlab's model on the same experiment (retries {earliest:g}–{latest:g} s "
                 "apart)")
    return fig


# -- the attempts timeline --------------------------------------------------------------
def _seconds(value: Any) -> float:
    """A time as seconds since the epoch: floats pass through; timestamps, datetimes and ISO strings convert."""
    if value is None:
        raise ValueError("no time")
    if isinstance(value, (int, float, np.floating, np.integer)):
        return float(value)
    if isinstance(value, datetime | str | np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            value = value.tz_localize("UTC")
        return value.timestamp()
    raise TypeError(f"not a time: {value!r}")


def attempt_times(events_or_attempts: pd.DataFrame | Sequence[Any], reason: str = SANDBOX_FAILED
                  ) -> tuple[list[float], list[tuple[float, str]]]:
    """Split events (or bare attempt times) into failed-attempt times and other labelled moments, in epoch seconds.

    A frame may have one row per attempt (``time`` and ``reason``) or one row per event with ``count``
    and ``firstTimestamp``/``lastTimestamp``, as Kubernetes aggregates repeats; then only the first and
    last attempts have a known time.
    """
    if not isinstance(events_or_attempts, pd.DataFrame):
        return sorted(_seconds(t) for t in events_or_attempts), []
    frame = events_or_attempts
    failed: list[float] = []
    others: list[tuple[float, str]] = []
    for row in frame.to_dict("records"):
        why = str(row.get("reason") or reason)
        times = [row.get("time")]
        if int(row.get("count") or 1) > 1 and row.get("firstTimestamp") and row.get("lastTimestamp"):
            times = [row["firstTimestamp"], row["lastTimestamp"]]
        for t in times:
            if t is None or (isinstance(t, float) and np.isnan(t)) or t is pd.NaT:
                continue
            if why == reason:
                failed.append(_seconds(t))
            else:
                others.append((_seconds(t), why))
    return sorted(set(failed)), sorted(others)


def plot_attempt_timeline(events_or_attempts: pd.DataFrame | Sequence[Any], fix_at: Any,
                          running_after: float | None = None, curl_after: float | None = None,
                          backoff: float | None = None, title: str | None = None) -> Figure:
    """The pod's sandbox attempts around the fix: failures, the fix, Running and the first good curl.

    ``events_or_attempts`` is an events frame (``time``/``reason``, as :meth:`Cluster.events` or
    :class:`kindlab.heal.HealResult` give) or a list of attempt times; ``fix_at`` is when the fix was
    applied (epoch seconds or a timestamp); ``backoff``, the lab's, places the next retry's window. Times are
    drawn relative to the fix.
    """
    t0 = _seconds(fix_at)
    failed, others = attempt_times(events_or_attempts)
    rel = [t - t0 for t in failed]
    fig = _BookFigure(figsize=(7.2, 3.0), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0, color="#bbbbbb", lw=1, zorder=0)
    for a, b in zip(rel, rel[1:], strict=False):
        ax.annotate("", xy=(b, 0.18), xytext=(a, 0.18),
                    arrowprops={"arrowstyle": "<->", "color": MODEL, "lw": 0.8})
        ax.text((a + b) / 2, 0.24, f"{b - a:.2f} s", ha="center", fontsize=7, color=MODEL)
    ax.scatter(rel, [0] * len(rel), marker="x", s=70, color=FAIL, zorder=3,
               label=f"failed sandbox attempt ({len(rel)})")
    for t, why in others:
        ax.scatter([t - t0], [0], marker="o", s=30, facecolors="none", edgecolors=MODEL, zorder=3)
        ax.annotate(why, (t - t0, 0), xytext=(0, -16), textcoords="offset points", ha="center", fontsize=7)
    ax.axvline(0, color=FIX, ls="--", lw=1.5, label="fix applied")
    if running_after is not None:
        ax.scatter([running_after], [0], marker="o", s=80, color=OK, zorder=4,
                   label=f"pod Running (+{running_after:.2f} s)")
    if curl_after is not None:
        ax.scatter([curl_after], [0], marker="*", s=140, color=CURL, zorder=4,
                   label=f"first curl 200 (+{curl_after:.2f} s)")
    due = [rel[-1] + t for t in retry_window(backoff)] if backoff and rel else []  # the next retry's window
    if due:
        ax.axvspan(*due, color=MODEL, alpha=0.15, lw=0, label="next retry due (retry window)")
    ends = rel + [0.0] + [x for x in (running_after, curl_after) if x is not None] + due[1:]
    lo, hi = min(ends), max(ends)
    pad = max((hi - lo) * 0.08, 0.2)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(-0.45, 0.75)
    ax.set_yticks([])
    ax.set_xlabel("seconds relative to the fix")
    ax.set_title(title or "Sandbox attempts before and after the fix")
    ax.legend(loc="upper left", fontsize=7.5, ncols=3, frameon=False)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return fig


# -- the CNI chain -----------------------------------------------------------------------------
def plot_cni_chain(conflist: Mapping[str, Any], title: str | None = None) -> Figure:
    """The plugins of a conflist in the order the runtime runs them on ADD, and what each hands the next.

    The first plugin creates the pod's interface and address; its result is the ``prevResult`` of the next,
    and only plugins that declare ``capabilities.portMappings`` receive the pod's hostPorts.
    """
    plugins = list(conflist.get("plugins") or [conflist])
    n = len(plugins)
    fig = _BookFigure(figsize=(1.8 * (n + 2), 1.9), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, n + 2)
    ax.set_ylim(0.65, 2.05)
    ax.axis("off")
    boxes = [("runtime", "CNI ADD: pod netns,\nportMappings", MODEL)]
    for p in plugins:
        caps = [k for k, v in (p.get("capabilities") or {}).items() if v]
        sub = "capabilities:\n" + ", ".join(caps) if caps else "no capabilities"
        boxes.append((str(p.get("type", "?")), sub, OK if caps else FIX))
    boxes.append(("iptables", "DNAT to\npodIP:port", FAIL))
    for i, (name, sub, color) in enumerate(boxes):
        ax.add_patch(FancyBboxPatch((i + 0.08, 0.75), 0.84, 0.8, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    fc=color, ec="none", alpha=0.85))
        ax.text(i + 0.5, 1.33, name, ha="center", va="center", color="white", fontsize=9.5, weight="bold")
        ax.text(i + 0.5, 1.0, sub, ha="center", va="center", color="white", fontsize=7.5)
    labels = ["config, hostPorts"] + ["prevResult:\npod IP"] * (n - 1) + ["rules"]
    for i, label in enumerate(labels):
        ax.annotate("", xy=(i + 1.08, 1.15), xytext=(i + 0.92, 1.15),
                    arrowprops={"arrowstyle": "-|>", "color": "#444444", "lw": 1.4})
        ax.text(i + 1.0, 1.8, label, ha="center", va="center", fontsize=7.5, color="#444444")
    ax.set_title(title or f"{conflist.get('name', 'the chain')!s}: plugins run in order on ADD", fontsize=10.5)
    return fig


# -- the packet's path --------------------------------------------------------------------
def _hops(path: Any) -> list[dict[str, Any]]:
    if isinstance(path, pd.DataFrame):
        return path.to_dict("records")
    if hasattr(path, "to_frame"):
        return path.to_frame().to_dict("records")
    if hasattr(path, "steps"):
        return _hops(path.steps)
    return [dict(h) if isinstance(h, Mapping) else dict(vars(h)) for h in path]


def _first(hop: Mapping[str, Any], *keys: str, default: str = "") -> str:
    for key in keys:
        value = hop.get(key)
        if value is not None and not (isinstance(value, float) and np.isnan(value)) and str(value) != "":
            return str(value)
    return default


ACTION_COLORS = {"jump": FIX, "goto": FIX, "continue": MODEL, "return": MODEL, "policy": MODEL, "skip": "#bbbbbb",
                 "terminate": OK}


def plot_packet_path(path: Any, title: str | None = None) -> Figure:
    """Draw a packet's path through iptables: one row per step, indented by call depth, coloured by action.

    ``path`` is :func:`kindlab.iptables.trace`'s frame (``depth``, ``chain``, ``target``, ``action``,
    ``to_destination``, ``rule``), or any list of hops with at least ``chain`` and ``target``. The last
    step is the verdict, e.g. a DNAT to the pod.
    """
    hops = _hops(path)
    if not hops:
        raise ValueError("empty packet path")
    n = len(hops)
    box = 3.6  # box width, in tenths of the figure's width; chain names such as CNI-DN-<hash> fit at 8 pt
    fig = _BookFigure(figsize=(7.2, 0.62 * n + 0.9), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(-n + 0.4, 0.7)
    ax.axis("off")
    previous = None
    for i, hop in enumerate(hops):
        y = -i
        depth = int(float(_first(hop, "depth", default="0")))
        chain = _first(hop, "chain", default="?")
        target = _first(hop, "target", "jump", "verdict")
        action = _first(hop, "action", default="terminate" if i == n - 1 else "jump")
        dest = _first(hop, "to_destination")
        rule = _first(hop, "rule", "match", "text")
        rule = re.sub(rf"^-A {re.escape(chain)}\s*", "", rule)
        rule = re.sub(r'-m comment --comment ("(?:[^"\\]|\\.)*"|\S+)\s*', "", rule)  # the matches, not the notes
        x = 0.05 + 0.25 * depth
        color = ACTION_COLORS.get(action, FIX)
        if (chain, depth) != previous:
            ax.add_patch(FancyBboxPatch((x, y - 0.25), box, 0.5, boxstyle="round,pad=0.02,rounding_size=0.08",
                                        fc=FIX if chain.startswith("CNI-") else MODEL, ec="none", alpha=0.85))
            ax.text(x + box / 2, y, chain, ha="center", va="center", color="white", fontsize=8, weight="bold")
        else:
            ax.plot([x + box / 2] * 2, [y + 0.76, y - 0.1], color="#cccccc", lw=1, zorder=0)
        previous = (chain, depth)
        verdict = f"{target} {dest}".strip() if dest else target
        ax.text(x + box + 0.15, y + 0.13, f"{action}: {verdict}" if verdict else action, ha="left", va="center",
                fontsize=8.5, color=color, weight="bold")
        room = int((10 - x - box - 0.15) * 12.5)  # characters of 6.5 pt monospace that fit on the right
        shown = rule if len(rule) <= room else rule[:room - 3] + "..."
        ax.text(x + box + 0.15, y - 0.15, shown or "(end of chain)", ha="left", va="center", fontsize=6.5,
                family="monospace", color="#333333")
    last = hops[-1]
    verdict = _first(last, "to_destination") or _first(last, "target")
    ax.set_title(title or f"A packet's path through the node's iptables: {verdict}", fontsize=11)
    return fig
