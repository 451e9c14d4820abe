"""kindlab.plots on synthetic data: each function returns a Figure that renders, against heal's column names."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from kindlab import plots
from kindlab.heal import retry_model

BACKOFF = 10.0          # the kubelet's clocks: a retry on each relist, 1-1.05 s after a failure
FIRST, LAST = 1.0, 1.05


def experiment_frame(seed: int = 1) -> pd.DataFrame:
    """Runs as kindlab.heal.experiment returns them, healed as the retry model says."""
    rng = np.random.default_rng(seed)
    rows = []
    for run, delay in enumerate([0.0, 0.25, 0.5, 0.75, 0.95] * 3):
        heal = FIRST * (1 + rng.random() * 0.05) - delay + 0.05
        rows.append({"run": run, "delay": delay, "running_after": heal, "curl_after": heal + 0.03,
                     "attempts_before": 1, "attempts_after": 0, "backoff": BACKOFF,
                     "agent_running_after": heal - 0.004})
    return pd.DataFrame(rows)


def rendered(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    assert data.startswith(b"\x89PNG") and len(data) > 5000
    return data


def texts(fig: Figure) -> str:
    out = []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
        legend = ax.get_legend()
        if legend:
            out += [t.get_text() for t in legend.get_texts()]
    return "\n".join(out + [fig._suptitle.get_text() if fig._suptitle else ""])


@pytest.mark.parametrize("delay", [0.0, 0.4, 0.99])
def test_model_within_one_relist_for_delays_below_it(delay):
    t = plots.model_heal_times(delay, BACKOFF, samples=5000)
    assert t.min() >= FIRST - delay - 1e-9
    assert t.max() <= LAST - delay + 1e-9
    assert abs(np.median(t) - ((FIRST + LAST) / 2 - delay)) < 0.01


def test_model_wraps_to_the_next_retry_when_the_fix_comes_late():
    t = plots.model_heal_times(1.5, BACKOFF, samples=5000)
    assert (t >= 0).all() and t.max() <= 2 * LAST - 1.5 + 1e-9


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.5])
def test_the_plots_model_is_heals(delay):
    """One retry model: the plots sample kindlab.model.backoff's, which heal re-exports."""
    t = plots.model_heal_times(delay, BACKOFF, samples=20_000, seed=3)
    assert np.array_equal(t, retry_model(BACKOFF).sample(delay, n=20_000, seed=3))
    assert t.mean() == pytest.approx(retry_model(BACKOFF).mean(delay), abs=0.02)


def test_attempt_timeline_draws_the_retry_window():
    fix = 1_700_000_000.0
    for backoff, scale in ((BACKOFF, 1.0), (2.0, 0.2)):
        fig = plots.plot_attempt_timeline([fix - 0.1], fix, backoff=backoff)
        (span,) = [p for p in fig.axes[0].patches if p.get_label() == "next retry due (retry window)"]
        xs = [span.get_x(), span.get_x() + span.get_width()]  # a Rectangle in data x, axes y
        assert min(xs) == pytest.approx(FIRST * scale - 0.1) and max(xs) == pytest.approx(LAST * scale - 0.1)
        rendered(fig)


def test_heal_vs_delay():
    fig = plots.plot_heal_vs_delay(experiment_frame())
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    label = texts(fig)
    assert "fix → pod Running" in label and "first curl 200" in label and "model" in label
    rendered(fig)


def test_heal_vs_delay_needs_a_backoff():
    with pytest.raises(ValueError, match="backoff"):
        plots.plot_heal_vs_delay(experiment_frame().drop(columns="backoff"))
    rendered(plots.plot_heal_vs_delay(experiment_frame().drop(columns="backoff"), backoff=BACKOFF))


def test_heal_distribution():
    fig = plots.plot_heal_distribution(experiment_frame(), BACKOFF)
    assert len(fig.axes) == 2
    assert "15 runs" in texts(fig) and "retry model" in texts(fig)
    rendered(fig)


def test_attempt_timeline_from_times():
    fix = 1_700_000_000.0
    fig = plots.plot_attempt_timeline([fix - 4.4, fix - 2.2, fix - 0.1], fix, running_after=2.1, curl_after=2.15,
                                      backoff=BACKOFF)
    label = texts(fig)
    assert "failed sandbox attempt (3)" in label and "pod Running (+2.10 s)" in label and "2.20 s" in label
    rendered(fig)


def test_attempt_timeline_from_events_frame():
    fix = pd.Timestamp("2024-05-01T10:00:10Z")
    events = pd.DataFrame([
        {"time": pd.Timestamp("2024-05-01T10:00:01Z"), "reason": "Scheduled", "count": 1},
        {"time": pd.Timestamp("2024-05-01T10:00:08Z"), "reason": "FailedCreatePodSandBox", "count": 4,
         "firstTimestamp": "2024-05-01T10:00:02Z", "lastTimestamp": "2024-05-01T10:00:08Z"},
    ])
    failed, others = plots.attempt_times(events)
    assert [f - fix.timestamp() for f in failed] == [-8.0, -2.0]
    assert [(t - fix.timestamp(), why) for t, why in others] == [(-9.0, "Scheduled")]
    rendered(plots.plot_attempt_timeline(events, fix, running_after=1.0))


PATH = [
    {"table": "nat", "chain": "PREROUTING", "rule": "-m addrtype --dst-type LOCAL", "target": "CNI-HOSTPORT-DNAT"},
    {"table": "nat", "chain": "CNI-HOSTPORT-DNAT", "rule": "-p tcp -m multiport --dports 80",
     "target": "CNI-DN-468dd58cba3917282a108"},
    {"table": "nat", "chain": "CNI-DN-468dd58cba3917282a108", "rule": "-p tcp -m tcp --dport 80",
     "target": "DNAT --to-destination 192.168.2.232:8080"},
]


@pytest.mark.parametrize("path", [PATH, pd.DataFrame(PATH)], ids=["records", "frame"])
def test_packet_path(path):
    fig = plots.plot_packet_path(path)
    label = texts(fig)
    for hop in PATH:
        assert hop["chain"] in label
    assert "192.168.2.232:8080" in label
    rendered(fig)


def test_packet_path_refuses_an_empty_path():
    with pytest.raises(ValueError):
        plots.plot_packet_path([])


def test_cni_chain():
    conflist = {"name": "cilium-portmap", "plugins": [{"type": "cilium-cni"},
                                                      {"type": "portmap", "capabilities": {"portMappings": True}}]}
    fig = plots.plot_cni_chain(conflist)
    label = texts(fig)
    assert "cilium-cni" in label and "portmap" in label and "capabilities:\nportMappings" in label
    rendered(fig)


def test_figures_show_themselves_in_jupyter_without_pyplot():
    fig = plots.plot_heal_vs_delay(experiment_frame())
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_the_real_kubelet_and_the_model_side_by_side():
    real = experiment_frame(1).assign(kubelet="real")
    model = experiment_frame(2).assign(kubelet="model")
    fig = plots.plot_heal_by_kubelet(pd.concat([real, model], ignore_index=True))
    rendered(fig)
    words = texts(fig)
    assert f"the real kubelet ({len(real)})" in words and f"kindlab's model ({len(model)})" in words
    assert "retries 1–1.05 s apart" in words and "retry window 1–1.05 s after the failure" in words
    scatter, cdf = fig.axes
    assert len(scatter.collections) == 3            # each kubelet's points, and the window
    (real_line, model_line) = cdf.get_lines()
    assert real_line.get_ydata()[-1] == model_line.get_ydata()[-1] == 1.0   # every run is in its distribution
