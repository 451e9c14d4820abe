"""Events, recorded and aggregated as Kubernetes' event correlator does.

- The same source, object, type, reason and message: one event whose count grows, with
  firstTimestamp and lastTimestamp.
- 10 or more distinct messages for the same source, object, type and reason within 10 minutes:
  further ones become one "(combined from similar events): <message>" event that counts up.
- The spam filter: per source and object, a burst of 25 occurrences, then one per 5 minutes; the rest are
  dropped (the limits are model.pods').

The 10-minute window and the 5-minute refill are scaled by the lab's back-off, as the model's other kubelet
clocks are (model.kubelet.scaled): at the real 10 s they are the real ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ...model import kubelet
from ...model.pods import COMBINED, SIMILAR_LIMIT, SIMILAR_WINDOW, SPAM_BURST, SPAM_REFILL
from .state.store import Store, timestamp

COMPACT_AT = 4      # the journal is rewritten when it holds this many lines per event
COMPACT_MIN = 256   # (and at least this many times as many)


class EventRecorder:
    """The agent's event sink: keeps every event in memory and journals each change in the store."""

    def __init__(self, store: Store, backoff: Callable[[], float] = lambda: kubelet.KUBELET_BACKOFF):
        self.store = store
        self.backoff = backoff
        self.events: list[dict[str, Any]] = store.events()
        self.by_key = {self._key(e): e for e in self.events}
        self.similar: dict[tuple, tuple[float, set[str]]] = {}
        self.tokens: dict[tuple, tuple[float, float]] = {}   # spam filter: (source, object) -> (tokens, when)
        self.lock = threading.Lock()
        self.journaled = len(self.events)   # lines in the journal since it was last compacted

    @staticmethod
    def _key(e: dict[str, Any]) -> tuple:
        o = e.get("involvedObject", {})
        return (e.get("source", {}).get("component"), e.get("source", {}).get("host"), o.get("kind"),
                o.get("namespace"), o.get("name"), o.get("uid"), e.get("type"), e.get("reason"),
                e.get("message") if not str(e.get("message", "")).startswith(COMBINED) else COMBINED)

    def _spam(self, key: tuple, now: float) -> bool:
        """True when the spam filter drops this occurrence (its bucket is empty); else takes a token."""
        tokens, then = self.tokens.get(key, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - then) / kubelet.scaled(SPAM_REFILL, self.backoff()))
        if tokens < 1.0:
            self.tokens[key] = (tokens, now)
            return True
        self.tokens[key] = (tokens - 1.0, now)
        return False

    def record(self, pod_meta: dict[str, Any], node: str | None, type_: str, reason: str, message: str,
               component: str = "kubelet") -> dict[str, Any] | None:
        """Record one occurrence; returns the (new or updated) event, or None when the spam filter dropped it."""
        now = time.time()
        obj = {"apiVersion": "v1", "kind": "Pod", "name": pod_meta["name"],
               "namespace": pod_meta.get("namespace", "default"), "uid": pod_meta.get("uid")}
        with self.lock:
            if self._spam((component, node, obj["namespace"], obj["name"], obj["uid"]), now):
                return None
            similar_key = (component, node, obj["namespace"], obj["name"], obj["uid"], type_, reason)
            first, messages = self.similar.get(similar_key, (now, set()))
            if now - first > kubelet.scaled(SIMILAR_WINDOW, self.backoff()):
                first, messages = now, set()
            messages.add(message)
            self.similar[similar_key] = (first, messages)
            if len(messages) >= SIMILAR_LIMIT:
                message = f"{COMBINED}{message}"
            event: dict[str, Any] = {
                "apiVersion": "v1", "kind": "Event", "type": type_, "reason": reason, "message": message,
                "involvedObject": obj, "source": {"component": component, **({"host": node} if node else {})},
                "reportingComponent": component, "reportingInstance": node or "",
            }
            key = self._key(event)
            existing = self.by_key.get(key)
            stamp = timestamp(now)
            if existing is not None:
                existing["count"] = int(existing.get("count", 1)) + 1
                existing["lastTimestamp"] = stamp
                existing["message"] = message
                event = existing
            else:
                event.update({"metadata": {"name": f"{obj['name']}.{time.time_ns():x}",   # the kubelet's names
                                           "namespace": obj["namespace"], "creationTimestamp": stamp},
                              "count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp})
                self.events.append(event)
                self.by_key[key] = event
            self.store.append_event(event)
            self.journaled += 1
            if self.journaled > COMPACT_AT * max(len(self.events), COMPACT_MIN):
                self.store.put_events(self.events)
                self.journaled = len(self.events)
            return event
