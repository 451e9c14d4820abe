"""The files kindlab writes into its kind node image: its entrypoint, systemd units, containerd's configuration.

What kind asks of a node image (read from kind's sources, v0.33.0): an entrypoint that boots systemd and
prints `Reached target ... Multi-User System` within 30 s; `/kind/version` with one semver line; kubeadm,
kubectl, cat, mkdir and cp; a containerd answering on /run/containerd/containerd.sock with every image
kubeadm names; a kubelet unit that kubeadm starts. Everything else kind does with `docker exec`.
"""

from __future__ import annotations

from ....model.cni import CNI_BIN, NET_D

#: Where the node's own registry listens: on each node's loopback, serving the images the node image carries.
REGISTRY = "127.0.0.1:5000"
#: The registries whose pulls the node's containerd sends to it (kubeadm's, Docker Hub's).
REGISTRIES = ("docker.io", "k8s.gcr.io", "registry.k8s.io")
IMAGES_DIR = "/kind/images"
REGISTRY_PROGRAM = "/kind/bin/kindlab-registry"

ENTRYPOINT = r"""#!/bin/sh
# kindlab's kind node entrypoint: makes the container a machine systemd can boot, then becomes systemd.
set -eu
say() { echo "kindlab-node: $*" >&2; }

# Mounts made in the node (the kubelet's volumes) must reach the containers containerd starts.
mount --make-rshared /

# cgroups. kind starts nodes with --cgroupns=private, so / of every hierarchy is this node's own cgroup. kind's
# kubeadm config sets the kubelet's cgroupRoot to /kubelet: it must exist in every v1 hierarchy (cpuset's with
# the cpus and mems it may use) before the kubelet starts.
if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
  for hierarchy in /sys/fs/cgroup/*/; do
    case "$hierarchy" in */unified/) continue ;; esac
    mkdir -p "${hierarchy}kubelet"
    if [ -f "${hierarchy}cpuset.cpus" ]; then
      cat "${hierarchy}cpuset.cpus" > "${hierarchy}kubelet/cpuset.cpus"
      cat "${hierarchy}cpuset.mems" > "${hierarchy}kubelet/cpuset.mems"
    fi
  done
  say "cgroup v1: /kubelet made in every hierarchy"
fi

# A machine id of its own (systemd and the kubelet's node status read it).
rm -f /etc/machine-id
systemd-machine-id-setup >/dev/null 2>&1 || true

say "starting systemd"
exec "$@"
"""

CONTAINERD_DROP_IN = """\
# kindlab: what this machine lets a node do. Raising a hard limit needs CAP_SYS_RESOURCE and lowering an
# oom_score_adj is refused, so containerd keeps the node's limits and its score.
[Service]
LimitNOFILE=1048576
LimitNPROC=
LimitCORE=
OOMScoreAdjust=0
ExecStartPre=
"""

KUBELET_UNIT = """\
[Unit]
Description=kubelet: The Kubernetes Node Agent (kindlab's kind node)
After=containerd.service kindlab-registry.service
Wants=containerd.service kindlab-registry.service
# kubeadm writes the configuration at init or join, then starts this unit.
ConditionPathExists=/var/lib/kubelet/config.yaml

[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# A negative oom_score_adj is refused on this machine.
Environment="KUBELET_EXTRA_ARGS=--oom-score-adj=0"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
Restart=always
RestartSec=1s
StartLimitInterval=0

[Install]
WantedBy=multi-user.target
"""

REGISTRY_UNIT = f"""\
[Unit]
Description=kindlab's registry of this node's images, on its loopback
Before=containerd.service

[Service]
ExecStart=/bin/sh -c 'exec /usr/bin/python3 -I {REGISTRY_PROGRAM} --listen {REGISTRY} {IMAGES_DIR}/*/'
Restart=always
RestartSec=1s

[Install]
WantedBy=multi-user.target
"""


def containerd_config(pause: str) -> str:
    """containerd's config.toml in the node: CRI with cgroupfs (Kubernetes < 1.24), the node's registry."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2", "oom_score = 0",
        f"[{cri}]", f'  sandbox_image = "{pause}"',
        "  restrict_oom_score_adj = true   # a negative oom_score_adj is refused on this machine",
        "  disable_apparmor = true",
        f"[{cri}.containerd]", '  snapshotter = "overlayfs"', '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]", '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]", "  SystemdCgroup = false",
        f"[{cri}.cni]", f'  bin_dir = "{CNI_BIN}"', f'  conf_dir = "{NET_D}"',
        f"[{cri}.registry]", '  config_path = "/etc/containerd/certs.d"',
    ]) + "\n"


def registry_hosts() -> dict[str, str]:
    """/etc/containerd/certs.d/<registry>/hosts.toml: the node's own registry as each one's only server."""
    url = f"http://{REGISTRY}"
    text = f'server = "{url}"\n\n[host."{url}"]\n  capabilities = ["pull", "resolve"]\n'
    return {f"etc/containerd/certs.d/{host}/hosts.toml": text for host in REGISTRIES}


#: Units a container has no use for, masked as kind's own node image masks them (linked to /dev/null).
MASKED = ("getty.target", "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
          "systemd-modules-load.service", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
          "systemd-firstboot.service", "systemd-logind.service")
WANTED = ("kubelet.service", "kindlab-registry.service")


def node_files(version: str, pause: str) -> dict[str, tuple[str, int]]:
    """Every file kindlab writes into the rootfs: path (relative to /) -> (text, mode)."""
    files = {
        "usr/local/bin/entrypoint": (ENTRYPOINT, 0o755),
        "kind/version": (version + "\n", 0o644),
        "etc/containerd/config.toml": (containerd_config(pause), 0o644),
        "etc/systemd/system/containerd.service.d/10-kindlab.conf": (CONTAINERD_DROP_IN, 0o644),
        "etc/systemd/system/kubelet.service": (KUBELET_UNIT, 0o644),
        "etc/systemd/system/kindlab-registry.service": (REGISTRY_UNIT, 0o644),
    }
    files.update({path: (text, 0o644) for path, text in registry_hosts().items()})
    return files


def node_links() -> dict[str, str]:
    """Symbolic links kindlab makes in the rootfs: the units it enables and those it masks."""
    links = {f"etc/systemd/system/multi-user.target.wants/{unit}": f"/etc/systemd/system/{unit}" for unit in WANTED}
    links.update({f"etc/systemd/system/{unit}": "/dev/null" for unit in MASKED})
    return links
