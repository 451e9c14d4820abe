"""The netns lab's node half: exec, cp and curl on its nodes (namespaces entered with nsenter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...cluster import HttpResponse
from ...errors import ClusterError, ExecError, NotFound
from . import files, tools
from .curl import curl as curl_from_host
from .names import STD_PATH, host_netns
from .nodes import NodeView

NOT_RUN = "nsenter: failed to execute "   # how nsenter says the command itself could not start


class LabNodes:
    """A lab's nodes as a NodeAccess; `views` maps node names to how to enter them."""

    def __init__(self, name: str, views: dict[str, NodeView], record: dict[str, Any]):
        self.name = name
        self.views = views
        self.record = record

    def view(self, node: str) -> NodeView:
        """How to reach `node`; NotFound naming the known nodes otherwise."""
        if node not in self.views:
            raise NotFound(f"cluster {self.name!r} has no node {node!r}; nodes are: {', '.join(self.views)}")
        return self.views[node]

    def exec(self, node: str, cmd: str | list[str], check: bool = True, input: str | bytes | None = None,
             timeout: float | None = 60) -> str:
        v = self.view(node)
        argv = [*v.enter(), *(["sh", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd])]
        env = {"PATH": STD_PATH, "HOSTNAME": node, "HOME": "/root", "LANG": "C.UTF-8"}
        try:
            done = tools.run(argv, f"exec in {node}", input=input, timeout=timeout or 3600, env=env, check=False)
        except tools.TimedOut as exc:
            raise ExecError(f"{node}: `{_show(cmd)}` did not finish in {timeout:g}s", returncode=124,
                            stdout=_text(exc.stdout), stderr=_text(exc.stderr)) from None
        out, err = _text(done.stdout), _text(done.stderr)
        if done.returncode in (126, 127) and err.startswith(NOT_RUN):
            first = err.splitlines()[0][len(NOT_RUN):]
            command, _, why = first.rpartition(": ")
            raise ExecError(f"{node}: cannot run {command!r}: {why.lower()} (in the node); give a program of the "
                            "node, e.g. kindlab exec NODE -- ls /", returncode=done.returncode)
        if check and done.returncode != 0:
            words = (err or out).strip() or "(no output)"
            raise ExecError(f"{node}: `{_show(cmd)}` exited with {done.returncode}: {words}",
                            returncode=done.returncode, stdout=out, stderr=err)
        return out

    def cp(self, src: str, dest: str) -> None:
        s_node, s_path = self._side(src)
        d_node, d_path = self._side(dest)
        if s_node and d_node:
            raise ClusterError("cp: copying between two nodes is not supported (docker cp neither); "
                               "copy to the host first")
        if not s_node and not d_node:
            raise ClusterError(f"cp: one of {src!r} and {dest!r} must be NODE:PATH, e.g. kind-worker:/etc/cni/net.d/")
        (s_real, s_root), (d_real, d_root) = self._real(s_node, s_path, src), self._real(d_node, d_path, dest)
        files.copy(s_real, d_real, src, dest, dest.endswith("/"), s_root, d_root)

    def _side(self, spec: str) -> tuple[str | None, str]:
        node, sep, path = spec.partition(":")
        if sep and "/" not in node and node:
            if node not in self.views:
                raise NotFound(f"cp: cluster {self.name!r} has no node {node!r}; nodes are: {', '.join(self.views)}")
            return node, path
        return None, spec

    def _real(self, node: str | None, path: str, spec: str) -> tuple[Path, Path]:
        """The host path of one side of cp, and the root of that side (a node's: /proc/<init>/root)."""
        if node is None:
            return Path(path).absolute(), files.HOST_ROOT
        v = self.views[node]
        if v.problems():
            raise ClusterError(f"cp: node {node} is not running ({'; '.join(v.problems())}); run up again")
        return files.in_node(v.root, path, spec), v.root

    def curl(self, url: str, timeout: float = 5.0) -> HttpResponse:
        return curl_from_host(host_netns(self.name), url, timeout, {v.name: v.ip for v in self.views.values()},
                              networks=made_ranges(self.record))


def made_ranges(record: dict[str, Any]) -> tuple[str, ...]:
    """The address ranges the lab made besides its node network: each node's pod CIDR, and the service range
    where real Kubernetes serves it (the model makes no services); never what a config merely names."""
    pods = tuple(n["pod_cidr"] for n in record.get("nodes", []) if n.get("pod_cidr"))
    return pods + ((record["service_subnet"],) if record.get("kubernetes") == "real" else ())


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _show(cmd: str | list[str]) -> str:
    return cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
