"""CNI configuration as libcni and containerd's CRI plugin (go-cni) read it, stated once.

containerd lists the `.conf`, `.conflist` and `.json` entries of `/etc/cni/net.d` that are not folders
(libcni's ConfFiles: hidden files too), sorts them in byte order and loads the first one. It does not
skip a broken file: when the first file is invalid the load fails, the node is left with the loopback
network only, and every new sandbox fails with "cni plugin not initialized" until the file is fixed
(go-cni's loadFromConfDir returns the error). A `.conflist` needs a name and a non-empty list of
plugins, each with a `type`; a `.conf`/`.json` is one plugin with a `type`. A chained portmap gets the
pod's hostPorts only when it declares `capabilities.portMappings`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CNI_BIN = "/opt/cni/bin"
NET_D = "/etc/cni/net.d"
CONF_EXTENSIONS = (".conf", ".conflist", ".json")
#: Where kindlab-cni stands in for Cilium, a mounted file of Cilium's (e.g. the seed's chained
#: 000-cilium-portmap.conflist) is replaced by kindlab-cni's beside it: the same name, "cilium" -> "kindlab".
STAND_IN_FROM, STAND_IN_TO = "cilium", "kindlab"


@dataclass
class NetworkConfig:
    """One file of /etc/cni/net.d as libcni parses it; `error` says why it is not valid."""

    file: str
    name: str = ""
    cni_version: str = ""
    plugins: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    raw: bytes = b""

    @property
    def valid(self) -> bool:
        """True when libcni would load it."""
        return self.error is None

    @property
    def types(self) -> list[str]:
        """The plugin types in chain order."""
        return [str(p.get("type")) for p in self.plugins]

    @property
    def portmap(self) -> dict[str, Any] | None:
        """The chained portmap plugin's config, if any."""
        return next((p for p in self.plugins if p.get("type") == "portmap"), None)

    @property
    def chains_portmap(self) -> bool:
        """True when portmap is chained with capabilities.portMappings, so it gets the pod's hostPorts."""
        pm = self.portmap
        return bool(pm and (pm.get("capabilities") or {}).get("portMappings") is True)


def parse_config(file: str, raw: bytes | str) -> NetworkConfig:
    """Parse one config file; an invalid one comes back with `error` set (this never raises)."""
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        doc = json.loads(data.decode("utf-8", "replace"))  # as Go's encoding/json: bad UTF-8 -> U+FFFD
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        return NetworkConfig(file, error=f"not valid JSON ({why}{where})", raw=data)
    if not isinstance(doc, dict):
        return NetworkConfig(file, error="not a JSON object", raw=data)
    name, version = doc.get("name"), str(doc.get("cniVersion", ""))
    if file.endswith(".conflist"):
        if not isinstance(name, str) or not name:
            return NetworkConfig(file, error="error parsing configuration list: no name", raw=data)
        plugins = doc.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            return NetworkConfig(file, name, version, error="error parsing configuration list: no plugins in list",
                                 raw=data)
        if not all(isinstance(p, dict) and p.get("type") for p in plugins):
            return NetworkConfig(file, name, version, error="error parsing configuration: missing 'type'", raw=data)
        return NetworkConfig(file, name, version, plugins, raw=data)
    if not doc.get("type"):
        return NetworkConfig(file, str(name or ""), version, error="error parsing configuration: missing 'type'",
                             raw=data)
    return NetworkConfig(file, str(name or ""), version, [doc], raw=data)


def config_order(names: Iterable[str]) -> list[str]:
    """The config files the runtime considers, in the order it tries them (byte order)."""
    return sorted((n for n in names if n.endswith(CONF_EXTENSIONS)), key=lambda n: n.encode())


@dataclass
class Choice:
    """What the runtime did with a node's /etc/cni/net.d: the config files it saw, in order, and its pick."""

    files: list[str]
    candidates: list[str]  # the config files read, in order: folders skipped, the first file
    first: NetworkConfig | None  # the first config file, parsed; None when there is none

    @property
    def chosen(self) -> NetworkConfig | None:
        """The config the runtime uses: the first candidate, when it is valid."""
        return self.first if self.first is not None and self.first.valid else None

    @property
    def rejected(self) -> NetworkConfig | None:
        """The first candidate when it is invalid: then the runtime has no network at all."""
        return self.first if self.first is not None and not self.first.valid else None

    @property
    def tried(self) -> list[NetworkConfig]:
        """The files the runtime parsed: only the first candidate."""
        return [self.first] if self.first is not None else []

    @property
    def chains_portmap(self) -> bool:
        """True when the chosen config chains portmap with capabilities.portMappings."""
        return bool(self.chosen and self.chosen.chains_portmap)

    @property
    def error(self) -> str | None:
        """Why the runtime has no network (containerd's log words), or None when it has one."""
        if self.first is None:
            return f"no network config found in {NET_D}"
        if self.rejected is not None:
            kind = "config list file" if self.rejected.file.endswith(".conflist") else "config file"
            return (f"failed to load CNI {kind} {NET_D}/{self.rejected.file}: {self.rejected.error}: "
                    "invalid cni config")
        return None


def choose(files: Iterable[str], read: Callable[[str], bytes | str | None]) -> Choice:
    """The runtime's choice among `files` (names in net.d). `read(name)` gives a file's bytes, or None for
    an entry that is a folder (libcni skips those); an OSError makes the file invalid."""
    names = list(files)
    candidates: list[str] = []
    first: NetworkConfig | None = None
    for name in config_order(names):
        try:
            raw = read(name)
        except OSError as exc:
            conf = NetworkConfig(name, error=f"error reading {NET_D}/{name}: {exc.strerror or exc}")
        else:
            if raw is None:
                continue
            conf = parse_config(name, raw)
        candidates.append(name)
        first = conf
        break  # the runtime reads the first config file only
    return Choice(names, candidates, first)


def choose_in(folder: Path) -> Choice:
    """The runtime's choice in a folder seen from here (a node's net.d through its root)."""
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        names = []

    def read(name: str) -> bytes | None:
        path = folder / name
        return None if path.is_dir() else path.read_bytes()
    return choose(names, read)


#: What a sandbox fails with while the runtime has no network (no config, or the first one invalid).
NOT_INITIALIZED = "cni plugin not initialized"


def missing_plugin_error(plugin_type: str, path: str = CNI_BIN) -> str:
    """libcni's words when a plugin of the chain is not in CNI_PATH."""
    return f'failed to find plugin "{plugin_type}" in path [{path.replace(":", " ")}]'


def stand_in(host: Path, container: str) -> tuple[Path, str] | None:
    """kindlab-cni's file for a mounted file of Cilium's, where one is beside it: (its host path, its path in the
    node); None for any other mount."""
    if STAND_IN_FROM not in host.name:
        return None
    sibling = host.with_name(host.name.replace(STAND_IN_FROM, STAND_IN_TO))
    if not sibling.exists():
        return None
    target = Path(container)
    return sibling, str(target.with_name(target.name.replace(STAND_IN_FROM, STAND_IN_TO)))
