"""The model's container starts as its runtime pushes them, the counterpart of containerd's task-start events.

The agent appends one JSON line per container start to the lab's `runtime-events.jsonl` the moment the
container's process starts; `ContainerFollower` reads the lines written while it is open, as `ctr events`
follows containerd, and keeps when each reached kindlab.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from ...capabilities import ContainerStart, ContainerStarts

FILE = "runtime-events.jsonl"
#: How often the follower looks for new lines (s).
FOLLOW = 0.005


def append(root: Path, container_id: str, at: float) -> None:
    """Record a container's start (the agent, at that moment)."""
    with (root / FILE).open("a") as f:
        f.write(json.dumps({"topic": "/tasks/start", "container_id": container_id, "at": round(at, 6)}) + "\n")


class ContainerFollower(ContainerStarts):
    """The starts recorded while open (a context manager), by container id."""

    pushed = True

    def __init__(self, root: Path):
        super().__init__()
        self.path = root / FILE
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._follow, daemon=True, name="kindlab-container-starts")
        self.offset = 0

    def __enter__(self) -> ContainerFollower:
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self.reader.start()
        return self

    def _follow(self) -> None:
        pending = ""
        while not self.stop.is_set():
            try:
                with self.path.open() as f:
                    f.seek(self.offset)
                    chunk = f.read()
            except OSError:
                chunk = ""
            if chunk:
                arrived = time.time()
                self.offset += len(chunk.encode())
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    try:
                        event = json.loads(line)
                        self.seen(str(event["container_id"]), ContainerStart(arrived, float(event["at"])))
                    except (ValueError, KeyError, TypeError):
                        continue
            self.stop.wait(FOLLOW)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.reader.join(timeout=5)
