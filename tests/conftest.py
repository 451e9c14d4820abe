"""Shared fixtures.

netns labs: `make_lab` makes labs with short unique names and always deletes them, even when the
test fails; `host_network` snapshots the machine's own network namespace (links, routes, iptables)
so a test can check the lab changed nothing there.

The suite's labs are netns labs running kindlab's model of the kubelet (quick, with a short back-off) unless a
test asks for kind (tests/test_kind_real.py) or for real Kubernetes (kubernetes="real": tests/test_real_lab.py);
`make book` runs the book on real.

Skips: tests/skip_policy.py's hooks count them and, with CI set, fail any that tests/allowed_skips.toml does not
allow (an environment that set-up should have made, e.g. the netns preflight below, fails rather than skips).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from skip_policy import (  # noqa: F401  (pytest reads the hooks from this module)
    pytest_configure,
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

from kindlab.cluster import Cluster, HttpResponse
from kindlab.errors import ConnectionRefused

ROOT = Path(__file__).resolve().parents[1]


class TextLab:
    """A lab whose every node answers every command with `text`; the calls are kept."""

    def __init__(self, text: str):
        self.text, self.calls = text, []

    def exec(self, node, cmd):
        self.calls.append((node, cmd))
        return self.text


def portmap_binary() -> str:
    """The portmap every netns lab overlays on its nodes (the pinned 1.9.1 where set-up unpacked it)."""
    from kindlab.backends.netns import preflight
    return str(preflight.cni_dir() / "portmap")
KIND_CONFIG = ROOT / "kind" / "config"
os.environ.setdefault("KINDLAB_KUBERNETES", "model")   # inherited by the notebooks' kernels and the CLI's runs
# The suite's labs are netns labs unless a test asks for kind (backend="kind"): kind is chosen by itself wherever a
# Docker Engine answers, kindlab's own included, which a kind test may still be stopping.
os.environ.setdefault("KINDLAB_BACKEND", "netns")


# -- the netns backend ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def netns_ready() -> None:
    """Skip unless this machine can run netns labs (root, tools, CNI plugins); under CI that skip fails."""
    from kindlab.backends.netns import preflight
    from kindlab.errors import EnvironmentProblem

    try:
        preflight.check()
    except EnvironmentProblem as exc:
        pytest.skip(f"netns backend unavailable: {exc}")


def small_config(folder: Path, workers: int = 1, chained: bool = True) -> Path:
    """A kind config with one control-plane and `workers` workers, each with the chained conflist."""
    conflist = ROOT / "kind" / "cni" / "000-cilium-portmap.conflist"
    mount = (f"  extraMounts:\n  - containerPath: /etc/cni/net.d/000-cilium-portmap.conflist\n"
             f"    hostPath: {conflist}\n    readOnly: true\n") if chained else ""
    nodes = "- role: control-plane\n" + ("- role: worker\n" + mount) * workers
    path = folder / f"config-{workers}w"
    path.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  disableDefaultCNI: true\n"
                    f"  podSubnet: 192.168.0.0/16\n  serviceSubnet: 10.96.0.0/12\nnodes:\n{nodes}")
    return path


@pytest.fixture
def make_lab(netns_ready, tmp_path_factory) -> Iterator[Callable[..., object]]:
    """make_lab(config=None, name=None, backoff=0.5) -> a netns lab, deleted after the test.

    Without a config, a private copy of kind/config (walkthrough.private_config): never the repository's
    own, whose host folder `kind/empty` another lab of kind/config may be using at the same time.
    """
    from kindlab import backends
    from kindlab.backends.netns.cluster import wait_for_agent
    from kindlab.walkthrough import private_config

    made: list[str] = []

    def make(config: str | Path | None = None, name: str | None = None, backoff: float = 0.5):
        name = name or f"t{secrets.token_hex(3)}"
        made.append(name)
        config = config or private_config(tmp_path_factory.mktemp("kind"))
        lab = backends.up(config, name=name, backend="netns", backoff=backoff)
        wait_for_agent(lab)
        return lab

    yield make
    for name in made:
        backends.delete(name, backend="netns")


@pytest.fixture
def host_network() -> Callable[[], dict[str, str]]:
    """snapshot() -> the host namespace's `ip -d link`, `ip route`, `ip -6 route`, `iptables-save` (comments,
    counters stripped)."""
    def snapshot() -> dict[str, str]:
        def run(*argv: str) -> str:
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#"))
        return {"link": run("ip", "-d", "link"), "route": run("ip", "route"), "route6": run("ip", "-6", "route"),
                "iptables": run("iptables-save")}
    return snapshot


def curl_answer(lab: Cluster, url: str, timeout: float = 10.0) -> HttpResponse:
    """curl `url` until its server answers: a pod is Running from its container's start, as on containerd,
    a moment before its server listens. A refused connection is tried again, any other failure raised."""
    def attempt() -> HttpResponse | None:
        try:
            return lab.curl(url, timeout=2.0)
        except ConnectionRefused:
            return None
    return lab.wait_for(attempt, timeout=timeout, interval=0.05, what=f"an answer from {url}")
