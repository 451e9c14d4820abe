"""containerd's task-start events on a node, as they arrive: a container's start, pushed by the runtime.

`ctr events` prints every event containerd publishes, stamped by containerd (to the nanosecond):

    2026-12-01 12:38:01.123456789 +0000 UTC k8s.io /tasks/start {"container_id":"…","pid":1234}

`TaskStarts` follows them for as long as it is open and keeps, per container id, the epoch the line reached
kindlab and containerd's own stamp: heal.measure times a healed pod's start by the first. The arrival is
stamped by a small process of its own that reads `ctr events`' output, not by a thread of the caller's: in a
busy caller (a benchmark's curl watches fork a curl twenty times a second each, holding the interpreter's
lock) a thread can wait a tenth of a second to run, and the start would look that much later.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from datetime import datetime

from ....capabilities import ContainerStart, ContainerStarts

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))? \+0000 UTC (\S+) /tasks/start (\{.*\})\s*$")
#: `ctr events` subscribes within milliseconds of starting; nothing a fix starts runs sooner than this.
SUBSCRIBE = 0.3
#: The stamper: says it is ready, then prints each line it reads with the epoch it read it at.
STAMPER = ("import sys, time\nprint('ready', flush=True)\n"
           "for line in iter(sys.stdin.buffer.readline, b''):\n"
           "    sys.stdout.write(f'{time.time():.6f} ' + line.decode(errors='replace'))\n    sys.stdout.flush()\n")


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
        self.process: subprocess.Popen[bytes] | None = None      # `ctr events`, in the node
        self.stamper: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> TaskStarts:
        self.process = subprocess.Popen([*self.enter, "ctr", "events"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self.stamper = subprocess.Popen([sys.executable, "-I", "-S", "-c", STAMPER], stdin=self.process.stdout,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.process.stdout is not None and self.stamper.stdout is not None
        self.process.stdout.close()   # the stamper's now: `ctr events` ends on a broken pipe if the stamper does
        self.stamper.stdout.readline()
        self.reader = threading.Thread(target=self._read, daemon=True, name="kindlab-task-events")
        self.reader.start()
        time.sleep(SUBSCRIBE)
        return self

    def _read(self) -> None:
        assert self.stamper is not None and self.stamper.stdout is not None
        for stamped in self.stamper.stdout:
            arrived, _, line = stamped.partition(" ")
            if (start := parse(line)) is not None:
                self.seen(start[0], ContainerStart(arrived_at=float(arrived), runtime_at=start[1]))

    def __exit__(self, *exc: object) -> None:
        for process in (self.process, self.stamper):   # `ctr events` first: the stamper then reads its end
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)
