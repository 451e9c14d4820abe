"""The hostile-input sweep of issue 32: the probe's cases, run through the `kindlab` command of a source tree,
each sorted into the probe's categories (clear error, valid, hang, traceback, silently wrong, unclear).

    flock /tmp/kindlab-lab.lock .venv/bin/python tests/hostile_sweep.py [--tree PATH] [--no-lab]

`--tree` runs another checkout's kindlab (e.g. a `git worktree` of the last commit, for "before"); cases that
need a running lab make one model lab (netns) and delete it at the end, so run it under the machine-wide lock.
tests/test_hostile_input.py runs the same cases against this tree, one test each.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANG = 20.0          # seconds after which a case counts as a hang
CATEGORIES = ("clear errors", "valid", "hangs", "tracebacks", "silently wrong", "unclear")
HEAD = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
ONE_NODE = "nodes:\n- role: control-plane\n"


def pod(name: str = "p", extra: str = "", container: str = "- name: c\n    image: echo\n") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  {container}{extra}")


def alias_bomb(top: str) -> str:
    """The billion-laughs shape: nine levels, each value nine aliases of the one below."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return top + "\n".join(lines) + "\nbomb: *a8\n"


DEEP = "[" * 20000 + "]" * 20000 + "\n"


@dataclass(frozen=True)
class Case:
    """One input. `argv` may hold {d} (a folder with `files`), {lab}, {worker} and {port} (a server that
    accepts and never answers); `files` maps a name to its text, or to None for a FIFO. `refuse`: the input
    must be refused with `words` in kindlab's one-line error (exit `code`); otherwise it must work."""

    id: str
    probe: str                       # where the probe put it: hang, traceback, silent, unclear, guard, valid
    argv: tuple[str, ...]
    words: str = ""
    code: int = 1
    refuse: bool = True
    files: dict[str, str | None] = field(default_factory=dict)
    lab: bool = False                # needs the sweep's lab
    before: tuple[tuple[str, ...], ...] = ()    # commands run first (through kindlab, on the lab)


def create(config: str) -> tuple[str, ...]:
    return ("create", "cluster", "--name", "{name}", "--config", "{d}/" + config, "--backend", "netns",
            "--kubernetes", "model")


def cfg(name: str, text: str) -> dict[str, str | None]:
    return {name: HEAD + text}


CASES = (
    # -- hangs ---------------------------------------------------------------------------------------------
    Case("fifo-config", "hang", create("fifo"), "not a regular file (a FIFO)", files={"fifo": None}),
    Case("fifo-manifest", "hang", ("apply", "-f", "{d}/fifo.yaml"), "not a regular file (a FIFO)",
         files={"fifo.yaml": None}, lab=True),
    Case("alias-bomb-config", "hang", create("c.yaml"), "aliases expand to more than",
         files={"c.yaml": alias_bomb(HEAD)}),
    Case("alias-bomb-manifest", "hang", ("apply", "-f", "{d}/m.yaml"), "aliases expand to more than",
         files={"m.yaml": alias_bomb("")}, lab=True),
    Case("doctor-silent-server", "hang", ("doctor", "--kubeconfig", "{d}/kc", "--timeout", "2"),
         "doctor did not finish in 2s", files={"kc": "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: "
                                                      "{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: "
                                                      "true}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: "
                                                      "[{name: c, context: {cluster: c, user: u}}]\n"
                                                      "current-context: c\n"}),
    Case("replicas-1000000", "hang", ("apply", "-f", "{d}/d.yaml"), "the kubelet's maxPods",
         files={"d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: big}\nspec:\n  replicas: 1000000\n"
                          "  selector: {matchLabels: {app: big}}\n  template:\n    metadata: {labels: {app: big}}\n"
                          "    spec: {containers: [{name: c, image: echo}]}\n"}, lab=True),
    # -- tracebacks ---------------------------------------------------------------------------------------------
    Case("config-dev-zero", "traceback", ("create", "cluster", "--name", "{name}", "--config", "/dev/zero",
                                          "--backend", "netns", "--kubernetes", "model"),
         "not a regular file (a character device)"),
    Case("apply-dev-zero", "traceback", ("apply", "-f", "/dev/zero"), "not a regular file (a character device)",
         lab=True),
    Case("deep-config", "traceback", create("c.yaml"), "nested more than", files={"c.yaml": DEEP}),
    Case("deep-manifest", "traceback", ("apply", "-f", "{d}/m.yaml"), "nested more than",
         files={"m.yaml": DEEP}, lab=True),
    Case("cp-through-proc-root", "traceback", ("cp", "{worker}:/p1/etc/hostname", "{d}/out"),
         "kernel file system", lab=True, before=(("exec", "{worker}", "--", "ln", "-sfn", "/proc/1/root", "/p1"),)),
    Case("curl-timeout-nan", "traceback", ("curl", "--timeout", "nan", "http://{worker}/"), "--timeout nan",
         lab=True),
    Case("curl-timeout-inf", "traceback", ("curl", "--timeout", "inf", "http://{worker}/"), "--timeout inf",
         lab=True),
    Case("curl-timeout-1e308", "traceback", ("curl", "--timeout", "1e308", "http://{worker}/"), "at most 86400",
         lab=True),
    Case("doctor-timeout-nan", "traceback", ("doctor", "--timeout", "nan"), "--timeout nan", lab=True),
    Case("doctor-timeout-negative", "traceback", ("doctor", "--timeout", "-1"), "--timeout -1", lab=True),
    # -- silently wrong -------------------------------------------------------------------------------------------
    Case("unknown-top-level-key", "silent", create("c.yaml"), "unknown field(s) nodez",
         files=cfg("c.yaml", "nodez:\n- role: control-plane\n")),
    Case("unknown-networking-key", "silent", create("c.yaml"), "networking: unknown field(s) podSubnett",
         files=cfg("c.yaml", "networking:\n  podSubnett: 10.9.0.0/16\n" + ONE_NODE)),
    Case("container-path-root", "silent", create("c.yaml"), "containerPath: '/' would cover the node's root",
         files=cfg("c.yaml", ONE_NODE + "  extraMounts:\n  - {containerPath: /, hostPath: ./x}\n")),
    Case("pod-subnet-is-node-network", "silent", create("c.yaml"), "overlaps the node network",
         files=cfg("c.yaml", "networking: {podSubnet: 172.18.0.0/16}\n" + ONE_NODE)),
    Case("pod-subnet-is-service-subnet", "silent", create("c.yaml"), "overlaps podSubnet",
         files=cfg("c.yaml", "networking: {podSubnet: 10.96.0.0/16, serviceSubnet: 10.96.0.0/16}\n" + ONE_NODE)),
    Case("duplicate-container-path", "silent", create("c.yaml"), "is mounted already by extraMounts[0]",
         files=cfg("c.yaml", ONE_NODE + "  extraMounts:\n  - {containerPath: /data, hostPath: ./a}\n"
                                        "  - {containerPath: /data/, hostPath: ./b}\n")),
    Case("duplicate-yaml-key", "silent", create("c.yaml"), "duplicate key 'networking'",
         files=cfg("c.yaml", "networking: {podSubnet: 10.9.0.0/16}\nnetworking: {}\n" + ONE_NODE)),
    Case("node-labels-not-a-map", "silent", create("c.yaml"), "nodes[0].labels: must be a mapping",
         files=cfg("c.yaml", ONE_NODE + "  labels: notamap\n")),
    Case("node-image-number", "silent", create("c.yaml"), "nodes[0].image: must be an image name",
         files=cfg("c.yaml", ONE_NODE + "  image: 123\n")),
    Case("extra-port-mappings", "silent", create("c.yaml"), "nodes[0].extraPortMappings",
         files=cfg("c.yaml", ONE_NODE + "  extraPortMappings:\n  - {containerPort: 80, hostPort: 8080}\n")),
    Case("host-path-lab-state", "silent", create("c.yaml"), "every lab's records",
         files=cfg("c.yaml", ONE_NODE + "  extraMounts:\n  - {containerPath: /x, hostPath: /run/kindlab}\n")),
    Case("backoff-inf", "silent", (*create("c.yaml"), "--backoff", "inf"), "--backoff inf",
         files=cfg("c.yaml", ONE_NODE)),
    Case("doctor-timeout-zero", "silent", ("doctor", "--timeout", "0"), "--timeout 0", lab=True),
    Case("env-value-integer", "silent", ("apply", "-f", "{d}/m.yaml"), "env[0].value: must be a string",
         files={"m.yaml": pod("envint", "    env: [{name: A, value: 1}]\n")}, lab=True),
    Case("container-name-with-space", "silent", ("apply", "-f", "{d}/m.yaml"), "not a valid container name",
         files={"m.yaml": pod("badname", container="- name: Bad Name\n    image: echo\n")}, lab=True),
    Case("duplicate-container-names", "silent", ("apply", "-f", "{d}/m.yaml"), "Duplicate value: 'c'",
         files={"m.yaml": pod("dup", container="- {name: c, image: echo}\n  - {name: c, image: echo}\n")}, lab=True),
    # -- the curl guard ---------------------------------------------------------------------------------------------
    Case("service-subnet-everything", "guard", create("c.yaml"), "wider than a /12",
         files=cfg("c.yaml", "networking: {serviceSubnet: 0.0.0.0/0}\n" + ONE_NODE)),
    Case("pod-subnet-too-wide", "guard", create("c.yaml"), "wider than a /8",
         files=cfg("c.yaml", "networking: {podSubnet: 0.0.0.0/1}\n" + ONE_NODE)),
    Case("curl-outside", "guard", ("curl", "http://8.8.8.8/"), "outside the lab", code=7, lab=True),
    # -- unclear ------------------------------------------------------------------------------------------------------
    Case("exec-nonexistent", "unclear", ("exec", "{worker}", "--", "/nonexistent"), "cannot run '/nonexistent'",
         code=127, lab=True),
    Case("exec-empty", "unclear", ("exec", "{worker}", "--", ""), "exec needs a command", lab=True),
    Case("exec-folder", "unclear", ("exec", "{worker}", "--", "/etc"), "cannot run '/etc'", code=126, lab=True),
    Case("container-path-proc", "unclear", create("c.yaml"), "kernel file system /proc",
         files=cfg("c.yaml", ONE_NODE + "  extraMounts:\n  - {containerPath: /proc, hostPath: ./x}\n")),
    Case("nul-in-config", "unclear", create("c.yaml"), "U+0000 is not allowed", files={"c.yaml": HEAD + "\0\n"}),
    Case("garbage-kubeconfig", "unclear", ("doctor", "--kubeconfig", "{d}/kc"), "not valid YAML",
         files={"kc": "garbage: [\n"}),
    Case("curl-timeout-negative", "unclear", ("curl", "--timeout", "-1", "http://{worker}/"), "--timeout -1",
         lab=True),
    # -- valid, as controls ---------------------------------------------------------------------------------------
    Case("get-nodes", "valid", ("get", "nodes"), refuse=False, lab=True),
    Case("exec-true", "valid", ("exec", "{worker}", "--", "true"), refuse=False, lab=True),
    Case("apply-a-pod", "valid", ("apply", "-f", "{d}/m.yaml"), refuse=False,
         files={"m.yaml": pod("good")}, lab=True),
    Case("doctor-dry-run", "valid", ("doctor", "--dry-run", "--timeout", "60"), refuse=False, lab=True),
)

LAB_CONFIG = HEAD + "nodes:\n- role: control-plane\n- role: worker\n"


def silent_server() -> int:
    """A loopback server that accepts connections and never answers; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []

    def serve() -> None:
        while True:
            held.append(server.accept()[0])
    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def cli(tree: Path, argv: list[str], timeout: float = HANG) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-m", "kindlab.cli", *argv], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=timeout)


def prepared(case: Case, folder: Path, names: dict[str, str]) -> list[str]:
    """The case's files made in `folder`, and its command line with the place-holders filled in."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in case.files.items():
        path = folder / name
        if text is None:
            os.mkfifo(path)
        else:
            path.write_text(text.replace("{port}", names["port"]))
    values = {**names, "d": str(folder), "name": f"sw-{case.id}"[:40].rstrip("-")}
    argv = [a.format(**values) for a in case.argv]
    if case.lab:    # right after the verb: what follows exec's `--` is the node's command
        argv[1:1] = ["--name", names["lab"], "--backend", "netns"]
    return argv


def classify(case: Case, done: subprocess.CompletedProcess | None) -> str:
    """The probe's category of one outcome."""
    if done is None:
        return "hangs"
    if "Traceback" in done.stderr:
        return "tracebacks"
    lines = done.stderr.strip().splitlines()
    one_line = len(lines) == 1 and lines[0].startswith("kindlab: error: ") and done.returncode not in (0, 2)
    if not case.refuse:
        return "valid" if done.returncode == 0 else ("clear errors" if one_line else "unclear")
    if done.returncode == 0 or not lines:
        return "silently wrong"       # it ran as if the input were fine
    return "clear errors" if one_line and case.words in lines[0] else "unclear"


def run_case(tree: Path, case: Case, folder: Path,
             names: dict[str, str]) -> tuple[str, subprocess.CompletedProcess | None]:
    """Run one case through `tree`'s kindlab; its category and what it printed (None: it hung)."""
    argv = prepared(case, folder, names)
    for before in case.before:
        cli(tree, [before[0], "--name", names["lab"], "--backend", "netns", *(a.format(**names) for a in before[1:])])
    try:
        done: subprocess.CompletedProcess | None = cli(tree, argv)
    except subprocess.TimeoutExpired:
        done = None
    if argv[0] == "create" and (done is None or done.returncode == 0):
        cli(tree, ["delete", "cluster", "--name", argv[argv.index("--name") + 1], "--backend", "netns"], 120)
    return classify(case, done), done


def sweep(tree: Path, with_lab: bool = True) -> dict[str, str]:
    """Every case's category, the lab's cases on one lab made for the sweep (deleted at the end)."""
    names = {"lab": "sweep", "worker": "sweep-worker", "port": str(silent_server())}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "lab.yaml"
        cfg_path.write_text(LAB_CONFIG)
        if with_lab:
            made = cli(tree, ["create", "cluster", "--name", "sweep", "--config", str(cfg_path), "--backend", "netns",
                              "--kubernetes", "model"], 300)
            if made.returncode != 0:
                raise SystemExit(f"the sweep's lab could not be made: {made.stderr}")
        try:
            for case in sorted(CASES, key=lambda c: c.id == "replicas-1000000"):   # the costly one last
                if case.lab and not with_lab:
                    continue
                out[case.id], done = run_case(tree, case, Path(tmp) / case.id, names)
                said = (done.stderr.strip().splitlines() or [""])[-1][:150] if done else "(no answer)"
                print(f"{case.id:32} {case.probe:9} {out[case.id]:15} {said}", flush=True)
        finally:
            if with_lab:
                cli(tree, ["delete", "cluster", "--name", "sweep", "--backend", "netns"], 600)
    return out


def table(results: dict[str, str]) -> str:
    counts = Counter(results.values())
    return "\n".join(f"| {c} | {counts.get(c, 0)} |" for c in CATEGORIES) + f"\n| total | {len(results)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose kindlab runs (default: this)")
    parser.add_argument("--no-lab", action="store_true", help="only the cases that need no lab")
    args = parser.parse_args()
    print(table(sweep(args.tree.resolve(), not args.no_lab)))


if __name__ == "__main__":
    main()
