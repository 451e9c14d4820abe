"""doctor's cni-cache on the netns lab, with the real kubelet and containerd 1.7 and with kindlab's model of them: the
seed's worker3 is flagged while its pod keeps the sandbox made before the chained conflist arrived, and is fine
once the pod is recreated; the model writes libcni's records where and as containerd does; a garbled record is a
finding."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from kindlab import doctor, scenario, walkthrough
from kindlab.cluster import Cluster
from kindlab.doctor import cni_cache

pytestmark = pytest.mark.netns
#: libcni's cachedInfo fields in its order (containerd 1.7.24's libcni writes no netns), as the record has them.
FIELDS = ["kind", "containerId", "config", "ifName", "networkName", "cniArgs", "capabilityArgs", "result"]


@pytest.fixture(params=["real", "model"])
def seed(request, netns_ready, tmp_path) -> Iterator[Cluster]:
    """The seed's cluster and pods on netns, on the real kubelet or the model's, always deleted."""
    from kindlab import backends

    name = f"c{secrets.token_hex(3)}"
    try:
        lab = backends.up(walkthrough.private_config(tmp_path), name=name, backend="netns",
                          kubernetes=request.param, backoff=0.5)
        walkthrough.apply_static(lab)
        for role in ("worker", "worker3"):
            lab.wait_for_pod(scenario.pod_name(lab, role), "Running", timeout=60)
        yield lab
    finally:
        backends.delete(name, backend="netns")


def cache_row(lab: Cluster, node: str):
    findings = doctor.doctor(lab, reach=False)
    rows = findings[(findings["check"] == "cni-cache") & (findings["node"] == node)]
    assert len(rows) == 1, findings
    return rows.iloc[0]


def test_worker3_is_flagged_until_its_pod_is_recreated(seed: Cluster):
    lab = seed
    worker, worker3 = scenario.node(lab, "worker"), scenario.node(lab, "worker3")
    pod3 = scenario.pod_name(lab, "worker3")
    assert cache_row(lab, worker).ok
    broken = cache_row(lab, worker3)
    assert not broken.ok and "does not chain portmap" in broken.message
    assert broken.fix.startswith(f"First fix cni-config on {worker3}")
    # the record, as the node holds it: libcni's format, folder 0700, file 0600
    (record,) = cni_cache.records(lab, [worker3]).itertuples()
    assert (record.pod, record.network, record.plugins) == (f"default/{pod3}", "kindlab", "kindlab-cni")
    raw = lab.exec(worker3, ["cat", f"{cni_cache.RESULTS}/{record.record}"])
    assert list(json.loads(raw)) == FIELDS and not raw.endswith("\n")
    caps = json.loads(raw)["capabilityArgs"]     # containerd 1.7's arguments, and the model's
    assert list(caps) == ["dns", "io.kubernetes.cri.pod-annotations", "portMappings"]
    assert caps["dns"]["Options"] == ["ndots:5"] and caps["dns"]["Searches"][0] == "default.svc.cluster.local"
    assert caps["io.kubernetes.cri.pod-annotations"]["kubernetes.io/config.source"] == "api"
    assert lab.exec(worker3, ["stat", "-c", "%a", cni_cache.RESULTS, f"{cni_cache.RESULTS}/{record.record}"]
                    ).split() == ["700", "600"]

    # the chained conflist arrives: the node is right, its running pod is not
    scenario.fix_worker3(lab)
    half = cache_row(lab, worker3)
    assert not half.ok and "without portmap" in half.message and record.sandbox in half.message
    assert half.fix.startswith(f"Delete and re-apply pod {pod3} (kindlab delete pod {pod3} && kindlab apply -f ")
    assert "manifests/static/echo-kind-worker3.yaml" in half.fix

    # recreated: its new sandbox was set up with the chained conflist
    scenario.recreate_pod(lab, pod3)
    lab.wait_for_pod(pod3, "Running", timeout=60)
    fixed = cache_row(lab, worker3)
    assert fixed.ok and "it chains portmap" in fixed.message, fixed
    after = cni_cache.records(lab, [worker3])
    new = after[after["network"] == "kindlab-portmap"]
    assert len(new) == 1 and new.iloc[0]["sandbox"] in fixed.message
    # the old sandbox's record outlives it (its DEL ran under the chained network's name), on both runtimes
    assert list(after.loc[after["network"] == "kindlab", "sandbox"]) == [record.sandbox], after


def test_a_garbled_record_is_a_finding(seed: Cluster):
    lab = seed
    worker = scenario.node(lab, "worker")
    bad = f"{cni_cache.RESULTS}/kindlab-portmap-0123456789abcdef-eth0"
    lab.exec(worker, ["sh", "-c", f"printf '{{\"kind\": \"cniCacheV1\", \"config\": 42' > {bad}"])
    try:
        findings = doctor.doctor(lab, reach=False)
        rows = findings[(findings["check"] == "cni-cache") & (findings["node"] == worker)]
        garbled = rows[rows["message"].str.contains(Path(bad).name, regex=False)]
        assert len(garbled) == 1 and not garbled.iloc[0]["ok"] and "not valid JSON" in garbled.iloc[0]["message"]
        assert rows[~rows["message"].str.contains(Path(bad).name, regex=False)]["ok"].all(), rows   # the pod: ok
    finally:
        lab.exec(worker, ["rm", "-f", bad])
