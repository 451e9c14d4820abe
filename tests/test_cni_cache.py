"""doctor's cni-cache check: libcni's records (tests/data/cni-cache, captured from the real lab's containerd 1.7.24)
read and matched to pods, judged against the config the runtime picks now; garbled records; the model's cache in
the same format."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kindlab import doctor
from kindlab.backends.netns import cni, container_runtime
from kindlab.backends.netns.pod_status import PodState
from kindlab.backends.netns.sandbox import Sandbox
from kindlab.doctor import cni_cache, report
from kindlab.errors import ExecError
from kindlab.model.cni import parse_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "cni-cache"
CHAINED = parse_config("000-kindlab-portmap.conflist", (ROOT / "kind/cni/000-kindlab-portmap.conflist").read_bytes())
PRIMARY = parse_config("05-kindlab.conf", '{"cniVersion": "0.4.0", "name": "kindlab", "type": "kindlab-cni"}')
OLD = "50ccc187cf19dc26128a117773530539609251e3856ba13f5d686c39cbc1497a"   # worker3's first sandbox
NEW = "bd9f45315484969115f1b22666978ea0770478964c45d0ccd0eb09364e4e070c"   # after the pod was recreated
W3 = "ccre-worker3"


def files(stage: str, node: str) -> dict[str, bytes | str]:
    return {p.name: p.read_bytes() for p in sorted((DATA / stage / node).iterdir())}


def pods(stage: str) -> list[dict[str, Any]]:
    return json.loads((DATA / stage / "pods.json").read_text())


def recreate(pod: str) -> str:
    return f"delete and re-apply pod {pod} (kindlab delete pod {pod} && kindlab apply -f {ROOT}/manifests/x.yaml)"


def judged(stage: str, node: str, chosen=CHAINED, found: dict[str, bytes | str] | None = None,
           pod_list: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return cni_cache.cache_findings(node, files(stage, node) if found is None else found, chosen,
                                    pods(stage) if pod_list is None else pod_list, recreate)


# -- the real records ----------------------------------------------------------------------------
def test_a_real_record_reads_as_libcni_wrote_it():
    raw = (DATA / "conflist" / W3 / f"kindlab-{OLD}-eth0").read_bytes()
    record = cni_cache.parse_record(f"kindlab-{OLD}-eth0", raw)
    assert (record.container_id, record.network, record.if_name) == (OLD, "kindlab", "eth0")
    assert record.pod == ("default", "echo-ccre-worker3")
    assert record.pod_uid == "a80ab04b-2f39-4fc6-8c3e-9d4d68325a09"
    assert record.args["K8S_POD_INFRA_CONTAINER_ID"] == OLD and record.ips == ("192.168.3.2",)
    # containerd wrapped 05-kindlab.conf into a list: the same network as the file, and no portmap
    assert record.config.types == ["kindlab-cni"] and not record.config.chains_portmap
    assert cni_cache.same_network(record.config, PRIMARY) and not cni_cache.same_network(record.config, CHAINED)


def test_worker3_after_its_conflist_is_flagged_and_told_to_recreate():
    (row,) = judged("conflist", W3)
    assert not row["ok"] and row["check"] == "cni-cache" and row["node"] == W3
    assert "echo-ccre-worker3" in row["message"] and OLD[:12] in row["message"]
    assert "without portmap" in row["message"] and "000-kindlab-portmap.conflist" in row["message"]
    assert row["fix"].startswith("Delete and re-apply pod echo-ccre-worker3")
    assert "set up with 000-kindlab-portmap.conflist" in row["fix"]
    typed = report.typed(row["fix"], ROOT)
    assert "kubectl delete pod echo-ccre-worker3; kubectl apply -f manifests/x.yaml" in typed
    assert f"kindlab-{OLD}-eth0" in row["evidence"]


def test_worker3_recreated_is_ok_and_its_old_record_is_not_taken_for_it():
    (row,) = judged("recreated", W3)
    assert row["ok"], row
    assert NEW[:12] in row["message"] and "it chains portmap" in row["message"] and row["fix"] == ""
    assert "1 other record" in row["evidence"]   # the first sandbox's, left by a DEL under the new network name
    # the old record alone is another pod's (its UID): the recreated pod has no record, which is said, not failed
    old = {n: b for n, b in files("recreated", W3).items() if OLD in n}
    (alone,) = judged("recreated", W3, found=old)
    assert alone["ok"] and "no record of its sandbox" in alone["message"]


def test_the_healthy_worker_is_ok_and_other_nodes_pods_are_not_judged_here():
    (row,) = judged("conflist", "ccre-worker")
    assert row["ok"] and "the config the runtime picks now (000-kindlab-portmap.conflist)" in row["message"]
    assert judged("conflist", "ccre-control-plane", found={}) == []   # no pod of its own: nothing to say


def test_before_the_conflist_the_fix_starts_with_the_config():
    (row,) = judged("conflist", W3, chosen=PRIMARY)
    assert not row["ok"] and "does not chain portmap" in row["message"]
    assert row["fix"].startswith(f"First fix cni-config on {W3}; then delete and re-apply pod echo-ccre-worker3")
    (none,) = judged("conflist", W3, chosen=None)
    assert not none["ok"] and "no network now" in none["message"]
    (healthy,) = judged("conflist", "ccre-worker", chosen=None)
    assert healthy["ok"]   # set up with portmap; cni-config says the node has no network now


def test_another_chained_config_than_the_one_picked_now_is_flagged():
    other = parse_config("000-other.conflist", json.dumps({"cniVersion": "0.4.0", "name": "other", "plugins": [
        {"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": True}}]}))
    (row,) = judged("conflist", "ccre-worker", chosen=other)
    assert not row["ok"] and "chaining portmap" in row["message"] and "000-other.conflist" in row["fix"]


def test_pods_that_are_not_running_with_a_host_port_get_no_finding():
    pod_list = pods("conflist")
    w3 = next(p for p in pod_list if p["spec"]["nodeName"] == W3)
    for change in ({"status": {"phase": "Pending"}}, {"spec": {**w3["spec"], "hostNetwork": True}},
                   {"spec": {**w3["spec"], "containers": [{"name": "echo", "image": "x"}]}}):
        assert judged("conflist", W3, pod_list=[{**w3, **change}]) == []


def test_records_match_by_name_then_ip_where_they_have_no_uid():
    def without_uid(raw: bytes, ip: str) -> bytes:
        doc = json.loads(raw)
        doc["cniArgs"] = [kv for kv in doc["cniArgs"] if kv[0] != "K8S_POD_UID"]
        doc["result"]["ips"][0]["address"] = f"{ip}/24"
        return json.dumps(doc).encode()
    both = files("recreated", W3)
    found = {n: without_uid(b, "192.168.3.99") if OLD in n and n.endswith("eth0") else b for n, b in both.items()}
    (row,) = judged("recreated", W3, found=found)
    assert row["ok"] and NEW[:12] in row["message"]   # the record holding the pod's IP is its live sandbox's


# -- bad input -------------------------------------------------------------------------------------
def _record(**changes: Any) -> bytes:
    doc = json.loads((DATA / "conflist" / W3 / f"kindlab-{OLD}-eth0").read_bytes())
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("raw, why", [
    (b"", "not valid JSON"),
    (b"\xff\xfe{garbage", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (_record(kind="cniCacheV2"), "its kind is 'cniCacheV2'"),
    (_record(containerId=7), "no containerId"),
    (_record(config="***"), "its config is not base64"),
    (_record(config=base64.b64encode(b'{"name": "x", "plugins": []}').decode()), "no plugins in list"),
    (_record(cniArgs={"K8S_POD_NAME": "x"}), "cniArgs are not a list"),
    ("2000000 bytes, more than the 1048576 read", "more than the"),
])
def test_a_garbled_record_is_a_finding_not_a_crash(raw, why):
    found = {**files("conflist", W3), "kindlab-bad-eth0": raw}
    rows = judged("conflist", W3, found=found)
    bad = next(r for r in rows if "kindlab-bad-eth0" in r["message"])
    assert not bad["ok"] and why in bad["message"] and "rm /var/lib/cni/results/kindlab-bad-eth0" in bad["fix"]
    assert sum("echo-ccre-worker3" in r["message"] for r in rows) == 1   # the pod is still judged by its record


class ShellNode:
    """Answers read_cache's script as a node's shell would (from a dict of files), or fails."""

    def __init__(self, answer: str | None):
        self.answer = answer

    def exec(self, node, cmd, check=True, input=None, timeout=60):
        assert cmd[:2] == ["sh", "-c"] and cni_cache.RESULTS in cmd[2]
        if self.answer is None:
            raise ExecError("sh: not found", 127)
        return self.answer


def shell_output(found: dict[str, bytes]) -> str:
    out = ""
    for name, raw in found.items():
        b64 = base64.encodebytes(raw).decode()   # wrapped at 76 columns, as base64(1) does
        out += f"#kindlab file {len(raw)} {name}\n{b64}"
    return out


def test_read_cache_reads_what_the_node_prints():
    found = files("recreated", W3)
    assert cni_cache.read_cache(ShellNode(shell_output(found)), W3) == found
    assert cni_cache.read_cache(ShellNode("#kindlab none\n"), W3) is None
    assert cni_cache.read_cache(ShellNode(""), W3) == {}
    assert cni_cache.read_cache(ShellNode(None), W3) is None
    big = cni_cache.read_cache(ShellNode("#kindlab file 99999999 huge-x-eth0\nAAAA\n#kindlab file    3 ok\nYWJj\n"), W3)
    assert isinstance(big["huge-x-eth0"], str) and big["ok"] == b"abc"
    broken = cni_cache.read_cache(ShellNode("#kindlab file 3 x\n!!!!\n"), W3)
    assert isinstance(broken["x"], str) and "unreadable" in broken["x"]


def test_doctor_runs_cni_cache_on_every_node():
    """Through doctor.doctor on test_doctor's fake cluster, its exec taught the cache folder."""
    from test_doctor import half_fixed

    lab = half_fixed()
    lab.pods = [{**p, "metadata": {**p["metadata"], "uid": None}} for p in lab.pods]
    record = json.loads(_record())
    record["cniArgs"] = [["K8S_POD_NAMESPACE", "default"], ["K8S_POD_NAME", "echo-kind-worker3"]]
    record["config"] = base64.b64encode(PRIMARY.raw).decode()
    answers = {"kind-worker3": shell_output({f"kindlab-{OLD}-eth0": json.dumps(record).encode()})}
    plain = lab.exec

    def exec(node, cmd, check=True, input=None, timeout=60):
        if cmd[:2] == ["sh", "-c"] and cni_cache.RESULTS in cmd[2]:
            return answers.get(node, "#kindlab none\n")
        return plain(node, cmd, check, input, timeout)
    lab.exec = exec
    findings = doctor.doctor(lab)
    rows = findings[findings["check"] == "cni-cache"]
    assert set(rows["node"]) == {"kind-worker", "kind-worker2", "kind-worker3"}   # one per running hostPort pod
    w3 = rows[rows["node"] == "kind-worker3"].iloc[0]
    assert not w3.ok and "without portmap" in w3.message and "000-cilium-portmap.conflist" in w3.message
    assert "manifests/static/echo-kind-worker3.yaml" in w3.fix
    assert rows[rows["node"] != "kind-worker3"]["ok"].all()   # no record: said, not failed


# -- the model's cache, in the real one's format ---------------------------------------------------
def test_the_model_writes_libcnis_record_where_libcni_does(tmp_path):
    real = json.loads((DATA / "conflist" / W3 / f"kindlab-{OLD}-eth0").read_bytes())
    real_lo = json.loads((DATA / "conflist" / W3 / f"cni-loopback-{OLD}-lo").read_bytes())
    runtime = cni.Runtime(SimpleNamespace(root=tmp_path), run=lambda *a: None)
    assert runtime.cache == tmp_path / "var/lib/cni/results"
    real_annotations = real["capabilityArgs"][cni.POD_ANNOTATIONS]
    state = PodState(key="default_echo-ccre-worker3", uid="a80ab04b-2f39-4fc6-8c3e-9d4d68325a09",
                     meta={"name": "echo-ccre-worker3", "namespace": "default", "annotations": {   # kubectl apply's
                         k: v for k, v in real_annotations.items() if k.startswith("kubectl.kubernetes.io/")}},
                     spec={"containers": [{"ports": [{"containerPort": 8080, "hostPort": 80}]}]}, node=W3,
                     seen=real_annotations["kubernetes.io/config.seen"])
    pod = container_runtime.pod_network(state, Sandbox(id=OLD, pid=1, start=0), "10.96.0.0/16")
    runtime.write_cache(PRIMARY, pod, "eth0", real["result"])
    runtime.write_cache(cni.loopback(), pod, "lo", real_lo["result"])
    path = runtime.cache / f"kindlab-{OLD}-eth0"
    assert sorted(p.name for p in runtime.cache.iterdir()) == sorted(p.name for p in (DATA / "conflist" / W3).iterdir())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(runtime.cache.stat().st_mode) == 0o700
    mine = json.loads(path.read_bytes())
    assert list(mine) == list(real)   # libcni's fields, in its order
    assert mine["config"] == real["config"]   # 05-kindlab.conf wrapped into a list, byte for byte
    assert dict(map(tuple, mine["cniArgs"])) == dict(map(tuple, real["cniArgs"]))
    # what containerd hands CNI: the hostPorts (go-cni's keys), the pod's DNS, its annotations and the kubelet's
    assert json.dumps(mine["capabilityArgs"]) == json.dumps(real["capabilityArgs"])    # in the same order
    assert json.loads((runtime.cache / f"cni-loopback-{OLD}-lo").read_bytes())["config"] == real_lo["config"]
    assert b" " not in path.read_bytes().split(b'"result"')[0]   # compact, as Go's encoding/json
    record = cni_cache.parse_record(path.name, path.read_bytes())
    assert record.pod_uid == pod.pod_uid and cni_cache.same_network(record.config, PRIMARY)
    # the sandbox's orphan sweep reads its records back
    (orphan,) = runtime.orphans(known=set())
    assert (orphan.sandbox_id, orphan.pod_name, orphan.pod_uid) == (OLD, "echo-ccre-worker3", pod.pod_uid)
    assert orphan.port_mappings == pod.port_mappings
