"""The lab's store: plain JSON files under /run/kindlab/labs/<lab>/, written atomically.

    lab.json           the lab record (topology, nodes, namespaces, backoff), written by `up`
    desired/<key>.json the pods users asked for (the API server's part), written by the lab client
    status/<key>.json  what the agent made of them (the kubelet's part), written by the agent only
    events.jsonl       the agent's events, a journal: one JSON line per event written or updated (the last
                       line of a name wins), compacted by the agent now and then
    generation         a counter the client bumps after each change; the agent polls it
    lock               flock for read-modify-write of desired pods and the generation
    agent.lock         held by the running agent: taking it without blocking means no agent runs
    processes          the ledger of the lab's long-lived processes (processes.keep), the sweep's only list
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ....model.pods import rfc3339


def timestamp(t: float | None = None) -> str:
    """RFC 3339 in seconds, as Kubernetes writes timestamps."""
    return rfc3339(time.time() if t is None else t)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` atomically (write a sibling, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True))


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in `path`, or `default` when it is missing or half-written."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return default


class Store:
    """One lab's files."""

    def __init__(self, root: Path):
        self.root = root
        self.desired = root / "desired"
        self.status = root / "status"

    def create(self) -> None:
        """Make the folders of a new lab."""
        for d in (self.root, self.desired, self.status, self.root / "nodes", self.root / "pods", self.root / "ns"):
            d.mkdir(parents=True, exist_ok=True)

    @property
    def exists(self) -> bool:
        return (self.root / "lab.json").exists()

    # -- the lab record ------------------------------------------------------------
    def read_lab(self) -> dict[str, Any] | None:
        return read_json(self.root / "lab.json")

    def write_lab(self, record: dict[str, Any]) -> None:
        write_json(self.root / "lab.json", record)

    # -- change notification ---------------------------------------------------------
    def generation(self) -> int:
        try:
            return int((self.root / "generation").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def bump(self) -> None:
        """Tell the agent something changed (call with the lock held)."""
        write_json(self.root / "generation", self.generation() + 1)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock for read-modify-write of desired pods."""
        with open(self.root / "lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- pods --------------------------------------------------------------------------
    def desired_pods(self) -> dict[str, dict[str, Any]]:
        """Desired pods by key."""
        out = {}
        for path in sorted(self.desired.glob("*.json")):
            doc = read_json(path)
            if doc is not None:
                out[path.stem] = doc
        return out

    def desired_pod(self, key: str) -> dict[str, Any] | None:
        return read_json(self.desired / f"{key}.json")

    def put_desired(self, key: str, doc: dict[str, Any]) -> None:
        write_json(self.desired / f"{key}.json", doc)

    def remove_desired(self, key: str, uid: str | None = None) -> None:
        """Remove a desired pod (only the one with `uid`, when given)."""
        path = self.desired / f"{key}.json"
        if uid is not None and (read_json(path) or {}).get("metadata", {}).get("uid") != uid:
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def statuses(self) -> dict[str, dict[str, Any]]:
        out = {}
        for path in self.status.glob("*.json"):
            doc = read_json(path)
            if doc is not None:
                out[path.stem] = doc
        return out

    def put_status(self, key: str, doc: dict[str, Any]) -> None:
        write_json(self.status / f"{key}.json", doc)

    def remove_status(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.status / f"{key}.json").unlink()

    # -- events ----------------------------------------------------------------------------
    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    def events(self) -> list[dict[str, Any]]:
        """Every event, as last written, in the order they were first written."""
        latest: dict[str, dict[str, Any]] = {}
        try:
            lines = self.events_file.read_bytes().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return []
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:   # a line being appended as we read
                continue
            latest[event["metadata"]["name"]] = event
        return list(latest.values())

    def append_event(self, event: dict[str, Any]) -> None:
        """Journal one new or updated event: one O_APPEND write, so an update costs its own size only."""
        fd = os.open(self.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(event, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)

    def put_events(self, events: list[dict[str, Any]]) -> None:
        """Replace the journal with one line per event (atomically)."""
        write_atomic(self.events_file, "".join(json.dumps(e, sort_keys=True) + "\n" for e in events))

    # -- the agent ----------------------------------------------------------------------
    def agent_running(self) -> bool:
        """True when some process holds agent.lock (the agent takes it for its whole life)."""
        path = self.root / "agent.lock"
        if not path.exists():
            return False
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False

    def hold_agent_lock(self):
        """Take agent.lock for this process's life; None if another agent holds it."""
        f = open(self.root / "agent.lock", "a")  # kept open on purpose
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return None
        return f
