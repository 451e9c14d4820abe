"""Which Docker Engine kind and kindlab talk to: the machine's own where one answers, else kindlab's (engine.py).

On a reader's machine with Docker running (`DOCKER_HOST`, or the default socket), kindlab uses that Docker, as
kind does. Where none answers, the kind backend starts kindlab's own engine (`ensure`), in network and mount
namespaces of its own, and every tool it runs (kind, docker) gets `DOCKER_HOST` pointing at it (`env`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import engine as engine_mod

DEFAULT_SOCKET = Path("/var/run/docker.sock")
OWN = engine_mod.Engine(folder=Path(os.environ.get("KINDLAB_DOCKER_DIR", "/var/lib/kindlab-docker")),
                        netns="kindlab-docker",
                        data_root=Path(os.environ.get("KINDLAB_CACHE", "/var/cache/kindlab")) / "docker")


def machine_docker() -> str | None:
    """The address of a Docker Engine the machine runs itself ($DOCKER_HOST, else the default socket when it
    answers); None where there is none."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return None if host == OWN.url else host
    if DEFAULT_SOCKET.exists() and engine_mod.answers(f"unix://{DEFAULT_SOCKET}"):
        return f"unix://{DEFAULT_SOCKET}"
    return None


def own() -> bool:
    """True where kindlab uses (or would start) its own engine: the machine has no Docker of its own."""
    return machine_docker() is None


def url() -> str | None:
    """The engine's address, where there is one to talk to now."""
    machine = machine_docker()
    if machine:
        return machine
    return OWN.url if OWN.answers() else None


def answers() -> bool:
    """True when the engine kindlab would use answers now (without starting anything)."""
    return url() is not None


def ensure() -> str:
    """The engine's address, starting kindlab's own where the machine has none."""
    return machine_docker() or engine_mod.start(OWN).url


def env() -> dict[str, str]:
    """The environment for kind and docker: this one, with DOCKER_HOST where kindlab's own engine is used."""
    out = dict(os.environ)
    if own():
        out["DOCKER_HOST"] = OWN.url
    return out


def client(timeout: int = 60) -> Any:
    """A Docker SDK client on the engine kindlab uses."""
    import docker

    return docker.DockerClient(base_url=url() or OWN.url, timeout=timeout)


def netns() -> Path | None:
    """The network namespace the engine's containers are reached from: kindlab's engine's, or None (the host's)."""
    return OWN.netns_path if own() else None


def stop_own() -> list[str]:
    """Stop kindlab's own engine where it runs; what it could not remove."""
    if not own() or not (OWN.folder.exists() or OWN.netns_path.exists()):
        return []
    return engine_mod.stop(OWN)
