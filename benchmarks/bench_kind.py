"""Benchmark kind against the netns lab's real Kubernetes, in one run: kind/config's 4 nodes up to every node
Ready, then the seed's three static pods applied until worker's (and worker3's) are Running, then down; with the
time to make kindlab's kind node image, cold (its Docker layers removed first) and warm.

Run as root: .venv/bin/python benchmarks/bench_kind.py [--runs 1] [--cold] [--quick]. It uses a copy of kind/ in a
temporary folder and the cluster names `kind` (kind's; skipped if one exists) and `klkind` (the lab). kind runs in
the machine's Docker where one answers, else in kindlab's own engine, with kindlab-cni where helm is not installed.
Each kind figure is printed with its ratio to the lab's, measured in the same run. Goal (issue "kind itself, for
real"): kind up within 3x the real lab's up. `--quick` (tests/test_benchmarks.py) is one run, the node image warm
only: the ratios are printed, the goal not judged.
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

from bench_real import running  # noqa: E402  (the pods' wait, as the real lab's benchmark has it)

from kindlab import backends, scenario  # noqa: E402

NAMES = {"kind": "kind", "netns": "klkind"}
GOAL_UP_RATIO = 3.0


def one_run(config: Path, backend: str) -> dict[str, float]:
    """up (to every node Ready), the pods Running, down: seconds."""
    out: dict[str, float] = {}
    name = NAMES[backend]
    backends.delete(name, backend=backend)
    t = time.perf_counter()
    lab = backends.up(config, name=name, backend=backend, kubernetes="real")
    out["up (nodes Ready)"] = time.perf_counter() - t
    try:
        pods = list(scenario.static_pods(lab).values())
        wanted = [p.name for p in pods if not p.name.endswith("worker2")]   # worker2's fails: no portmap
        t = time.perf_counter()
        for pod in pods:
            lab.apply_object(pod)
        lab.wait_for(lambda: running(lab, wanted), timeout=300, interval=0.1, what="worker's and worker3's pods")
        out["pods Running"] = time.perf_counter() - t
    finally:
        t = time.perf_counter()
        lab.down()
        out["down"] = time.perf_counter() - t
    return out


def node_image_times(cold: bool) -> dict[str, float]:
    """`kindlab build node-image`: cold (its images removed from the engine first; the debootstrapped base stays on
    disk) and warm (found in the engine), in seconds."""
    from kindlab.backends import registry
    from kindlab.backends.kind import docker_host

    out: dict[str, float] = {}
    started = docker_host.own() and not docker_host.answers()
    docker_host.ensure()
    try:
        if cold:
            client = docker_host.client()
            for image in client.images.list(name="kindlab/node") + client.images.list(name="kindlab/node-base"):
                client.images.remove(image.id, force=True)
            t = time.perf_counter()
            registry.builder("node-image").build("node-image", lambda *a, **k: None)
            out["node image, cold (s)"] = time.perf_counter() - t
        t = time.perf_counter()
        registry.builder("node-image").build("node-image", lambda *a, **k: None)
        out["node image, warm (s)"] = time.perf_counter() - t
    finally:
        if started:
            docker_host.stop_own()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="also time the node image made from scratch")
    parser.add_argument("--quick", action="store_true", help="one run, warm image (checks it runs to its end)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.cold = 1, False
    if "kind" in backends.clusters(backend="kind"):
        print("a kind cluster named 'kind' exists: not touching it")
        return 0
    images = node_image_times(args.cold)
    for key, value in images.items():
        print(f"{key}: {value:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-kind-") as tmp:
        shutil.copytree(ROOT / "kind", Path(tmp) / "kind", ignore=shutil.ignore_patterns("empty"))
        config = Path(tmp) / "kind" / "config"
        results: dict[str, list[dict[str, float]]] = {"netns": [], "kind": []}
        for _ in range(args.runs):
            for backend in ("netns", "kind"):
                results[backend].append(one_run(config, backend))
    ok = True
    print(f"{'figure':<22} {'real lab (s)':>13} {'kind (s)':>10} {'kind/lab':>9}")
    for key in results["kind"][0]:
        lab = statistics.median(r[key] for r in results["netns"])
        kind = statistics.median(r[key] for r in results["kind"])
        print(f"{key:<22} {lab:>13.2f} {kind:>10.2f} {kind / lab:>8.1f}x")
        if key.startswith("up"):
            ok = kind / lab <= GOAL_UP_RATIO
    print(f"goal: kind up within {GOAL_UP_RATIO:g}x the real lab's: {'met' if ok else 'MISSED'}")
    if args.quick:
        print("--quick: one run; the goal is shown, not judged")
        return 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
