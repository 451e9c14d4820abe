"""Load a kind cluster config into a Topology: nodes, roles, mounts, networking."""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .input_files import load_one, read_text, shown

KIND_API = "kind.x-k8s.io/v1alpha4"
OLD_KIND_API = "kind.sigs.k8s.io/v1alpha3"
ROLES = ("control-plane", "worker")
CLUSTER_FIELDS = {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig",
                  "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches",
                  "containerdConfigPatchesJSON6902"}
NETWORKING_FIELDS = {"ipFamily", "apiServerPort", "apiServerAddress", "podSubnet", "serviceSubnet",
                     "disableDefaultCNI", "kubeProxyMode", "dnsSearch"}
NODE_FIELDS = {"role", "image", "extraMounts", "extraPortMappings", "labels", "kubeadmConfigPatches",
               "kubeadmConfigPatchesJSON6902"}
# What kind carries out and kindlab only hands on to it (to_kind_config): the netns lab does not apply these.
KIND_ONLY_FIELDS = CLUSTER_FIELDS - {"kind", "apiVersion", "name", "nodes", "networking"}
KIND_ONLY_NETWORKING = NETWORKING_FIELDS - {"podSubnet", "serviceSubnet", "disableDefaultCNI"}
KIND_ONLY_NODE_FIELDS = NODE_FIELDS - {"role", "extraMounts"}
MOUNT_FIELDS = {"containerPath", "hostPath", "readOnly", "propagation", "selinuxRelabel"}
PROPAGATIONS = ("None", "HostToContainer", "Bidirectional")
KUBE_PROXY_MODES = ("iptables", "ipvs", "nftables", "none")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_LABEL_MAX = 63
LONGEST_NODE_SUFFIX = "-control-plane999"              # kind's longest node-name suffix (up to 999 of a role)
MAX_CLUSTER_NAME = DNS_LABEL_MAX - len(LONGEST_NODE_SUFFIX)   # 46: every node name stays a DNS label
# Host folders a node must never get as an extraMount: the node would write the machine's own files.
SYSTEM_FOLDERS = frozenset({"/", "/etc", "/usr", "/bin", "/sbin", "/boot", "/proc", "/sys", "/dev", "/var",
                            "/root", "/run"})
LIB_FOLDER = re.compile(r"/lib(32|64|x32)?")
LAB_STATE = Path("/run/kindlab")     # every lab's records: no node may mount it
NODE_NETWORK = "172.18.0.0/16"       # the nodes' network (Docker's `kind` network; the netns lab's bridge)
# The widest ranges upstream accepts: kube-controller-manager splits the pod subnet into node CIDRs (/24, /64)
# at most 16 bits narrower; kube-apiserver refuses a service range wider than /12 (IPv4) or /108 (IPv6).
WIDEST_POD_SUBNET = {4: 8, 6: 48}
WIDEST_SERVICE_SUBNET = {4: 12, 6: 108}
# Node paths no extraMount may cover: the node's root, and /proc, which runc refuses as a mount target.
KERNEL_TARGETS = ("/proc",)


def check_cluster_name(name: object) -> str:
    """`name` if it is a valid cluster name: a lower-case RFC 1123 DNS label of at most MAX_CLUSTER_NAME
    characters, so that `<name>-control-plane2` is one too; ConfigError otherwise."""
    if isinstance(name, str) and DNS_LABEL.fullmatch(name) and len(name) <= MAX_CLUSTER_NAME:
        return name
    raise ConfigError(f"{name!r} is not a valid cluster name: use lower-case letters, digits and '-', starting "
                      f"and ending with a letter or digit, at most {MAX_CLUSTER_NAME} characters "
                      f"(node names such as <name>{LONGEST_NODE_SUFFIX} must stay DNS labels), e.g. --name kind")


def is_system_folder(path: Path) -> bool:
    """True for `/` and the machine's own top-level folders (/etc, /usr, /lib*, ...), by name or by symlink."""
    for candidate in {os.path.normpath(path), os.path.realpath(path)}:
        if candidate in SYSTEM_FOLDERS or LIB_FOLDER.fullmatch(candidate):
            return True
    return False


@dataclass(frozen=True)
class Mount:
    """One extraMount: a host path bind-mounted into a node."""

    container_path: str
    host_path: Path
    read_only: bool = False
    propagation: str = "None"

    @property
    def is_dir(self) -> bool:
        """True when the host side is (or will be made) a directory."""
        return not self.host_path.exists() or self.host_path.is_dir()


@dataclass(frozen=True)
class Node:
    """One node as kind names it: `<cluster>-control-plane`, `<cluster>-worker2`, ..."""

    name: str
    role: str
    index: int
    mounts: tuple[Mount, ...] = ()
    pod_cidr: str = ""
    kind_only: dict[str, Any] = field(default_factory=dict, compare=False)   # KIND_ONLY_NODE_FIELDS as given


@dataclass(frozen=True)
class Networking:
    """The cluster's networking section."""

    pod_subnet: str = "10.244.0.0/16"
    service_subnet: str = "10.96.0.0/16"
    disable_default_cni: bool = False


@dataclass(frozen=True)
class Topology:
    """A kind config, loaded: the cluster's nodes in config order and its networking."""

    name: str
    nodes: tuple[Node, ...]
    networking: Networking
    source: Path | None = None
    api_version: str = KIND_API
    notes: tuple[str, ...] = field(default=())
    kind_only: dict[str, Any] = field(default_factory=dict, compare=False)   # KIND_ONLY_FIELDS, "networking" too

    def node(self, name: str) -> Node:
        """The node called `name`; ConfigError naming the known nodes otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise ConfigError(f"no node {name!r} in cluster {self.name!r}; nodes are: {known}")

    def to_frame(self):
        """The topology as a DataFrame: one row per mount (a node without mounts has one row)."""
        import pandas as pd

        rows = []
        for node in self.nodes:
            base = {"node": node.name, "role": node.role, "podCIDR": node.pod_cidr}
            if not node.mounts:
                rows.append({**base, "containerPath": None, "hostPath": None, "readOnly": None})
            for m in node.mounts:
                rows.append({**base, "containerPath": m.container_path, "hostPath": str(m.host_path),
                             "readOnly": m.read_only})
        return pd.DataFrame(rows)

    def to_kind_config(self) -> dict[str, Any]:
        """The config as kind v1alpha4 wants it, with absolute hostPaths."""
        nodes = []
        for node in self.nodes:
            entry: dict[str, Any] = {"role": node.role, **copy.deepcopy(node.kind_only)}
            if node.mounts:
                entry["extraMounts"] = [
                    {"containerPath": m.container_path, "hostPath": str(m.host_path.resolve()),
                     "readOnly": m.read_only, "propagation": m.propagation}
                    for m in node.mounts
                ]
            nodes.append(entry)
        net = self.networking
        extra = copy.deepcopy(self.kind_only)
        return {
            "kind": "Cluster",
            "apiVersion": KIND_API,
            "networking": {"podSubnet": net.pod_subnet, "serviceSubnet": net.service_subnet,
                           "disableDefaultCNI": net.disable_default_cni, **extra.pop("networking", {})},
            "nodes": nodes,
            **extra,
        }


def node_names(cluster: str, roles: list[str]) -> list[str]:
    """Names kind gives nodes: control-plane, control-plane2, worker, worker2, ..."""
    counts: dict[str, int] = {}
    names = []
    for role in roles:
        counts[role] = counts.get(role, 0) + 1
        suffix = "" if counts[role] == 1 else str(counts[role])
        names.append(f"{cluster}-{role}{suffix}")
    return names


def pod_cidrs(pod_subnet: str, count: int) -> list[str]:
    """Split the pod subnet into one /24 per node, in node order (as kube-controller-manager does)."""
    net = ipaddress.ip_network(pod_subnet, strict=False)
    prefix = 24 if net.version == 4 else 64
    if net.prefixlen > prefix:
        raise ValueError(f"podSubnet {pod_subnet} is smaller than a /{prefix}")
    subnets = net.subnets(new_prefix=prefix)
    out = []
    for _ in range(count):
        try:
            out.append(str(next(subnets)))
        except StopIteration:
            raise ValueError(f"podSubnet {pod_subnet} has room for fewer than {count} node CIDRs") from None
    return out


def load(path: str | Path, name: str = "kind") -> Topology:
    """Load a kind config file (v1alpha4, or the old v1alpha3, converted) for cluster `name`."""
    check_cluster_name(name)
    path = Path(path)
    if path.is_dir():
        path = path / "config"
    doc = load_one(read_text(path, ConfigError, "kind config"), str(path), ConfigError)
    return from_dict(doc, name=name, source=path)


def from_dict(doc: Any, name: str = "kind", source: Path | None = None) -> Topology:
    """Build a Topology from a parsed kind config; relative hostPaths resolve against `source`'s folder."""
    check_cluster_name(name)
    where = str(source) if source else "<config>"
    base = source.parent if source else Path.cwd()

    def fail(field_path: str, msg: str) -> ConfigError:
        return ConfigError(f"{where}: {field_path}: {msg}")

    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a kind Cluster config (a YAML mapping), got {type(doc).__name__}")
    if doc.get("kind") != "Cluster":
        raise fail("kind", f"must be 'Cluster', got {shown(doc.get('kind'))}")
    _no_unknown(doc, CLUSTER_FIELDS, "", fail)
    if "name" in doc and not isinstance(doc["name"], str):
        raise fail("name", f"must be a string, got {shown(doc['name'])}")
    api = doc.get("apiVersion")
    notes: list[str] = []
    if api == OLD_KIND_API:
        notes.append(f"{where}: converted apiVersion {OLD_KIND_API} to {KIND_API} "
                     "(kind dropped v1alpha3 in v0.9.0)")
    elif api != KIND_API:
        raise fail("apiVersion", f"must be {KIND_API!r} (or the old {OLD_KIND_API!r}), got {shown(api)}")

    networking = _networking(doc, api, fail, notes)
    raw_nodes = [{"role": "control-plane"}] if doc.get("nodes") is None else doc["nodes"]
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise fail("nodes", "must be a list of nodes")
    roles = []
    for i, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            raise fail(f"nodes[{i}]", "must be a mapping with a 'role'")
        role = raw.get("role", "control-plane")
        if role not in ROLES:
            raise fail(f"nodes[{i}].role", f"must be one of {', '.join(ROLES)}, got {shown(role)}")
        _no_unknown(raw, NODE_FIELDS, f"nodes[{i}]", fail)
        _node_fields(raw, f"nodes[{i}]", fail)
        roles.append(role)
    if "control-plane" not in roles:
        raise fail("nodes", "needs at least one control-plane node")
    names = node_names(name, roles)
    try:
        cidrs = pod_cidrs(networking.pod_subnet, len(roles))
    except ValueError as exc:
        raise fail("networking.podSubnet", str(exc)) from None

    nodes = []
    for i, raw in enumerate(raw_nodes):
        mounts = tuple(_mount(m, f"nodes[{i}].extraMounts[{j}]", base, api, fail, notes)
                       for j, m in enumerate(_as_list(raw.get("extraMounts"), f"nodes[{i}].extraMounts", fail)))
        targets: dict[str, int] = {}
        for j, m in enumerate(mounts):
            target = os.path.normpath(m.container_path)
            if target in targets:
                raise fail(f"nodes[{i}].extraMounts[{j}].containerPath", f"{target!r} is mounted already by "
                           f"extraMounts[{targets[target]}] (Docker refuses a duplicate mount point)")
            targets[target] = j
        nodes.append(Node(name=names[i], role=roles[i], index=i, mounts=mounts, pod_cidr=cidrs[i],
                          kind_only={k: raw[k] for k in sorted(KIND_ONLY_NODE_FIELDS) if k in raw}))
    kind_only = {k: doc[k] for k in sorted(KIND_ONLY_FIELDS) if k in doc}
    if net_extra := {k: v for k, v in (doc.get("networking") or {}).items() if k in KIND_ONLY_NETWORKING}:
        kind_only["networking"] = net_extra
    handed = sorted({*(k for k in kind_only if k != "networking"), *net_extra,
                     *(k for n in nodes for k in n.kind_only)})
    if handed:
        notes.append(f"{where}: {', '.join(handed)}: kind's own, handed on to kind; the netns lab does not "
                     "apply them")
    return Topology(name=name, nodes=tuple(nodes), networking=networking, source=source,
                    api_version=KIND_API, notes=tuple(notes), kind_only=kind_only)


def _no_unknown(raw: dict, known: set[str], field_path: str, fail) -> None:
    """Refuse fields kind does not know (kind reads its config strictly): a typo is never ignored."""
    if unknown := sorted(str(k) for k in set(raw) - known):
        raise fail(field_path or "(top level)", f"unknown field(s) {', '.join(u[:40] for u in unknown)}; "
                   f"known: {', '.join(sorted(known))}")


def _node_fields(raw: dict, field_path: str, fail) -> None:
    """The node fields kindlab does not use, checked as kind reads them; extraPortMappings refused."""
    image = raw.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        raise fail(f"{field_path}.image", f"must be an image name (a string), got {shown(image)}")
    labels = raw.get("labels")
    if labels is not None and not (isinstance(labels, dict)
                                   and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise fail(f"{field_path}.labels", f"must be a mapping of strings to strings, got {shown(labels)}")
    if raw.get("extraPortMappings") is not None:
        raise fail(f"{field_path}.extraPortMappings", "kindlab does not publish node ports on the machine (its "
                   "labs are reached at the nodes' own addresses); remove extraPortMappings")


def _as_list(value: Any, field_path: str, fail) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(field_path, "must be a list")
    return value


def _networking(doc: dict, api: str, fail, notes: list[str]) -> Networking:
    if doc.get("networking") is not None and not isinstance(doc["networking"], dict):
        raise fail("networking", "must be a mapping")
    net = dict(doc.get("networking") or {})
    _no_unknown(net, NETWORKING_FIELDS, "networking", fail)
    mode = net.get("kubeProxyMode")
    if mode is not None and mode not in KUBE_PROXY_MODES:
        raise fail("networking.kubeProxyMode", f"must be one of {', '.join(KUBE_PROXY_MODES)}, got {shown(mode)}")
    # v1alpha3 configs (the seed's) set subnets through a kubeadm ClusterConfiguration patch.
    for k, patch in enumerate(_as_list(doc.get("kubeadmConfigPatches"), "kubeadmConfigPatches", fail)):
        patched = load_one(patch, f"kubeadmConfigPatches[{k}]", ConfigError) if isinstance(patch, str) else None
        if not isinstance(patched, dict):
            raise fail(f"kubeadmConfigPatches[{k}]", f"must be a kubeadm config patch (YAML text of a mapping), "
                       f"got {shown(patch)}")
        if isinstance(patched, dict) and isinstance(patched.get("networking"), dict):
            for key in ("podSubnet", "serviceSubnet"):
                if key in patched["networking"] and key not in net:
                    net[key] = patched["networking"][key]
                    notes.append(f"networking.{key} taken from kubeadmConfigPatches[{k}]")
    pod = net.get("podSubnet", Networking.pod_subnet)
    svc = net.get("serviceSubnet", Networking.service_subnet)
    _check_ranges(pod, svc, fail)
    disable = net.get("disableDefaultCNI", api == OLD_KIND_API)
    if not isinstance(disable, bool):
        raise fail("networking.disableDefaultCNI", f"must be true or false, got {shown(disable)}")
    return Networking(pod_subnet=str(pod), service_subnet=str(svc), disable_default_cni=disable)


def _check_ranges(pod: Any, svc: Any, fail) -> None:
    """The pod and service subnets: CIDRs no wider than upstream accepts, overlapping neither each other nor the
    node network (the curl guard allows exactly these ranges, so a config must not widen them)."""
    nets = {}
    for key, value, widest in (("podSubnet", pod, WIDEST_POD_SUBNET), ("serviceSubnet", svc, WIDEST_SERVICE_SUBNET)):
        try:
            net = ipaddress.ip_network(value if isinstance(value, str) else "", strict=False)
        except ValueError:
            raise fail(f"networking.{key}", f"not a CIDR: {shown(value)}") from None
        if net.prefixlen < widest[net.version]:
            raise fail(f"networking.{key}", f"{value} is wider than a /{widest[net.version]}, the widest "
                       f"Kubernetes accepts for it; use e.g. {getattr(Networking, _attr(key))}")
        nets[key] = net
    node_net = ipaddress.ip_network(NODE_NETWORK)
    for key, net in nets.items():
        if net.version == node_net.version and net.overlaps(node_net):
            raise fail(f"networking.{key}", f"{net} overlaps the node network {NODE_NETWORK}; pick another range")
    p, s = nets["podSubnet"], nets["serviceSubnet"]
    if p.version == s.version and p.overlaps(s):
        raise fail("networking.serviceSubnet", f"{s} overlaps podSubnet {p}; pod and service addresses must differ")


def _attr(key: str) -> str:
    return {"podSubnet": "pod_subnet", "serviceSubnet": "service_subnet"}[key]


def _mount(raw: Any, field_path: str, base: Path, api: str, fail, notes: list[str]) -> Mount:
    if not isinstance(raw, dict):
        raise fail(field_path, "must be a mapping with containerPath and hostPath")
    raw = dict(raw)
    if "type" in raw:
        if api != OLD_KIND_API:
            raise fail(f"{field_path}.type", "kind v1alpha4 has no mount 'type'; remove it")
        raw.pop("type")
    unknown = set(raw) - MOUNT_FIELDS
    if unknown:
        raise fail(field_path, f"unknown field(s) {', '.join(sorted(unknown))}")
    for key in ("containerPath", "hostPath"):
        if not isinstance(raw.get(key), str) or not raw[key] or "\0" in raw[key]:
            raise fail(f"{field_path}.{key}", "is required (a path, without NUL bytes)")
    container = raw["containerPath"]
    if not container.startswith("/"):
        raise fail(f"{field_path}.containerPath", f"must be absolute, got {shown(container)}")
    target = os.path.normpath(container)
    if target in ("/", "//") or any(target == k or target.startswith(k + "/") for k in KERNEL_TARGETS):
        raise fail(f"{field_path}.containerPath", f"{container!r} would cover the node's "
                   f"{'root' if target in ('/', '//') else 'kernel file system /proc'} (runc refuses it); mount "
                   "below a folder of the node, e.g. /data")
    read_only = raw.get("readOnly", False)
    if not isinstance(read_only, bool):
        raise fail(f"{field_path}.readOnly", f"must be true or false, got {shown(read_only)}")
    propagation = raw.get("propagation", "None")
    if propagation not in PROPAGATIONS:
        raise fail(f"{field_path}.propagation", f"must be one of {', '.join(PROPAGATIONS)}, got {shown(propagation)}")
    given = raw["hostPath"]
    host = Path(given) if Path(given).is_absolute() else base / given
    if any(c == LAB_STATE or c.is_relative_to(LAB_STATE) for c in (Path(os.path.normpath(host)), host.resolve())):
        raise fail(f"{field_path}.hostPath", f"{given!r} is in {LAB_STATE}, every lab's records: a node would "
                   "write them; mount a folder made for the lab instead")
    if is_system_folder(host):
        raise fail(f"{field_path}.hostPath", f"{given!r} is the host's {os.path.realpath(host)}: a node would "
                   "write the machine's own files there; mount a folder made for the lab instead")
    if not host.exists():
        # Docker makes a missing bind-mount source as an empty folder; a missing file,
        # or anything mounted read-only, can only be a mistake.
        if read_only or host.suffix:
            raise fail(f"{field_path}.hostPath", f"no such file {given!r} (looked in {host.parent})")
    return Mount(container_path=container, host_path=host, read_only=read_only, propagation=propagation)
