"""Benchmark the netns lab: medians of 5 runs of `up` of kind/config's 4 nodes, applying the three
static pods on a lab whose nodes are all fixed (until all three are Running), and `down`.

Run as root: .venv/bin/python benchmarks/bench_lab.py [--runs 5 | --quick]. It uses a copy of kind/ in a
temporary folder (so its `empty` folder is its own) and a cluster named `klbench`. Once the pods are Running,
each hostPort is curled until its server answers (a pod is Running from its container's start, a moment before
its server listens, as on the real kubelet). Goal: each median under 1 s (printed as median/goal ratios);
`--quick` is one run (tests/test_benchmarks.py), which shows the figures but judges nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kindlab import backends, objects, walkthrough  # noqa: E402
from kindlab.backends.netns import preflight  # noqa: E402
from kindlab.backends.netns.cluster import wait_for_agent  # noqa: E402

NAME = "klbench"
GOAL = 1.0   # s, each median


def static_pods() -> list[objects.PodSpec]:
    """The seed's static pods, with node names for this cluster."""
    pods = []
    for path in sorted((ROOT / "manifests" / "static").glob("*.yaml")):
        text = path.read_text().replace("kind-worker", f"{NAME}-worker")
        pods += [p for p in objects.loads(text, source=str(path)) if isinstance(p, objects.PodSpec)]
    return pods


def all_running(lab, names: list[str]) -> bool:
    phases = {p["metadata"]["name"]: p for p in lab.pod_list()}
    return all(n in phases and phases[n]["status"].get("phase") == "Running"
               and any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in phases[n]["status"].get("conditions", [])) for n in names)


def one_run(config: Path) -> dict[str, float]:
    out = {}
    t = time.perf_counter()
    lab = backends.up(config, name=NAME, backend="netns", backoff=0.5, progress=False, kubernetes="model")
    out["up"] = time.perf_counter() - t
    wait_for_agent(lab)
    out["agent ready"] = time.perf_counter() - t
    # fix every node: portmap where worker2's /opt/cni comes from, the chained conflist on worker3
    shutil.copy2(preflight.cni_dir() / "portmap", config.parent / "empty" / "bin" / "portmap")
    lab.cp(str(config.parent / "cni" / "000-kindlab-portmap.conflist"), f"{NAME}-worker3:/etc/cni/net.d/")
    pods = static_pods()
    t = time.perf_counter()
    for pod in pods:
        lab.apply_object(pod)
    lab.wait_for(lambda: all_running(lab, [p.name for p in pods]), timeout=30, interval=0.005, what="3 pods Running")
    out["apply 3 pods -> Running"] = time.perf_counter() - t
    for role in walkthrough.WORKERS:   # every hostPort answers once its server listens
        walkthrough.wait_for_curl(lab, walkthrough.node(lab, role), timeout=10)
    t = time.perf_counter()
    lab.down()
    out["down"] = time.perf_counter() - t
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run (checks the benchmark runs to its end)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    backends.delete(NAME, backend="netns")
    with tempfile.TemporaryDirectory(prefix="kindlab-bench-") as tmp:
        kind = Path(tmp) / "kind"
        shutil.copytree(ROOT / "kind", kind, ignore=shutil.ignore_patterns("empty"))
        runs = []
        try:
            for i in range(args.runs):
                runs.append(one_run(kind / "config"))
                print(f"run {i + 1}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in runs[-1].items()), flush=True)
        finally:
            backends.delete(NAME, backend="netns")
    print(f"\nmedians of {len(runs)} runs (goal: each of up, apply, down < {GOAL:g} s):")
    worst = 0.0
    for key in runs[0]:
        median = statistics.median(r[key] for r in runs)
        if key != "agent ready":
            worst = max(worst, median)
        print(f"  {key:<26} {median * 1000:7.0f} ms")
    print(f"ratio: slowest median/goal {worst / GOAL:.2f}x; verdict: "
          f"{'all under 1 s' if worst < GOAL else 'SLOWER than 1 s'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
