"""containerd's task-start events on a node, as they arrive: a container's start, pushed by the runtime.

`ctr events` prints every event containerd publishes, stamped by containerd (to the nanosecond):

    2026-12-01 12:38:01.123456789 +0000 UTC k8s.io /tasks/start {"container_id":"…","pid":1234}

`TaskStarts` follows them for as long as it is open and keeps, per container id, the epoch the line reached
kindlab and containerd's own stamp: heal.measure times a healed pod's start by the first.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from datetime import datetime

from ....capabilities import ContainerStart, ContainerStarts

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))? \+0000 UTC (\S+) /tasks/start (\{.*\})\s*$")
#: `ctr events` subscribes within milliseconds of starting; nothing a fix starts runs sooner than this.
SUBSCRIBE = 0.3


def parse(line: str) -> tuple[str, float] | None:
    """(container id, containerd's epoch) of a /tasks/start line of `ctr events`; None for any other line."""
    m = LINE.match(line)
    if not m:
        return None
    seconds, fraction, _namespace, payload = m.groups()
    try:
        container = json.loads(payload)["container_id"]
    except (ValueError, KeyError, TypeError):
        return None
    micros = ((fraction or "") + "000000")[:6]
    return str(container), datetime.fromisoformat(f"{seconds}.{micros}+00:00").timestamp()


class TaskStarts(ContainerStarts):
    """The task starts of one node's containerd while open (a context manager)."""

    pushed = True

    def __init__(self, enter: list[str]):
        super().__init__()
        self.enter = enter   # the command prefix that enters the node (NodeView.enter())
        self.process: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> TaskStarts:
        self.process = subprocess.Popen([*self.enter, "ctr", "events"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True, name="kindlab-task-events")
        self.reader.start()
        time.sleep(SUBSCRIBE)
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            arrived = time.time()
            if (start := parse(line)) is not None:
                self.seen(start[0], ContainerStart(arrived_at=arrived, runtime_at=start[1]))

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)
