"""Load pod manifests (a file, a folder, or multi-document YAML) into pod specs."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from .errors import ManifestError
from .input_files import load_all, read_text, shown

PROTOCOLS = ("TCP", "UDP", "SCTP")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")       # at most 63 characters
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")                          # the API server's rule
PRINTABLE = re.compile(r"[^\x00-\x20\x7f]+")                                   # no space, no control


@dataclass(frozen=True)
class Port:
    """A container port, with the hostPort that portmap maps to it."""

    container_port: int
    host_port: int | None = None
    protocol: str = "TCP"
    host_ip: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Container:
    """One container of a pod: image, env and ports."""

    name: str
    image: str
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class PodSpec:
    """A pod as the node agent needs it."""

    name: str
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    node_name: str | None = None
    containers: tuple[Container, ...] = ()
    source: str | None = field(default=None, compare=False)

    @property
    def host_ports(self) -> list[Port]:
        """The ports that ask for a hostPort."""
        return [p for c in self.containers for p in c.ports if p.host_port]

    def to_manifest(self) -> dict[str, Any]:
        """The pod as a Kubernetes v1 Pod manifest."""
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels)},
            "spec": {
                **({"nodeName": self.node_name} if self.node_name else {}),
                "containers": [
                    {
                        "name": c.name,
                        "image": c.image,
                        **({"env": [{"name": k, "value": v} for k, v in c.env]} if c.env else {}),
                        "ports": [
                            {"containerPort": p.container_port, "protocol": p.protocol,
                             **({"hostPort": p.host_port} if p.host_port else {}),
                             **({"hostIP": p.host_ip} if p.host_ip else {}),
                             **({"name": p.name} if p.name else {})}
                            for p in c.ports
                        ],
                    }
                    for c in self.containers
                ],
            },
        }


@dataclass(frozen=True)
class Deployment:
    """A Deployment: its pod template and replica count."""

    name: str
    namespace: str
    replicas: int
    template: PodSpec
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    source: str | None = field(default=None, compare=False)


Manifest = PodSpec | Deployment


def load(path: str | Path) -> list[Manifest]:
    """Load every Pod and Deployment in a file or a folder (its .yaml/.yml/.json files, sorted)."""
    out: list[Manifest] = []
    for item in load_each(path):
        if isinstance(item, ManifestError):
            raise item
        out.append(item)
    return out


def load_each(path: str | Path) -> list[Manifest | ManifestError]:
    """Like `load`, but a document that cannot be used becomes its ManifestError in the list (as kubectl
    applies the good documents of a file and reports the others); a file that does not parse is one error."""
    out: list[Manifest | ManifestError] = []
    for f in _manifest_files(Path(path)):
        try:
            docs = _documents(_read(f), str(f))
        except ManifestError as exc:
            out.append(exc)
            continue
        for i, doc in enumerate(docs):
            try:
                out.extend(from_dict(doc, str(f) if len(docs) == 1 else f"{f} (document {i + 1})"))
            except ManifestError as exc:
                out.append(exc)
    return out


def _manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
        if not files:
            raise ManifestError(f"{path}: no .yaml, .yml or .json manifests in this folder")
        return files
    if path.exists():
        return [path]
    raise ManifestError(f"{path}: no such file or folder; pass a manifest file or a folder of them")


def _read(path: Path) -> str:
    return read_text(path, ManifestError, "manifest")


def _documents(text: str, source: str) -> list[Any]:
    return load_all(text, source, ManifestError)


def loads(text: str, source: str = "<manifest>") -> list[Manifest]:
    """Parse YAML text holding one or more documents."""
    docs = _documents(text, source)
    out: list[Manifest] = []
    for i, doc in enumerate(docs):
        where = source if len(docs) == 1 else f"{source} (document {i + 1})"
        out.extend(from_dict(doc, where))
    return out


def from_dict(doc: Any, where: str = "<manifest>") -> list[Manifest]:
    """Turn one parsed document (Pod, Deployment, or v1 List) into specs."""
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}")
    kind = doc.get("kind")
    if kind == "List":
        _api(doc, where, ("v1",))
        items = _list(doc.get("items"), where, "items")
        return [m for j, item in enumerate(items) for m in from_dict(item, f"{where} items[{j}]")]
    if kind == "Pod":
        _api(doc, where, ("v1",))
        return [_pod(doc, where, "")]
    if kind == "Deployment":
        _api(doc, where, ("apps/v1",))
        return [_deployment(doc, where)]
    raise ManifestError(f"{where}: kind: unsupported kind {kind!r}; kindlab applies Pod and Deployment (apps/v1)")


def _api(doc: dict, where: str, allowed: tuple[str, ...]) -> None:
    api = doc.get("apiVersion")
    if api not in allowed:
        removed = api == "extensions/v1beta1"
        hint = " (extensions/v1beta1 was removed in Kubernetes 1.16; use apps/v1)" if removed else ""
        raise ManifestError(f"{where}: apiVersion: {doc.get('kind')} needs {' or '.join(allowed)}, "
                            f"got {shown(api)}{hint}")


def _list(value: Any, where: str, field_path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ManifestError(f"{where}: {field_path}: must be a list, got {type(value).__name__}")
    return value


def _mapping(value: Any, where: str, field_path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: {field_path}: must be a mapping")
    return value


def _pod(doc: dict, where: str, prefix: str, template: bool = False) -> PodSpec:
    meta = _mapping(doc.get("metadata"), where, f"{prefix}metadata")
    name = meta.get("name")
    if not template:
        if not isinstance(name, str) or not name:
            raise ManifestError(f"{where}: {prefix}metadata.name: is required")
        _check_name(name, where, f"{prefix}metadata.name")
    namespace = _namespace(meta, where, f"{prefix}metadata.namespace")
    labels = _labels(meta, where, f"{prefix}metadata.labels")
    spec = _mapping(doc.get("spec"), where, f"{prefix}spec")
    raw_containers = spec.get("containers")
    if not isinstance(raw_containers, list) or not raw_containers:
        raise ManifestError(f"{where}: {prefix}spec.containers: is required (a non-empty list)")
    containers = tuple(_container(c, where, f"{prefix}spec.containers[{i}]") for i, c in enumerate(raw_containers))
    seen: dict[str, int] = {}
    for i, c in enumerate(containers):
        if c.name in seen:
            raise ManifestError(f"{where}: {prefix}spec.containers[{i}].name: Duplicate value: {c.name!r} "
                                f"(containers[{seen[c.name]}] has it)")
        seen[c.name] = i
    node_name = spec.get("nodeName") or None
    if node_name is not None and (not isinstance(node_name, str) or not DNS_SUBDOMAIN.fullmatch(node_name)):
        raise ManifestError(f"{where}: {prefix}spec.nodeName: must be a node name (lower-case letters, digits, "
                            f"'-' and '.'), got {shown(node_name)}")
    return PodSpec(name=name or "", namespace=namespace,
                   labels=labels, node_name=node_name,
                   containers=containers, source=where)


def _container(raw: Any, where: str, field_path: str) -> Container:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: {field_path}: must be a mapping")
    for key in ("name", "image"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ManifestError(f"{where}: {field_path}.{key}: is required (a string)")
    if not PRINTABLE.fullmatch(raw["image"]):
        raise ManifestError(f"{where}: {field_path}.image: {shown(raw['image'])} is not an image name (it holds "
                            "spaces or control characters)")
    name = raw["name"]
    if len(name) > 63 or not DNS_LABEL.fullmatch(name):
        raise ManifestError(f"{where}: {field_path}.name: {shown(name)} is not a valid container name: use "
                            "lower-case letters, digits and '-', starting and ending with a letter or digit, at "
                            "most 63 characters")
    env = []
    for k, e in enumerate(_list(raw.get("env"), where, f"{field_path}.env")):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
            raise ManifestError(f"{where}: {field_path}.env[{k}].name: is required (a string)")
        if not ENV_NAME.fullmatch(e["name"]):
            raise ManifestError(f"{where}: {field_path}.env[{k}].name: {shown(e['name'])} is not a valid environment "
                                "variable name: letters, digits, '_', '-' and '.', not starting with a digit")
        value = e.get("value", "")
        if not isinstance(value, str | None):
            raise ManifestError(f"{where}: {field_path}.env[{k}].value: must be a string, got {shown(value)} "
                                f"(quote it: \"{value}\")")
        if value and "\x00" in value:
            raise ManifestError(f"{where}: {field_path}.env[{k}].value: holds a NUL byte, which no process "
                                "environment can")
        env.append((e["name"], value or ""))
    ports = []
    for k, p in enumerate(_list(raw.get("ports"), where, f"{field_path}.ports")):
        pf = f"{field_path}.ports[{k}]"
        if not isinstance(p, dict):
            raise ManifestError(f"{where}: {pf}: must be a mapping")
        cport = p.get("containerPort")
        if not _is_port(cport):
            raise ManifestError(f"{where}: {pf}.containerPort: must be a port number 1-65535, got {shown(cport)}")
        hport = p.get("hostPort")
        if hport is not None and not _is_port(hport):
            raise ManifestError(f"{where}: {pf}.hostPort: must be a port number 1-65535, got {shown(hport)}")
        proto = str(p.get("protocol", "TCP"))
        if proto not in PROTOCOLS:
            raise ManifestError(f"{where}: {pf}.protocol: must be one of {', '.join(PROTOCOLS)}, got {shown(proto)}")
        host_ip = _host_ip(p.get("hostIP"), where, f"{pf}.hostIP")
        port_name = p.get("name")
        if port_name is not None and not isinstance(port_name, str):
            raise ManifestError(f"{where}: {pf}.name: must be a string, got {shown(port_name)}")
        ports.append(Port(container_port=cport, host_port=hport, protocol=proto, host_ip=host_ip, name=port_name))
    return Container(name=raw["name"], image=raw["image"], env=tuple(env), ports=tuple(ports))


def _check_name(name: str, where: str, field_path: str) -> None:
    """A Kubernetes object name: a lower-case RFC 1123 subdomain of at most 253 characters."""
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        raise ManifestError(f"{where}: {field_path}: {name[:80]!r} is not a valid name: use lower-case letters, "
                            "digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters")


def _namespace(meta: dict, where: str, field_path: str) -> str:
    """metadata.namespace (default "default"): a lower-case RFC 1123 label of at most 63 characters."""
    namespace = meta.get("namespace") or "default"
    if not isinstance(namespace, str) or len(namespace) > 63 or not DNS_LABEL.fullmatch(namespace):
        raise ManifestError(f"{where}: {field_path}: {str(namespace)[:80]!r} is not a valid namespace: use "
                            "lower-case letters, digits and '-', at most 63 characters")
    return namespace


def _label_key(key: str) -> bool:
    """A label key as the API server checks it: an optional DNS-subdomain prefix and '/', then a name."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(LABEL_VALUE.fullmatch(name))


def _host_ip(value: Any, where: str, field_path: str) -> str | None:
    """hostIP: an IP address, or absent."""
    if value is None or value == "":
        return None
    try:
        ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        raise ManifestError(f"{where}: {field_path}: must be an IP address such as 0.0.0.0 or 172.18.0.3, "
                            f"got {shown(value)}") from None
    return value


def _is_port(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _deployment(doc: dict, where: str) -> Deployment:
    meta = _mapping(doc.get("metadata"), where, "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: metadata.name: is required")
    spec = _mapping(doc.get("spec"), where, "spec")
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ManifestError(f"{where}: spec.replicas: must be a whole number >= 0, got {shown(replicas)}")
    if "template" not in spec:
        raise ManifestError(f"{where}: spec.template: is required")
    template = _pod(_mapping(spec["template"], where, "spec.template"), where, "spec.template.", template=True)
    selector = _mapping(_mapping(spec.get("selector"), where, "spec.selector").get("matchLabels"),
                        where, "spec.selector.matchLabels")
    if not selector:
        raise ManifestError(f"{where}: spec.selector.matchLabels: is required")
    if any(template.labels.get(k) != v for k, v in selector.items()):
        raise ManifestError(f"{where}: spec.template.metadata.labels: must match spec.selector.matchLabels")
    _check_name(name, where, "metadata.name")
    namespace = _namespace(meta, where, "metadata.namespace")
    labels = _labels(meta, where, "metadata.labels")
    return Deployment(name=name, namespace=namespace, replicas=replicas, template=template,
                      labels=labels, source=where)


def _labels(meta: dict, where: str, field_path: str) -> dict[str, str]:
    """metadata.labels: a mapping of strings to strings (the API server refuses numbers and booleans)."""
    labels = _mapping(meta.get("labels"), where, field_path)
    for key, value in labels.items():
        if not isinstance(key, str) or not _label_key(key):
            raise ManifestError(f"{where}: {field_path}: {shown(key)} is not a valid label key: [prefix/]name, "
                                "the name at most 63 letters, digits, '-', '_' or '.'")
        if not isinstance(value, str):
            raise ManifestError(f"{where}: {field_path}.{key}: must be a string, got {shown(value)} "
                                f"(quote it: \"{value}\")")
        if len(value) > 63 or not LABEL_VALUE.fullmatch(value):
            raise ManifestError(f"{where}: {field_path}.{key}: {shown(value)} is not a valid label value: at most "
                                "63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
    return dict(labels)
