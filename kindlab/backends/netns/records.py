"""The model's own record of a pod's sandbox attempts and Running, kept as annotations on its status.

The agent writes them with the pod's status (its times to the microsecond); the lab reads them back as the
runtime's times (`Cluster.runtime_times`). Nothing outside this backend reads the annotations.
"""

from __future__ import annotations

import json
from typing import Any

from ...capabilities import RuntimeTimes

RUNNING_AT = "kindlab.io/running-at"
ATTEMPTS = "kindlab.io/sandbox-attempts"
SANDBOX_ID = "kindlab.io/sandbox-id"
CONTAINER_ID = "kindlab.io/container-id"


def agent_annotations(attempts: list[float], running_at: float | None, sandbox_id: str | None,
                      container_id: str | None = None) -> dict[str, str]:
    """The annotations the agent writes for a pod."""
    out = {ATTEMPTS: json.dumps([round(t, 6) for t in attempts])}
    if running_at is not None:
        out[RUNNING_AT] = f"{running_at:.6f}"
    if sandbox_id is not None:
        out[SANDBOX_ID] = sandbox_id
    if container_id is not None:
        out[CONTAINER_ID] = container_id
    return out


def agent_times(pod: dict[str, Any] | None) -> RuntimeTimes | None:
    """The agent's record of a v1 Pod (failed attempts, Running), or None when it has none yet."""
    notes = ((pod or {}).get("metadata") or {}).get("annotations") or {}
    try:
        attempts = sorted(float(t) for t in json.loads(notes[ATTEMPTS]))
    except (KeyError, TypeError, ValueError):
        return None
    try:
        running_at: float | None = float(notes[RUNNING_AT])
    except (KeyError, TypeError, ValueError):
        running_at = None
    return RuntimeTimes(running_at=running_at, attempts=attempts, container_id=notes.get(CONTAINER_ID))
