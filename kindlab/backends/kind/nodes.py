"""The kind backend's node half: exec, cp and curl on kind's node containers, through the Docker SDK."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...cluster import HttpResponse
from ...errors import ExecError, KindlabError, NotFound
from . import archive, curl, docker_host
from .translate import edge

#: Where stdin is staged in a node. Not /tmp: kind mounts a tmpfs on /tmp and /run, and Docker's archive API
#: (put_archive/get_archive, as of 20.10) works beneath such a mount, in the container's layer, where the node's
#: processes never see it. /var is a volume, which the archive API does mount.
STDIN_FOLDER = "/var/tmp"
TIMEOUT_EXIT = 124  # coreutils `timeout` when the command ran out of time


@dataclass(frozen=True)
class ExecResult:
    """A finished command in a node."""

    returncode: int
    stdout: str
    stderr: str


def exec_argv(cmd: str | list[str], timeout: float | None = None, stdin_file: str | None = None) -> list[str]:
    """The argv `docker exec` runs: a string under `sh -c`; optional stdin file and coreutils timeout."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
    if stdin_file:
        # sh -c SCRIPT ARG0 ARGS...: run the command with stdin from the staged file, then remove it.
        script = f'"$0" "$@" < {stdin_file}; rc=$?; rm -f {stdin_file}; exit $rc'
        argv = ["sh", "-c", script, *argv]
    if timeout:
        argv = ["timeout", "-k", "5", f"{timeout:g}", *argv]
    return argv


def is_docker_desktop(info: dict[str, Any], platform: str = sys.platform) -> bool:
    """True where the host cannot route to container IPs: Docker Desktop, rootless Docker (its network lives
    in a namespace of its own: `docker info` lists `name=rootless`), or any non-Linux host."""
    rootless = any("name=rootless" in str(o) for o in info.get("SecurityOptions") or [])
    return platform != "linux" or rootless or "Docker Desktop" in str(info.get("OperatingSystem", ""))


class DockerNodes:
    """kind's node containers as a NodeAccess: `docker exec`, `docker cp` and curl toward their addresses."""

    def __init__(self, name: str, node_names: Callable[[], list[str]], docker_client: Any = None):
        self.name = name
        self._node_names = node_names
        self._docker = docker_client
        #: The engine is the one kindlab uses (docker_host), not a client handed in (tests, a Docker Desktop).
        self._own_client = docker_client is None
        self.curl_from_node: bool | None = None  # None: decide on first curl

    @property
    def docker(self) -> Any:
        """The Docker SDK client (imported lazily, so that `import kindlab` needs no docker package)."""
        if self._docker is None:
            self._docker = docker_host.client()
        return self._docker

    def _container(self, node: str) -> Any:
        names = self._node_names()
        if node not in names:
            raise NotFound(f"cluster {self.name!r} has no node {node!r}; nodes are: {', '.join(names)}")
        return self.docker.containers.get(node)

    @edge
    def exec_result(self, node: str, cmd: str | list[str], input: str | bytes | None = None,
                    timeout: float | None = 60) -> ExecResult:
        """Run a command in a node and return its exit code and output, whatever the exit code."""
        container = self._container(node)
        stdin_file = self._stage_stdin(container, input) if input is not None else None
        code, (out, err) = container.exec_run(exec_argv(cmd, timeout, stdin_file), demux=True)
        return ExecResult(code, (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace"))

    def _stage_stdin(self, container: Any, data: str | bytes) -> str:
        name = f"kindlab-stdin-{uuid.uuid4().hex[:12]}"
        raw = data.encode() if isinstance(data, str) else data
        container.put_archive(STDIN_FOLDER, archive.pack_bytes({name: raw}))
        return f"{STDIN_FOLDER}/{name}"

    @edge
    def exec(self, node: str, cmd: str | list[str], check: bool = True, input: str | bytes | None = None,
             timeout: float | None = 60) -> str:
        result = self.exec_result(node, cmd, input=input, timeout=timeout)
        if check and result.returncode != 0:
            shown = cmd if isinstance(cmd, str) else " ".join(cmd)
            why = (f"timed out after {timeout:g}s" if timeout and result.returncode == TIMEOUT_EXIT
                   else f"exited {result.returncode}")
            detail = (result.stderr or result.stdout).strip()
            raise ExecError(f"{node}: `{shown}` {why}" + (f": {detail}" if detail else ""),
                            returncode=result.returncode, stdout=result.stdout, stderr=result.stderr)
        return result.stdout

    @edge
    def cp(self, src: str, dest: str) -> None:
        source, target = archive.parse_location(src), archive.parse_location(dest)
        if source.node is None and target.node is None:
            raise KindlabError(f"cp {src} {dest}: one side must be NODE:PATH, as with docker cp")
        for loc in (source, target):
            if loc.node:
                self._check_not_tmpfs(loc.node, loc)
        data, name = self._read(source)
        if target.node is None:
            host_folder, new_name = archive.host_target(target.path, name)
            archive.unpack(archive.rename_top(data, name, new_name), host_folder)
        else:
            node_folder, new_name = archive.node_target(target, name, self._is_dir(target))
            self._container(target.node).put_archive(node_folder, archive.rename_top(data, name, new_name))

    def _check_not_tmpfs(self, node: str, loc: archive.Location) -> None:
        """KindlabError for a path of `node` under a tmpfs (kind's /tmp, /run): Docker would copy beneath it, unseen."""
        attrs = self._container(node).attrs
        mounts = list((attrs.get("HostConfig") or {}).get("Tmpfs") or {})
        mounts += [m.get("Destination", "") for m in attrs.get("Mounts") or [] if m.get("Type") == "tmpfs"]
        for mount in mounts:
            if archive.is_under(loc.path, mount):
                raise KindlabError(f"cp {loc}: {mount} is a tmpfs in {node}, and Docker's archive API copies "
                                   f"beneath it, where the node never sees the files; use another folder, "
                                   f"e.g. {STDIN_FOLDER}")

    def _read(self, loc: archive.Location) -> tuple[bytes, str]:
        if loc.node is None:
            return archive.pack(Path(loc.path), loc.name), loc.name
        chunks, stat = self._container(loc.node).get_archive(loc.path)
        return b"".join(chunks), stat["name"]

    def _is_dir(self, loc: archive.Location) -> bool:
        assert loc.node is not None
        if loc.path.endswith("/"):
            return True
        return self.exec_result(loc.node, ["test", "-d", loc.path], timeout=None).returncode == 0

    # -- curl ------------------------------------------------------------------------------------
    @edge
    def curl(self, url: str, timeout: float = 5.0) -> HttpResponse:
        if self._own_client and (netns := docker_host.netns()) is not None:
            return curl.netns_get(netns, url, timeout)   # kindlab's engine: the nodes' network is its namespace
        if self.curl_from_node is None:
            self.curl_from_node = is_docker_desktop(self.docker.info())
        if not self.curl_from_node:
            try:
                return curl.host_get(url, timeout)
            except curl.Unroutable:
                self.curl_from_node = True
        return self._curl_in_node(url, timeout)

    def _curl_in_node(self, url: str, timeout: float) -> HttpResponse:
        """curl from the first node (the control plane), across the Docker network as the host would."""
        started = time.monotonic()
        result = self.exec_result(self._node_names()[0], curl.curl_argv(url, timeout), timeout=timeout + 10)
        return curl.from_curl(url, result.returncode, result.stdout, result.stderr, time.monotonic() - started)

