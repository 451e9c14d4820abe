"""Every benchmark runs to its end in its quickest mode (`--quick`: one run), so that a broken benchmark fails
the suite: exit 0, its ratio (or verdict) line printed, no traceback, and its cluster gone afterwards.

The goals themselves are judged only by full runs (`make bench`): one run cannot judge a distribution.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@dataclass(frozen=True)
class Bench:
    """What a benchmark's quick run must print, the cluster it makes (to check it is gone), how long it may take."""

    result: str
    cluster: tuple[str, str] | None
    timeout: float
    marks: tuple[pytest.MarkDecorator, ...] = (pytest.mark.netns,)


BENCHES = {
    "bench_fidelity": Bench(r"^real against the model at 10 s: every text identical", ("klfidelity", "netns"), 900),
    "bench_heal_accuracy": Bench(r"^ratio: p95/goal \d+\.\d+x", ("bench-heal", "netns"), 180),
    "bench_iptables": Bench(r"parse/restore = \d+\.\d+.*\n.*shlex/parse = \d+\.\d+", None, 300),
    "bench_kind": Bench(r"^up \(nodes Ready\)\s+[\d.]+\s+[\d.]+\s+[\d.]+x$", ("kind", "kind"), 1800,
                        (pytest.mark.netns, pytest.mark.kind)),
    "bench_lab": Bench(r"^ratio: slowest median/goal \d+\.\d+x", ("klbench", "netns"), 180),
    "bench_real": Bench(r"^  up\s+real\s+[\d.]+ s\s+model\s+[\d.]+ s\s+real/model\s+[\d.]+x", ("klreal", "netns"), 600),
}
#: A kind cluster named `kind` that exists is left alone (tests/allowed_skips.toml says why).
KIND_IN_USE = "a kind cluster named 'kind' exists"


def test_every_benchmark_is_run_here():
    assert sorted(p.stem for p in BENCHMARKS.glob("bench_*.py")) == sorted(BENCHES)


@pytest.mark.parametrize("name", [pytest.param(n, marks=b.marks, id=n) for n, b in BENCHES.items()])
def test_benchmark_runs_to_its_end(name: str):
    bench = BENCHES[name]
    done = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick"], capture_output=True,
                          text=True, timeout=bench.timeout, cwd=ROOT)
    shown = (f"exit {done.returncode}\n--- stdout (tail)\n{done.stdout[-4000:]}\n"
             f"--- stderr (tail)\n{done.stderr[-4000:]}")
    if name == "bench_kind" and KIND_IN_USE in done.stdout:
        pytest.skip(f"{KIND_IN_USE}: bench_kind.py leaves it alone")
    assert done.returncode == 0, shown
    assert "Traceback" not in done.stderr, shown
    assert "skipped:" not in done.stdout, shown     # e.g. bench_real without the real lab's Kubernetes
    assert re.search(bench.result, done.stdout, re.MULTILINE), f"no line matching {bench.result!r}\n{shown}"
    if bench.cluster:
        from kindlab import backends
        cluster, backend = bench.cluster
        assert cluster not in backends.clusters(backend=backend)
