"""Fifty pods on one node, each with its own hostPort: all reachable, and no rule left once deleted."""

from __future__ import annotations

import time

import pytest
from conftest import curl_answer, small_config

from kindlab import objects
from kindlab.errors import ConnectionRefused

pytestmark = pytest.mark.netns
COUNT = 50
FIRST_PORT = 10000


def test_fifty_pods_with_distinct_hostports(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    worker = f"{lab.name}-worker"
    started = time.monotonic()
    for i in range(COUNT):
        lab.apply_object(objects.from_dict({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"echo-{i}"},
            "spec": {"nodeName": worker, "containers": [{"name": "echo", "image": "inanimate/echo-server",
                                                         "ports": [{"containerPort": 8080,
                                                                    "hostPort": FIRST_PORT + i}]}]}})[0])

    def all_running():
        frame = lab.pods()
        return len(frame) == COUNT and bool((frame["phase"] == "Running").all() and frame["ready"].all())
    lab.wait_for(all_running, timeout=90, interval=0.2, what=f"{COUNT} pods Running")
    elapsed = time.monotonic() - started
    frame = lab.pods()
    assert frame["podIP"].nunique() == COUNT
    assert [e["message"] for e in lab.event_list() if e["type"] == "Warning"] == []   # concurrent CNI ADDs are clean

    curling = time.monotonic()
    rules = lab.exec(worker, "iptables-save")
    for i in range(COUNT):
        try:
            reply = curl_answer(lab, f"http://172.18.0.3:{FIRST_PORT + i}/")
        except ConnectionRefused as exc:
            raise AssertionError(f"echo-{i}: {exc}\n{lab.pod(f'echo-{i}')}\n{rules}") from None
        assert reply.status == 200 and f"-> My hostname is: echo-{i}\n" in reply.body
    assert rules.count("-j DNAT --to-destination") == COUNT
    print(f"{COUNT} curls in {time.monotonic() - curling:.1f}s")

    for i in range(COUNT):
        lab.delete_pod(f"echo-{i}", wait=False)
    deleting = time.monotonic()
    lab.wait_for(lambda: not lab.pod_list(), timeout=60, interval=0.2, what="every pod deleted")
    print(f"{COUNT} pods deleted in {time.monotonic() - deleting:.1f}s")
    rules = lab.exec(worker, "iptables-save")
    assert "CNI-DN-" not in rules and "DNAT --to-destination" not in rules and "dnat name" not in rules
    assert lab.exec(worker, "ip -o link show master cni0") == ""   # every pod veth is gone
    print(f"{COUNT} pods Running in {elapsed:.1f}s")
