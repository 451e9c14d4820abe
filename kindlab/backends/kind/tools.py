"""The command-line tools the kind backend drives (kind, helm) and the checks that they are there."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from ...errors import BackendUnavailable, ClusterError, WaitTimeout
from . import docker_host, engine

#: kind's release, installed by set-up with `go install` (scripts/install-kind.sh reads this line). The newest:
#: from v0.26.0 to v0.33.0 kind's kubeadm config still handles Kubernetes 1.20 (kubeadm v1beta2 below 1.23, the
#: cgroupfs driver below 1.24, the IPv6DualStack gate for 1.20, --skip-phases=preflight, the `master` role label;
#: pkg/cluster/internal/kubeadm/config.go, kubeadminit/init.go, kubeadmjoin/join.go, waitforready.go) with no
#: minimum version anywhere, and on a cgroup v1 host v0.32.0 and later only warn. kind's own v0.27+ base images
#: moved to containerd 2 (no CRI v1alpha2 for the kubelet 1.20), which is no matter here: kindlab makes its image.
KIND_VERSION = "v0.33.0"
CILIUM_VERSION = "1.20.2"  # the pinned Cilium chart; KINDLAB_CILIUM_VERSION overrides
CILIUM_REPO = "https://helm.cilium.io/"
# The values of Cilium's "Installation Using Kind" guide, plus two of kindlab's:
#   cni.exclusive=false: by default Cilium renames every other CNI config to *.cilium_bak,
#     the seed's chained conflist included;
#   kubeProxyReplacement=false, stated rather than left to the chart's default: with the
#     replacement on, Cilium serves hostPort in eBPF (since 1.8) and no worker would be broken.
CILIUM_VALUES = {
    "image.pullPolicy": "IfNotPresent",
    "ipam.mode": "kubernetes",
    "cni.exclusive": "false",
    "kubeProxyReplacement": "false",
}

INSTALL_HINTS = {
    "docker": "Docker Engine or Docker Desktop, with the daemon running (`docker info` must answer); or, as root, "
              "Debian's docker.io, for kindlab to start a Docker Engine of its own",
    "kind": f"kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation; `make setup-kind` runs "
            f"go install sigs.k8s.io/kind@{KIND_VERSION})",
    "helm": "Helm 3 or newer (https://helm.sh/docs/intro/install/)",
    "python": "the Python packages docker and kubernetes (`pip install 'kindlab[kind]'`)",
}


def context(name: str) -> str:
    """The kubeconfig context kind writes for cluster `name`."""
    return f"kind-{name}"


def cilium_version() -> str:
    """The Cilium version to install: $KINDLAB_CILIUM_VERSION, else the pinned one."""
    return os.environ.get("KINDLAB_CILIUM_VERSION") or CILIUM_VERSION


def kind_binary() -> str | None:
    """kind: on PATH, else where set-up installed it ($KINDLAB_CACHE/kind/<version>/bin/kind)."""
    cached = Path(os.environ.get("KINDLAB_CACHE", "/var/cache/kindlab")) / "kind" / KIND_VERSION / "bin" / "kind"
    return shutil.which("kind") or (str(cached) if cached.is_file() else None)


def kind_image_override() -> str | None:
    """The node image $KINDLAB_KIND_IMAGE names, if any."""
    return os.environ.get("KINDLAB_KIND_IMAGE") or None


def docker_answers() -> bool:
    """True when the Docker Engine kindlab uses answers (the machine's, or kindlab's own once started)."""
    return docker_host.answers()


def docker_can_run() -> bool:
    """True when a Docker Engine answers or kindlab can start its own."""
    return docker_answers() or not engine.missing()


def missing_tools(*, helm: bool = False) -> list[str]:
    """Which of the backend's requirements this machine lacks (keys of INSTALL_HINTS)."""
    missing = []
    if not all(importlib.util.find_spec(m) for m in ("docker", "kubernetes")):
        missing.append("python")
    if not kind_binary():
        missing.append("kind")
    if not docker_can_run():
        missing.append("docker")
    if helm and not shutil.which("helm"):
        missing.append("helm")
    return missing


def require(*, helm: bool = False) -> None:
    """BackendUnavailable saying what to install, unless Docker, kind (and helm) are there."""
    missing = missing_tools(helm=helm)
    if missing:
        wanted = "; ".join(INSTALL_HINTS[m] for m in missing)
        raise BackendUnavailable(f"the kind backend cannot run here; install: {wanted}. "
                                 "Or use the netns backend (KINDLAB_BACKEND=netns).")


#: kind adds --cgroupns=private to its nodes since v0.20.0, which needs Docker's API 1.41 (Docker 20.10).
MIN_KIND = (0, 20, 0)
MIN_DOCKER_API = (1, 41)


def version_tuple(text: str) -> tuple[int, ...]:
    """(0, 33, 0) from "kind v0.33.0 go1.26.8 linux/amd64" or "1.41"; () where there is no version."""
    found = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in found.groups() if g is not None) if found else ()


def require_versions() -> None:
    """BackendUnavailable where kind or Docker is too old for the nodes kind makes today, or Docker does not
    answer: what is there, and what to install or start."""
    kind = run(["kind", "version"], timeout=30).strip()
    if version_tuple(kind) < MIN_KIND:
        raise BackendUnavailable(f"{kind or 'kind'} is too old: kindlab needs kind v0.20.0 or later "
                                 f"({INSTALL_HINTS['kind']})")
    url = docker_host.url()
    if url is None:
        return   # kindlab's own engine, not started yet: Debian's docker.io, 20.10
    try:
        api = docker_host.client(timeout=10).version().get("ApiVersion", "")
    except Exception as exc:   # any failure to talk to it is the same answer
        raise BackendUnavailable(f"the Docker Engine at {url} does not answer ({exc}); start it "
                                 "(`docker info` must answer), or unset DOCKER_HOST") from None
    if version_tuple(api) < MIN_DOCKER_API:
        raise BackendUnavailable(f"the Docker Engine at {url} speaks API {api}: kind's nodes need API 1.41 "
                                 "(Docker 20.10) or later; upgrade Docker")


def require_helm() -> None:
    """BackendUnavailable unless helm is on PATH (needed only to install Cilium)."""
    if not shutil.which("helm"):
        raise BackendUnavailable(f"installing Cilium needs helm; install {INSTALL_HINTS['helm']}")


def run(args: list[str], *, timeout: float | None = 600) -> str:
    """Run a tool (kind from where set-up put it) with DOCKER_HOST on the engine kindlab uses, return its stdout;
    ClusterError with the tail of its stderr when it fails."""
    if args[0] == "kind" and not shutil.which("kind"):
        args = [kind_binary() or "kind", *args[1:]]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=docker_host.env())
    except FileNotFoundError:
        tool = Path(args[0]).name
        raise BackendUnavailable(f"`{tool}` is not installed; install {INSTALL_HINTS.get(tool, tool)}") from None
    except subprocess.TimeoutExpired:
        raise WaitTimeout(f"`{shlex.join(args)}` did not finish in {timeout:g}s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-8:])
        raise ClusterError(f"`{shlex.join(args)}` failed (exit {done.returncode}):\n{tail}")
    return done.stdout


# -- command lines ----------------------------------------------------------------------------
def kind_create(name: str, config: Path, image: str | None = None) -> list[str]:
    """`kind create cluster`; --wait 0s: without a CNI no node gets Ready, kindlab waits after Cilium."""
    args = ["kind", "create", "cluster", "--name", name, "--config", str(config), "--wait", "0s"]
    return args + (["--image", image] if image else [])


def kind_delete(name: str) -> list[str]:
    """`kind delete cluster --name NAME`."""
    return ["kind", "delete", "cluster", "--name", name]


def kind_get_clusters() -> list[str]:
    """`kind get clusters`."""
    return ["kind", "get", "clusters"]


def kind_cluster_names() -> list[str]:
    """The names `kind get clusters` prints."""
    return [line.strip() for line in run(kind_get_clusters(), timeout=60).splitlines() if line.strip()]


def kind_get_kubeconfig(name: str) -> list[str]:
    """`kind get kubeconfig --name NAME` (the kubeconfig on stdout)."""
    return ["kind", "get", "kubeconfig", "--name", name]


def helm_repo_add() -> list[str]:
    """`helm repo add cilium https://helm.cilium.io/` (idempotent with --force-update)."""
    return ["helm", "repo", "add", "cilium", CILIUM_REPO, "--force-update"]


def helm_install_cilium(name: str, version: str | None = None) -> list[str]:
    """Install Cilium as the kind guide does; `upgrade --install` so that a retry is harmless."""
    args = ["helm", "upgrade", "--install", "cilium", "cilium/cilium", "--version", version or cilium_version(),
            "--namespace", "kube-system", "--kube-context", context(name)]
    for key, value in CILIUM_VALUES.items():
        args += ["--set", f"{key}={value}"]
    return args
