"""How fast and how lean is kindlab.iptables.parse() on a kube-proxy-sized nat table?

    python benchmarks/bench_iptables.py [--services 10000] [--endpoints 3] [--runs 3] [--quick]

Builds a kube-proxy-shaped nat table (KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-*, comments,
`statistic --probability`, DNAT), loads it with iptables-restore into a scratch network namespace
and saves it back with `iptables-save -c`, which gives the real text. On that same text it times,
as medians of --runs: parse() into DataFrames, `iptables-restore --test` (the C reference parser,
run in the scratch namespace) and a plain shlex tokenizer, parse() and shlex in interleaved rounds;
then it measures parse()'s peak memory and checks that to_iptables_save() gives the text back.
Prints the ratios and whether each goal is met; exits 1 when one is not.
Without root or iptables it times the generated text and skips the restore comparison.
`--quick` (tests/test_benchmarks.py) is one run on 1,000 services: the ratios are printed, the goals not judged.
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kindlab import iptables

GOAL_RESTORE = 1.0  # parse() / iptables-restore --test, at most
GOAL_SHLEX = 10.0  # shlex / parse(), at least
GOAL_MEMORY = 10.0  # peak memory / text size, under


def _hash(text: str) -> str:
    """kube-proxy's chain suffix: 16 base32 characters of a SHA-256."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest())[:16].decode()


def kube_proxy_nat(services: int, endpoints: int) -> str:
    """iptables-restore input for a kube-proxy nat table: services x (1 + 1 + 3 x endpoints) rules."""
    chains = [":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
              ":KUBE-MARK-MASQ - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]",
              ":KUBE-SERVICES - [0:0]"]
    rules = ['-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
             '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
             '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
             "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
             "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
             "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
             '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
             "-j MASQUERADE --random-fully"]
    portals = []
    for i in range(services):
        name, cluster_ip = f"ns{i % 50}/svc-{i}:http", f"10.96.{i // 256 % 256}.{i % 256}"
        svc = "KUBE-SVC-" + _hash(f"svc{i}")
        chains.append(f":{svc} - [0:0]")
        portals.append(f'-A KUBE-SERVICES -d {cluster_ip}/32 -p tcp -m comment --comment "{name} cluster IP" '
                       f"-m tcp --dport 80 -j {svc}")
        rules.append(f'-A {svc} ! -s 10.244.0.0/16 -d {cluster_ip}/32 -p tcp -m comment --comment "{name} cluster IP"'
                     " -m tcp --dport 80 -j KUBE-MARK-MASQ")
        for e in range(endpoints):
            n = i * endpoints + e
            pod_ip = f"10.244.{n // 250 % 256}.{n % 250 + 2}"
            sep = "KUBE-SEP-" + _hash(f"sep{i}/{e}")
            chains.append(f":{sep} - [0:0]")
            left = endpoints - e
            chance = f" -m statistic --mode random --probability {1 / left:.11f}" if left > 1 else ""
            rules.append(f'-A {svc} -m comment --comment "{name} -> {pod_ip}:8080"{chance} -j {sep}')
            rules.append(f'-A {sep} -s {pod_ip}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ')
            rules.append(f'-A {sep} -p tcp -m comment --comment "{name}" -m tcp -j DNAT --to-destination {pod_ip}:8080')
    portals.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
                   'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    return "*nat\n" + "\n".join(chains + rules + portals) + "\nCOMMIT\n"


def can_use_netns() -> bool:
    """Root, `ip` and iptables: what a scratch namespace needs."""
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("ip", "iptables-restore", "iptables-save"))


@contextmanager
def scratch_netns() -> Iterator[str]:
    """A network namespace of our own, always deleted: the host's rules are never touched."""
    name = f"kltest-ipt-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def in_netns(netns: str, cmd: list[str], text: str | None = None) -> str:
    """Run a command inside the namespace; raise with its stderr when it fails."""
    done = subprocess.run(["ip", "netns", "exec", netns, *cmd], input=text, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {netns}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Timing:
    """Medians of wall-clock and CPU seconds (user + system, this process and its children), and the CPU range."""

    wall: float
    cpu: float
    cpu_min: float
    cpu_max: float


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def median_seconds(works: dict[str, Callable[[], object]], runs: int) -> dict[str, Timing]:
    """Medians over `runs` rounds; each round calls every work once, in turn, so that a slow spell of the
    machine weighs on all of them alike. Each result is dropped outside the timing."""
    walls: dict[str, list[float]] = {name: [] for name in works}
    cpus: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(runs):
        for name, work in works.items():
            gc.collect()
            wall, cpu = time.perf_counter(), _cpu_seconds()
            result = work()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(_cpu_seconds() - cpu)
            del result
    return {name: Timing(statistics.median(walls[name]), statistics.median(cpus[name]), min(cpus[name]),
                         max(cpus[name])) for name in works}


def shlex_baseline(text: str) -> list[list[str]]:
    """The plain way: shlex.split() every line."""
    return [shlex.split(line) for line in text.splitlines()]


def tracemalloc_peak(text: str) -> int:
    """Peak bytes Python (and numpy) allocated during one parse()."""
    gc.collect()
    tracemalloc.start()
    ruleset = iptables.parse(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del ruleset
    return peak


_RSS_PROBE = """
import sys
from kindlab import iptables

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

text = open(sys.argv[1]).read()
iptables.parse("*nat\\n:A - [0:0]\\n-A A -j ACCEPT\\nCOMMIT\\n")
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
except OSError:
    pass
before = status("VmRSS")
ruleset = iptables.parse(text)
print(status("VmHWM") - before)
"""


def rss_growth(text: str) -> int:
    """Peak RSS growth (VmHWM - VmRSS) of a fresh process during one parse(), the text already read."""
    with tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False) as f:
        f.write(text)
    try:
        out = subprocess.run([sys.executable, "-c", _RSS_PROBE, f.name], capture_output=True, text=True,
                             check=True).stdout
        return int(out.strip())
    finally:
        os.unlink(f.name)


def report(name: str, timing: Timing, ratio: str = "") -> None:
    spread = f"({timing.cpu_min:.3f}-{timing.cpu_max:.3f})"
    print(f"{name:26s} {timing.wall:7.3f} s wall {timing.cpu:7.3f} s CPU {spread:15s}  {ratio}")


def goal(label: str, value: float, ok: bool, target: str, wall: float | None = None) -> str:
    also = f" (wall clock: {wall:.2f})" if wall is not None else ""
    return f"{label} = {value:.2f}{also}   {target}: {'goal met' if ok else 'GOAL MISSED'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one run, 1,000 services (checks it runs to its end)")
    args = ap.parse_args()
    if args.quick:
        args.services, args.runs = 1_000, 1

    source = kube_proxy_nat(args.services, args.endpoints)
    restore = None
    if can_use_netns():
        with scratch_netns() as netns:
            in_netns(netns, ["iptables-restore"], source)
            text = in_netns(netns, ["iptables-save", "-c"])
            restore = median_seconds({"restore": lambda: in_netns(netns, ["iptables-restore", "--test"], text)},
                                     args.runs)["restore"]
    else:
        print("no root or no iptables: timing the generated text, without iptables-restore --test")
        text = source
    size = len(text.encode())
    ruleset = iptables.parse(text)
    assert ruleset.to_iptables_save() == text
    print(f"text: {size / 1e6:.1f} MB, {len(ruleset.rules):,} rules in {len(ruleset.chains):,} chains; "
          f"medians of {args.runs}; ratios use CPU seconds (other load on the machine skews wall time)")
    del ruleset

    timings = median_seconds({"parse": lambda: iptables.parse(text), "shlex": lambda: shlex_baseline(text)}, args.runs)
    parsing, tokenizing = timings["parse"], timings["shlex"]
    peak, rss = tracemalloc_peak(text), rss_growth(text)
    memory = max(peak, rss) / size

    results = []
    report("parse()", parsing)
    if restore is not None:
        ratio = parsing.cpu / restore.cpu
        results.append(ratio <= GOAL_RESTORE)
        report("iptables-restore --test", restore, goal("parse/restore", ratio, results[-1], f"<= {GOAL_RESTORE}",
                                                        parsing.wall / restore.wall))
    speedup = tokenizing.cpu / parsing.cpu
    results.append(speedup >= GOAL_SHLEX)
    report("shlex tokenizer", tokenizing, goal("shlex/parse", speedup, results[-1], f">= {GOAL_SHLEX}",
                                               tokenizing.wall / parsing.wall))
    results.append(memory < GOAL_MEMORY)
    print(f"peak memory: tracemalloc {peak / 1e6:.1f} MB, RSS growth {rss / 1e6:.1f} MB   "
          + goal("peak/text", memory, results[-1], f"< {GOAL_MEMORY}"))
    if args.quick:
        print("--quick: one run of a small table; the goals are shown, not judged")
        return 0
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
