"""Benchmark the lab's real Kubernetes against the model, in one run: up of kind/config's 4 nodes (to every
node Ready, and to `up` returning), the three static pods applied until worker's and worker3's are
Running, `down`, and the whole real cluster's memory.

Run as root: .venv/bin/python benchmarks/bench_real.py [--runs 2 | --quick]. It uses a copy of kind/ in a temporary
folder (its `empty` folder is its own) and a cluster named `klreal`. Each figure is printed with its ratio
to the model's, measured in the same run. Goals (issue "Real Kubernetes in the lab"): nodes Ready under
15 s, the pods Running under 5 s, down under 5 s, RSS under 1.5 GB. `--quick` (tests/test_benchmarks.py) is one
run of each: the figures and ratios are printed, the goals not judged.
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

from kindlab import backends, scenario  # noqa: E402
from kindlab.backends.netns import processes  # noqa: E402
from kindlab.backends.netns.names import NETNS_DIR, state_dir  # noqa: E402
from kindlab.backends.netns.real import binaries, teardown  # noqa: E402

NAME = "klreal"
GOALS = {"nodes Ready": 15.0, "pods Running": 5.0, "down": 5.0}
RSS_GOAL_MB = 1500.0


def running(lab, names: list[str]) -> bool:
    pods = {p["metadata"]["name"]: p for p in lab.pod_list()}
    return all(pods.get(n, {}).get("status", {}).get("phase") == "Running" for n in names)


def rss_mb(name: str) -> float:
    """The resident memory of every process of the lab: its ledger, and all in its namespaces."""
    net = {i for p in NETNS_DIR.glob(f"kindlab-{name}-*") if (i := teardown.ns_id(p))}
    mnt = {i for p in (state_dir(name) / "ns").glob("*.mnt") if (i := teardown.ns_id(p))}
    for pid in teardown.members(set(), mnt):
        net |= {i for p in teardown.pod_netns(pid) if (i := teardown.ns_id(p))}
    total = 0
    for pid in set(teardown.members(net, mnt)) | set(processes.recorded(name)):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def one_run(config: Path, kubernetes: str) -> dict[str, float]:
    out: dict[str, float] = {}
    t = time.perf_counter()

    def report(message: str, done: int | None = None, total: int | None = None) -> None:
        if "nodes Ready" in message:
            out["nodes Ready"] = time.perf_counter() - t
    lab = backends.up(config, name=NAME, backend="netns", backoff=0.5 if kubernetes == "model" else None,
                      progress=report, kubernetes=kubernetes)
    out["up"] = time.perf_counter() - t
    out.setdefault("nodes Ready", out["up"])   # the model's nodes are ready when up returns
    pods = list(scenario.static_pods(lab).values())   # the seed's, named for this cluster
    wanted = [p.name for p in pods if not p.name.endswith("worker2")]   # worker2's fails: no portmap
    t = time.perf_counter()
    for pod in pods:
        lab.apply_object(pod)
    lab.wait_for(lambda: running(lab, wanted), timeout=60, interval=0.05, what="worker's and worker3's pods")
    out["pods Running"] = time.perf_counter() - t
    out["RSS (MB)"] = rss_mb(NAME)
    t = time.perf_counter()
    lab.down()
    out["down"] = time.perf_counter() - t
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one run of each (checks it runs to its end)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    if binaries.missing():
        print(f"skipped: real Kubernetes cannot run here: missing {'; '.join(binaries.missing())}")
        return 0
    backends.delete(NAME, backend="netns")
    medians: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kindlab-bench-") as tmp:
        kind = Path(tmp) / "kind"
        shutil.copytree(ROOT / "kind", kind, ignore=shutil.ignore_patterns("empty"))
        try:
            for kubernetes in ("model", "real"):
                runs = []
                for i in range(args.runs):
                    shutil.rmtree(kind / "empty", ignore_errors=True)
                    runs.append(one_run(kind / "config", kubernetes))
                    print(f"{kubernetes} run {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[-1].items()),
                          flush=True)
                medians[kubernetes] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        finally:
            backends.delete(NAME, backend="netns")
    real, model = medians["real"], medians["model"]
    failed = []
    print(f"\nmedians of {args.runs} runs; real/model ratios measured in this run")
    for key in ("nodes Ready", "up", "pods Running", "down"):
        goal = GOALS.get(key)
        ok = goal is None or real[key] < goal
        failed += [] if ok else [key]
        print(f"  {key:13s} real {real[key]:6.2f} s   model {model[key]:6.3f} s   real/model "
              f"{real[key] / model[key]:7.1f}x" + (f"   goal < {goal:g} s: {'ok' if ok else 'MISSED'}" if goal else ""))
    ok = real["RSS (MB)"] < RSS_GOAL_MB
    failed += [] if ok else ["RSS"]
    print(f"  {'RSS':13s} real {real['RSS (MB)']:6.0f} MB  model {model['RSS (MB)']:6.0f} MB  real/model "
          f"{real['RSS (MB)'] / model['RSS (MB)']:7.1f}x   goal < {RSS_GOAL_MB:g} MB: {'ok' if ok else 'MISSED'}")
    if args.quick:
        print("--quick: one run; the goals are shown, not judged")
        return 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
