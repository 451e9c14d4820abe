"""cni-cache: was each running pod's sandbox set up with the config the runtime picks now, chaining portmap?

libcni keeps a record of every network it set up, `/var/lib/cni/results/<networkName>-<containerID>-<ifName>`:
one JSON object of kind ``cniCacheV1`` with the sandbox's ``containerId``, the network ``config`` it used
(base64 of its bytes; a single .conf is first wrapped into a list), ``ifName``, ``networkName``, ``cniArgs``
(``[[key, value], ...]``: K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID and, from containerd
1.5, K8S_POD_UID), ``capabilityArgs`` and ``result``. A sandbox keeps its network until it is gone, so a pod
whose record lacks portmap while the runtime now picks a chained config (worker3 after its conflist arrived)
has a dead hostPort until it is recreated. The records are matched to pods by cniArgs (namespace, name and,
where both have it, the pod's UID: a recreated pod's old record can outlive it), then by the pod's IP.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..cluster import Cluster
from ..errors import ExecError
from ..model import pods as pod_rules
from ..model.cni import NetworkConfig, parse_config
from . import fixes
from .checks import finding
from .nodes import NodeState

CHECK = "cni-cache"
RESULTS = "/var/lib/cni/results"
CACHE_KIND = "cniCacheV1"
#: A record larger than this is not read whole (libcni's are a few kB).
MAX_BYTES = 1 << 20
#: Prints each regular file of RESULTS as `#kindlab file SIZE NAME` and its first MAX_BYTES bytes in base64.
READ_SCRIPT = (f"cd {RESULTS} 2>/dev/null || {{ echo '#kindlab none'; exit 0; }}; for f in *; do "
               "[ -f \"$f\" ] || continue; echo \"#kindlab file $(wc -c < \"$f\") $f\"; "
               f"head -c {MAX_BYTES} \"$f\" | base64; done")


class CacheError(ValueError):
    """A file of the cache that is no record libcni could read back."""


@dataclass(frozen=True)
class CacheRecord:
    """One record of libcni's cache: which sandbox, which network, set up with which config, for which pod."""

    file: str
    container_id: str
    network: str
    if_name: str
    config: NetworkConfig
    args: dict[str, str] = field(default_factory=dict)
    ips: tuple[str, ...] = ()

    @property
    def pod(self) -> tuple[str, str]:
        """(namespace, name) from cniArgs; empty strings where it has none."""
        return self.args.get("K8S_POD_NAMESPACE", ""), self.args.get("K8S_POD_NAME", "")

    @property
    def pod_uid(self) -> str | None:
        return self.args.get("K8S_POD_UID")


# -- reading -----------------------------------------------------------------------------------
def read_cache(lab: Cluster, node: str) -> dict[str, bytes | str] | None:
    """The files of the node's RESULTS: name -> bytes, or why it could not be read whole; None when the folder
    is missing or cannot be listed."""
    try:
        text = lab.exec(node, ["sh", "-c", READ_SCRIPT], check=False)
    except ExecError:
        return None
    if not text.startswith("#kindlab file "):
        return None if text.startswith("#kindlab none") or text.strip() else {}
    files: dict[str, bytes | str] = {}
    chunks: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("#kindlab file "):
            size, _, name = line.removeprefix("#kindlab file ").lstrip().partition(" ")   # wc may pad
            chunks[name] = []
            files[name] = f"{size.strip()} bytes, more than the {MAX_BYTES} read" if _too_big(size) else b""
        elif chunks:
            next(reversed(chunks.values())).append(line.strip())
    for name, lines in chunks.items():
        if isinstance(files[name], bytes):
            try:
                files[name] = base64.b64decode("".join(lines), validate=True)
            except (binascii.Error, ValueError) as exc:
                files[name] = f"unreadable through the node's shell ({exc})"
    return files


def _too_big(size: str) -> bool:
    return not size.strip().isdigit() or int(size) > MAX_BYTES


def _cached_config(raw: bytes, file: str) -> NetworkConfig:
    """The network config a record holds: a list (what AddNetworkList caches) or a single plugin's config."""
    try:
        doc = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        doc = None
    kind = ".conflist" if isinstance(doc, dict) and "plugins" in doc else ".conf"
    return parse_config(file + kind, raw)


def parse_record(file: str, raw: bytes) -> CacheRecord:
    """One cache file as libcni reads it back; CacheError saying why it cannot be."""
    try:
        doc = json.loads(raw.decode("utf-8", "replace"))
    except ValueError as exc:
        raise CacheError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CacheError("not a JSON object")
    if doc.get("kind") != CACHE_KIND:
        raise CacheError(f"its kind is {doc.get('kind')!r}, not {CACHE_KIND!r}")
    texts = {key: doc.get(key) for key in ("containerId", "networkName", "ifName", "config")}
    missing = [key for key, value in texts.items() if not isinstance(value, str) or not value]
    if missing:
        raise CacheError(f"no {', '.join(missing)}")
    try:
        config_bytes = base64.b64decode(str(texts["config"]), validate=True)
    except (binascii.Error, ValueError):
        raise CacheError("its config is not base64") from None
    config = _cached_config(config_bytes, str(texts["networkName"]))
    if config.error:
        raise CacheError(f"its config is invalid: {config.error}")
    return CacheRecord(file, str(texts["containerId"]), str(texts["networkName"]), str(texts["ifName"]), config,
                       _args(doc.get("cniArgs")), _ips(doc.get("result")))


def _args(value: Any) -> dict[str, str]:
    """cniArgs, [[key, value], ...], as a dict (libcni omits it when empty)."""
    if value is None:
        return {}
    if not isinstance(value, list) or not all(isinstance(kv, list) and len(kv) == 2
                                              and all(isinstance(x, str) for x in kv) for kv in value):
        raise CacheError("its cniArgs are not a list of [key, value] strings")
    return {k: v for k, v in value}


def _ips(result: Any) -> tuple[str, ...]:
    """The addresses of a cached result, without prefix lengths."""
    ips = result.get("ips") if isinstance(result, dict) else None
    return tuple(str(ip["address"]).split("/")[0] for ip in ips or []
                 if isinstance(ip, dict) and isinstance(ip.get("address"), str))


# -- judging -------------------------------------------------------------------------------------
def same_network(a: NetworkConfig, b: NetworkConfig) -> bool:
    """True when two configs are one network: name, version and plugins equal (as JSON values, not bytes: libcni
    caches a single .conf wrapped into a list it writes itself)."""
    return (a.name, a.cni_version, a.plugins) == (b.name, b.cni_version, b.plugins)


def describe(config: NetworkConfig) -> str:
    return f"network {config.name} (plugins: {' -> '.join(config.types)})"


def _evidence(record: CacheRecord, others: int) -> str:
    uid = f", K8S_POD_UID {record.pod_uid}" if record.pod_uid else ""
    extra = f"; {others} other record(s) of a pod of this name, not this pod's sandbox" if others else ""
    return (f"{RESULTS}/{record.file}: containerId {record.container_id[:12]}, {describe(record.config)}"
            f"{uid}{extra}")


def _key(pod: dict[str, Any]) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return meta.get("namespace") or "default", meta.get("name") or ""


def matching(records: list[CacheRecord], pod: dict[str, Any]) -> list[CacheRecord]:
    """The records of the pod's live sandbox: its namespace and name in cniArgs, its UID where both have one,
    then its IP when several are left (a recreated pod's old record may hold the same IP, not the same UID)."""
    mine = [r for r in records if r.pod == _key(pod) and r.if_name != "lo"]
    uid = pod_rules.uid(pod)
    if uid:
        mine = [r for r in mine if r.pod_uid in (None, uid)]
    ip = pod_rules.pod_ip(pod)
    if len(mine) > 1 and ip and any(ip in r.ips for r in mine):
        mine = [r for r in mine if ip in r.ips]
    return mine


def judge(node: str, pod: str, record: CacheRecord, chosen: NetworkConfig | None, recreate: str,
          others: int = 0) -> dict[str, Any]:
    """The finding for one running pod's record against the config the runtime picks now."""
    had = record.config
    evidence = _evidence(record, others)
    where = f"Pod {pod}'s sandbox {record.container_id[:12]} was set up with {describe(had)}"
    if chosen is None:
        if had.chains_portmap:
            return finding(node, CHECK, True, f"{where}; it chains portmap (the runtime has no network now: see "
                           "cni-config).", evidence=evidence)
        return finding(node, CHECK, False, f"{where}, without portmap, and the runtime has no network now.",
                       f"First fix cni-config on {node}; then {recreate}.", evidence)
    now = f"the runtime now picks {chosen.file}, {describe(chosen)}"
    if same_network(had, chosen) and had.chains_portmap:
        return finding(node, CHECK, True, f"{where}, the config the runtime picks now ({chosen.file}); it chains "
                       "portmap.", evidence=evidence)
    if same_network(had, chosen):
        return finding(node, CHECK, False, f"{where}, the config the runtime picks now ({chosen.file}), which "
                       "does not chain portmap with portMappings: its hostPorts are not mapped.",
                       f"First fix cni-config on {node}; then {recreate}.", evidence)
    lacks = "without portmap, so its hostPorts were never mapped" if not had.chains_portmap else "chaining portmap"
    message = f"{where}, {lacks}; {now}. A running pod's network is not redone: it keeps the old config."
    if not chosen.chains_portmap:
        return finding(node, CHECK, False, message, f"First fix cni-config on {node}; then {recreate}.", evidence)
    return finding(node, CHECK, False, message,
                   f"{fixes.capitalized(recreate)}: its new sandbox is set up with {chosen.file}.", evidence)


def cache_findings(node: str, files: dict[str, bytes | str] | None, chosen: NetworkConfig | None,
                   pods: list[dict[str, Any]], recreate: Callable[[str], str]) -> list[dict[str, Any]]:
    """cni-cache's findings on one node: one per running pod of the node with a hostPort, one per unreadable
    record. `files`: read_cache's answer; `recreate(pod)`: the words that recreate a pod."""
    records, rows = [], []
    for name, raw in sorted((files or {}).items()):
        try:
            if isinstance(raw, str):
                raise CacheError(raw)
            records.append(parse_record(name, raw))
        except CacheError as exc:
            rows.append(finding(node, CHECK, False,
                                f"{RESULTS}/{name} is no cache record libcni can read back ({exc}); libcni reads "
                                "it at its sandbox's CHECK and DEL.",
                                f"If no running sandbox has the id in its name (<network>-<containerID>-<ifName>), "
                                f"remove it: rm {RESULTS}/{name} on {node}.", f"{RESULTS}/{name}: {exc}"))
    for pod in pods:
        name = pod["metadata"]["name"]
        if (pod_rules.node_name(pod) != node or pod_rules.phase(pod) != "Running"
                or not pod_rules.host_ports(pod)):
            continue
        mine = matching(records, pod)
        if not mine:
            seen = "no such folder" if files is None else f"{len(files)} file(s), none of this pod's sandbox"
            rows.append(finding(
                node, CHECK, True, f"Pod {name}: no record of its sandbox in {RESULTS} (the runtime keeps none "
                "there): which config it was set up with cannot be told.", evidence=f"{RESULTS}: {seen}"))
            continue
        others = sum(r.pod == _key(pod) and r.if_name != "lo" for r in records) - len(mine)
        judged = [judge(node, name, r, chosen, recreate(name), others) for r in mine]
        rows.append(next((j for j in judged if not j["ok"]), judged[0]))
    return rows


def check_cni_cache(lab: Cluster, state: NodeState, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """cni-cache on one node: each running hostPort pod's sandbox config against the runtime's choice now."""
    def recreate(pod: str) -> str:
        return f"delete and re-apply pod {pod} ({fixes.reapply(lab, pod)})"
    return cache_findings(state.name, read_cache(lab, state.name), state.chosen, pods, recreate)


RECORD_COLUMNS = ["node", "record", "pod", "pod uid", "sandbox", "network", "plugins", "chains portmap"]


def records(lab: Cluster, nodes: list[str] | None = None) -> pd.DataFrame:
    """The pods' records in each node's cache (not the loopback's), one row each (RECORD_COLUMNS); an unreadable
    one says why in `network`."""
    rows = []
    for node in nodes or lab.node_names():
        for name, raw in sorted((read_cache(lab, node) or {}).items()):
            try:
                if isinstance(raw, str):
                    raise CacheError(raw)
                r = parse_record(name, raw)
            except CacheError as exc:
                rows.append([node, name, "", "", "", f"(unreadable: {exc})", "", False])
                continue
            if r.if_name != "lo":
                rows.append([node, name, "/".join(r.pod), (r.pod_uid or "")[:8], r.container_id[:12], r.network,
                             " -> ".join(r.config.types), r.config.chains_portmap])
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)
