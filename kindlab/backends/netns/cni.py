"""The CNI runtime: libcni's job, as containerd's CRI plugin uses it, run in a node's view.

- The network config is chosen as containerd does: the .conf/.conflist/.json files of the node's
  /etc/cni/net.d in byte order, the first one is used, and an invalid first file leaves no network
  (model.cni states the rule).
- Plugins are found in the node's /opt/cni/bin and run inside the node's namespaces, with the
  CNI_* environment and the config on stdin: `name`, `cniVersion`, `prevResult`, `runtimeConfig`
  (each capability the plugin declares that the runtime has an argument for: portMappings from the pod's
  hostPorts, dns, the pod's annotations) injected and `capabilities` removed.
- ADD runs the chain in order; its result is cached where and as libcni caches it: the node's
  /var/lib/cni/results/<network>-<sandbox>-<ifname> (folder 0700, file 0600), a compact JSON object of kind
  cniCacheV1 with containerId, config (base64 of the list's bytes; a .conf wrapped into a list as libcni's
  ConfListFromConf writes it), ifName, networkName, cniArgs ([[key, value], ...]), capabilityArgs and result,
  the loopback's too (cni-loopback-<sandbox>-lo). DEL runs in reverse order with the cached result and the
  config found now (as containerd does: a record made under another network name outlives its sandbox);
  CHECK runs in order with the cached result. capabilityArgs holds what containerd 1.7 passes: the pod's DNS
  and annotations (with the kubelet's config.seen and config.source), and its hostPorts with go-cni's keys
  (HostPort, ContainerPort, Protocol, HostIP).
- Errors read as libcni's and containerd's: `plugin type="portmap" failed (add): failed to find
  plugin "portmap" in path [/opt/cni/bin]`, a plugin's JSON error gives its `msg`.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ...model import cni as cni_rules
from ...model.cni import NetworkConfig
from ...model.pods import port_mappings
from . import tools
from .names import STD_PATH
from .nodes import NodeView

__all__ = ["CniError", "Exec", "PodNetwork", "Runtime", "load_network", "node_exec", "pod_ip", "port_mappings"]

CNI_PATH = cni_rules.CNI_BIN
CONF_DIR = cni_rules.NET_D
#: libcni's cache of what it set up (its CacheDir, /var/lib/cni, and "results"), in the node.
CACHE_DIR = "/var/lib/cni/results"
CACHE_KIND = "cniCacheV1"
#: The capability under which containerd hands a plugin the pod's annotations.
POD_ANNOTATIONS = "io.kubernetes.cri.pod-annotations"
LOOPBACK = {"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}
#: go-cni's loopback list, byte for byte (as containerd caches it).
LOOPBACK_BYTES = b'{\n"cniVersion": "0.3.1",\n"name": "cni-loopback",\n"plugins": [{\n  "type": "loopback"\n}]\n}'
PLUGIN_TIMEOUT = 60.0


class CniError(Exception):
    """A CNI failure, worded as the runtime reports it."""


@dataclass
class PodNetwork:
    """What the runtime knows about the pod whose network it sets up."""

    sandbox_id: str
    netns: str
    pod_name: str
    pod_namespace: str
    pod_uid: str
    port_mappings: list[dict[str, Any]] = field(default_factory=list)
    ifname: str = "eth0"
    dns: dict[str, list[str]] | None = None
    annotations: dict[str, str] | None = None

    def capability_args(self) -> dict[str, Any]:
        """libcni's RuntimeConf.CapabilityArgs as containerd 1.7 fills them (cniNamespaceOpts): the pod's
        annotations always, its hostPorts and DNS when it has them; keys in Go's order for a map (sorted)."""
        args: dict[str, Any] = {"dns": self.dns, POD_ANNOTATIONS: self.annotations, "portMappings": self.port_mappings}
        return {k: v for k, v in sorted(args.items()) if v or (k == POD_ANNOTATIONS and v is not None)}

    def cni_arg_pairs(self) -> list[list[str]]:
        """CNI_ARGS as libcni's RuntimeConf.Args: [key, value] pairs."""
        return [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", self.pod_namespace], ["K8S_POD_NAME", self.pod_name],
                ["K8S_POD_INFRA_CONTAINER_ID", self.sandbox_id], ["K8S_POD_UID", self.pod_uid]]

    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.cni_arg_pairs())


class Exec(Protocol):
    """How the runtime runs a plugin (libcni's invoke.Exec): argv, stdin and environment in, result out.

    It raises CniError when the plugin cannot be run or does not finish in time.
    """

    def __call__(self, argv: list[str], stdin: bytes, env: dict[str, str],
                 timeout: float) -> subprocess.CompletedProcess: ...


def node_exec(view: NodeView) -> Exec:
    """Run plugins inside the node's namespaces, through the backend's one command runner."""
    def run(argv: list[str], stdin: bytes, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        try:
            return tools.run([*view.enter(), *argv], f"CNI plugin {argv[0]}", input=stdin, env=env,
                                timeout=timeout, check=False)
        except tools.TimedOut:
            raise CniError(f"plugin {argv[0]} timed out after {timeout:g}s") from None
    return run


def load_network(root: Path) -> NetworkConfig:
    """The network containerd would use in the node seen at `root`: model.cni's choice; CniError when none."""
    choice = cni_rules.choose_in(root / CONF_DIR.lstrip("/"))
    if choice.chosen is None:
        raise CniError(cni_rules.NOT_INITIALIZED)
    return choice.chosen


def loopback() -> NetworkConfig:
    """The loopback network the runtime sets up first in every sandbox."""
    return NetworkConfig("", LOOPBACK["name"], LOOPBACK["cniVersion"], [LOOPBACK], raw=LOOPBACK_BYTES)


def list_bytes(net: NetworkConfig) -> bytes:
    """The bytes libcni caches as a network's config: a .conflist's own, or a single config wrapped into a list
    as ConfListFromConf marshals it (Go's encoding/json: sorted keys, compact, <>& escaped)."""
    if net.file.endswith(".conflist") or not net.file:
        return net.raw
    wrapped = {"cniVersion": net.cni_version, "name": net.name, "plugins": net.plugins}
    text = json.dumps(wrapped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def describe(plugin: dict[str, Any]) -> str:
    """libcni's description of a plugin in an error."""
    out = f'type="{plugin.get("type")}"'
    return out + (f' name="{plugin["name"]}"' if plugin.get("name") else "")


def plugin_error(done: subprocess.CompletedProcess) -> str:
    """A failed plugin's message, as libcni extracts it."""
    out, err = done.stdout.strip(), done.stderr.strip()
    if not out:
        if err:
            return f"netplugin failed: {json.dumps(err.decode(errors='replace'))}"
        return f"netplugin failed with no error message: exit status {done.returncode}"
    try:
        e = json.loads(out)
        msg = str(e["msg"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"netplugin failed but error parsing its diagnostic message {json.dumps(out.decode())}: {exc}"
    return f"{msg}; {e['details']}" if e.get("details") else msg


def version_at_least(version: str, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in v.split("."))
        except ValueError:
            return (0,)
    return parts(version or "0.1.0") >= parts(minimum)


class Runtime:
    """The CNI runtime of one node."""

    def __init__(self, view: NodeView, run: Exec | None = None):
        self.view = view
        self.cache = view.root / CACHE_DIR.lstrip("/")
        self.run = run or node_exec(view)

    # -- containerd's calls -------------------------------------------------------------------
    def setup(self, pod: PodNetwork) -> dict[str, Any]:
        """Loopback, then the chosen network's chain; returns the result. CniError in containerd's words."""
        try:
            net = load_network(self.view.root)
            self.add_list(loopback(), pod, "lo")
            return self.add_list(net, pod, pod.ifname)
        except CniError as exc:
            raise CniError(f'failed to setup network for sandbox "{pod.sandbox_id}": {exc}') from None

    def teardown(self, pod: PodNetwork) -> None:
        """DEL with the config found now and the cached result; CniError in containerd's words."""
        try:
            net = load_network(self.view.root)
            self.del_list(net, pod, pod.ifname)
            self.del_list(loopback(), pod, "lo")
        except CniError as exc:
            raise CniError(f'failed to destroy network for sandbox "{pod.sandbox_id}": {exc}') from None

    def check(self, pod: PodNetwork) -> None:
        """CHECK the chain against the cached result (CNI >= 0.4.0)."""
        net = load_network(self.view.root)
        if not version_at_least(net.cni_version, "0.4.0"):
            raise CniError(f"configuration version {net.cni_version!r} does not support the CHECK command")
        cached = self.cached_result(net.name, pod, pod.ifname)
        if cached is None:
            raise CniError(f'failed to get network "{net.name}" cached result')
        for plugin in net.plugins:
            try:
                self.exec_plugin(plugin, "CHECK", net, pod, pod.ifname, cached)
            except CniError as exc:
                raise CniError(f"plugin {describe(plugin)} failed (check): {exc}") from None

    # -- libcni ------------------------------------------------------------------------------------
    def add_list(self, net: NetworkConfig, pod: PodNetwork, ifname: str, cache: bool = True) -> dict[str, Any]:
        prev: dict[str, Any] | None = None
        for plugin in net.plugins:
            try:
                prev = self.exec_plugin(plugin, "ADD", net, pod, ifname, prev)
            except CniError as exc:
                raise CniError(f"plugin {describe(plugin)} failed (add): {exc}") from None
        result = prev or {}
        if cache:
            self.write_cache(net, pod, ifname, result)
        return result

    def write_cache(self, net: NetworkConfig, pod: PodNetwork, ifname: str, result: dict[str, Any]) -> None:
        """libcni's cacheAdd: the record of what was set up, in its format, folder 0700 and file 0600."""
        entry: dict[str, Any] = {"kind": CACHE_KIND, "containerId": pod.sandbox_id,
                                 "config": base64.b64encode(list_bytes(net)).decode(), "ifName": ifname,
                                 "networkName": net.name, "cniArgs": pod.cni_arg_pairs()}
        capability_args = pod.capability_args()
        if capability_args:     # omitempty, as libcni's
            entry["capabilityArgs"] = capability_args
        if result:
            entry["result"] = result
        self.cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._cache_file(net.name, pod, ifname)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(entry, separators=(",", ":"), ensure_ascii=False))

    def del_list(self, net: NetworkConfig, pod: PodNetwork, ifname: str) -> None:
        cached = self.cached_result(net.name, pod, ifname) if version_at_least(net.cni_version, "0.4.0") else None
        for plugin in reversed(net.plugins):
            try:
                self.exec_plugin(plugin, "DEL", net, pod, ifname, cached)
            except CniError as exc:
                raise CniError(f"plugin {describe(plugin)} failed (delete): {exc}") from None
        self._cache_file(net.name, pod, ifname).unlink(missing_ok=True)

    def cached_result(self, network: str, pod: PodNetwork, ifname: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._cache_file(network, pod, ifname).read_text())["result"]
        except (OSError, ValueError, KeyError):
            return None

    def orphans(self, known: set[str]) -> list[PodNetwork]:
        """Pods whose network was set up (a cached result) by sandboxes nobody knows any more."""
        out = []
        for path in sorted(self.cache.glob("*")) if self.cache.exists() else []:
            try:
                entry = json.loads(path.read_text())
                args = {str(k): str(v) for k, v in entry.get("cniArgs") or []}
                sandbox_id = entry["containerId"]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if sandbox_id in known or entry.get("ifName") != "eth0":
                continue
            caps = entry.get("capabilityArgs") or {}
            out.append(PodNetwork(sandbox_id=sandbox_id, netns="", pod_name=args.get("K8S_POD_NAME", ""),
                                  pod_namespace=args.get("K8S_POD_NAMESPACE", ""), pod_uid=args.get("K8S_POD_UID", ""),
                                  port_mappings=caps.get("portMappings") or [], dns=caps.get("dns"),
                                  annotations=caps.get(POD_ANNOTATIONS)))
        return out

    def _cache_file(self, network: str, pod: PodNetwork, ifname: str) -> Path:
        return self.cache / f"{network}-{pod.sandbox_id}-{ifname}"

    def find(self, plugin_type: str) -> str:
        """The plugin's path in the node's CNI_PATH, or libcni's error."""
        for folder in CNI_PATH.split(":"):
            candidate = self.view.root / folder.lstrip("/") / plugin_type
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return f"{folder}/{plugin_type}"
        raise CniError(cni_rules.missing_plugin_error(plugin_type, CNI_PATH))

    def exec_plugin(self, plugin: dict[str, Any], command: str, net: NetworkConfig, pod: PodNetwork, ifname: str,
                    prev: dict[str, Any] | None) -> dict[str, Any] | None:
        """Run one plugin in the node's namespaces; its parsed result for ADD."""
        path = self.find(str(plugin["type"]))
        conf = {k: v for k, v in plugin.items() if k != "capabilities"}
        conf["name"], conf["cniVersion"] = net.name, net.cni_version
        if prev is not None:
            conf["prevResult"] = prev
        # libcni's injectRuntimeConfig: each capability the plugin declares, that the runtime has an argument for
        capability_args, declared = pod.capability_args(), plugin.get("capabilities") or {}
        runtime_config = {k: v for k, v in capability_args.items() if declared.get(k) is True}
        if runtime_config:
            conf["runtimeConfig"] = runtime_config
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": pod.sandbox_id, "CNI_NETNS": pod.netns,
               "CNI_IFNAME": ifname, "CNI_ARGS": pod.cni_args(), "CNI_PATH": CNI_PATH, "PATH": STD_PATH}
        done = self.run([path], json.dumps(conf).encode(), env, PLUGIN_TIMEOUT)
        if done.returncode != 0:
            raise CniError(plugin_error(done))
        if command != "ADD":
            return None
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise CniError(f"failed to parse the result of {path}: {done.stdout[:200]!r}") from None


def pod_ip(result: dict[str, Any]) -> str | None:
    """The first IPv4 address of a CNI result, without its prefix length."""
    for ip in result.get("ips", []) or []:
        address = str(ip.get("address", "")).split("/")[0]
        if address and ":" not in address:
            return address
    return None
