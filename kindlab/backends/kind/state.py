"""What kindlab keeps per kind cluster (its config, the host folders it made), and deleting a cluster."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from ...errors import KindlabError
from . import docker_host, tools
from .translate import translate_errors


def delete(name: str) -> bool:
    """`kind delete cluster --name NAME`, and remove the host folders kindlab made; False if there was none."""
    tools.require()
    created = load_state(name).get("created", [])
    exists = name in tools.kind_cluster_names()
    if exists:
        for entry in created:
            _empty_from_node(entry["node"], entry["path"])
        tools.run(tools.kind_delete(name), timeout=300)
    remove_created(created)
    forget(name)
    return exists


def state_dir() -> Path:
    """Where kindlab keeps per-cluster state: $KINDLAB_STATE_DIR, else ~/.local/state/kindlab; then kind/."""
    base = os.environ.get("KINDLAB_STATE_DIR") or Path.home() / ".local" / "state" / "kindlab"
    return Path(base) / "kind"


def save_state(name: str, config: Path | None, created: list[dict[str, str]], **more: Any) -> None:
    """Remember the config a cluster came from, the host folders kindlab made for it, and `more` (its CNI)."""
    path = state_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {"config": str(Path(config).resolve()) if config else None, "created": created, **more}
    path.write_text(json.dumps(saved, indent=2))


def update_state(name: str, **changes: Any) -> None:
    """Change some fields of the saved state of cluster `name`."""
    saved = load_state(name)
    path = state_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**saved, **changes}, indent=2))


def load_state(name: str) -> dict[str, Any]:
    """The saved state of cluster `name` ({} when there is none or it is unreadable)."""
    try:
        return json.loads((state_dir() / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}


def forget(name: str) -> None:
    """Drop the saved state of cluster `name`."""
    (state_dir() / f"{name}.json").unlink(missing_ok=True)


def _empty_from_node(node: str, path: str) -> None:
    """Empty a mounted folder from inside its node: what Cilium wrote there is root's, not ours."""
    try:
        with translate_errors(f"node {node}"):
            docker_host.client().containers.get(node).exec_run(["find", path, "-mindepth", "1", "-delete"])
    except KindlabError:
        pass  # the host-side removal below reports what is left


def remove_created(created: list[dict[str, str]]) -> None:
    """Remove the host folders kindlab made; warn (not fail) about one it cannot remove."""
    for entry in created:
        try:
            shutil.rmtree(entry["host"])
        except FileNotFoundError:
            pass
        except OSError as exc:
            warnings.warn(f"kindlab made {entry['host']} for {entry['node']}:{entry['path']} and cannot "
                          f"remove it ({exc}); remove it by hand", stacklevel=2)
