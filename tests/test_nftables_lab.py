"""portmap's nftables backend on the real lab (netns, the real kubelet and containerd, portmap 1.9.1), read by
kindlab.iptables.node_nft_rules and checked by doctor.

The seed's cluster: worker's chained portmap given `"backend": "nftables"` and its pod recreated (healthy: its DNAT
only in table ip cni_hostport, curl answers, doctor says nftables serves it); a stale nftables DNAT to a dead IP
flagged and removed by the printed fix; worker2, without portmap, flagged with the nftables conflist chosen; the
worker back on iptables. The host's own network namespace never gets a cni_hostport table.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from kindlab import doctor, iptables
from kindlab import walkthrough as wt

pytestmark = pytest.mark.netns


def host_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The seed's cluster and pods on the real lab under a private name, always deleted."""
    from kindlab import backends

    name = f"nf{os.getpid() % 10000}"
    before = host_tables()
    try:
        backends.delete(name, backend="netns")
        lab = backends.up(wt.private_config(tmp_path_factory.mktemp("seed")), name=name, backend="netns",
                          kubernetes="real")
        wt.apply_static(lab)
        for role in ("worker", "worker3"):
            lab.wait_for_pod(f"echo-{name}-{role}", "Running", timeout=60)
        yield lab
    finally:
        backends.delete(name, backend="netns")
    assert host_tables() == before, "the lab changed the host's own nftables tables"


def finding(findings, node: str, check: str):
    rows = findings[(findings["node"] == node) & (findings["check"] == check)]
    assert len(rows) == 1, findings
    return rows.iloc[0]


def test_a_worker_on_nftables_serves_its_hostport_and_doctor_says_so(lab):
    assert lab.capabilities.kubelet == "real", lab.capabilities.describe()
    worker, pod = wt.node(lab, "worker"), wt.pod_name(lab, "worker")
    assert not wt.portmap_dnat(iptables.node_rules(lab, worker).rules).empty   # iptables first, as the seed's
    written = wt.use_portmap_backend(lab, worker, "nftables")
    assert written == "000-kindlab-nftables.conflist"
    pod_ip = lab.pod(pod)["status"]["podIP"]
    rules = iptables.node_nft_rules(lab, worker)
    dnat = rules[rules["target"] == "DNAT"]
    assert list(dnat["to_destination"]) == [f"{pod_ip}:8080"] and list(dnat["dport"]) == ["80"]
    assert list(dnat["chain"]) == ["hostports"] and dnat["comment"].iloc[0]   # portmap's comment: the sandbox ID
    assert wt.pod_dnat(lab, pod).empty, "iptables holds no DNAT to the pod any more"
    assert not any(pod_ip in line for line in wt.hostport_rules(lab, worker))
    answer = wt.wait_for_curl(lab, worker)
    assert answer.status == 200 and wt.echo_hostname(answer.body) == pod
    findings = doctor.doctor(lab)
    served = finding(findings, worker, "hostport-dnat")
    assert served.ok and "nftables table ip cni_hostport, chain hostports" in served.message, served.message
    assert f"dnat to {pod_ip}:8080" in served.evidence
    assert finding(findings, worker, "nft-hostport").ok and finding(findings, worker, "hostport-reach").ok
    assert "1 dnat rule(s)" in finding(findings, worker, "nft-hostport").message
    assert not findings[findings["node"] == worker]["ok"].eq(False).any(), doctor.problems(findings)


def test_a_stale_nftables_dnat_is_flagged_and_its_fix_removes_it(lab):
    worker = wt.node(lab, "worker")
    lab.exec(worker, ["nft", "add", "rule", "ip", "cni_hostport", "hostports", "tcp", "dport", "81", "dnat", "to",
                      "192.168.250.250:8080", "comment", '"kindlab-stale"'])
    stale = finding(doctor.doctor(lab), worker, "nft-hostport")
    assert not stale.ok and "192.168.250.250:8080" in stale.message and "1 rule(s)" in stale.message
    assert "tcp dport 81 dnat to 192.168.250.250:8080" in stale.evidence
    lab.exec(worker, ["sh", "-c", stale.fix.split(": ", 1)[1].rstrip(".")])   # the fix, as printed
    rules = iptables.node_nft_rules(lab, worker)
    assert "192.168.250.250:8080" not in set(rules["to_destination"].dropna())
    assert finding(doctor.doctor(lab), worker, "nft-hostport").ok


def test_worker2_without_portmap_is_flagged_on_nftables_too(lab):
    worker2 = wt.node(lab, "worker2")
    name, text = wt.backend_conflist(lab, "nftables")
    lab.exec(worker2, ["sh", "-c", f"cat > /etc/cni/net.d/{name}"], input=text)
    try:
        findings = doctor.doctor(lab)
        assert not finding(findings, worker2, "portmap-binary").ok
        assert name in finding(findings, worker2, "cni-config").message
        assert iptables.node_nft_rules(lab, worker2).empty, "no portmap ran: no table"
        assert lab.pod(wt.pod_name(lab, "worker2"))["status"]["phase"] == "Pending"
    finally:
        lab.exec(worker2, ["rm", "-f", f"/etc/cni/net.d/{name}"])


def test_back_on_iptables_the_nftables_table_keeps_no_dnat(lab):
    worker, pod = wt.node(lab, "worker"), wt.pod_name(lab, "worker")
    assert wt.use_portmap_backend(lab, worker, None) is None
    pod_ip = lab.pod(pod)["status"]["podIP"]
    rules = iptables.node_nft_rules(lab, worker)
    assert not (rules["target"] == "DNAT").any() and len(rules), "the DEL cleared the DNAT, the table stays"
    assert list(wt.pod_dnat(lab, pod)["to_destination"]) == [f"{pod_ip}:8080"]
    served = finding(doctor.doctor(lab), worker, "hostport-dnat")
    assert served.ok and "iptables chain CNI-DN-" in served.message
    assert wt.wait_for_curl(lab, worker).status == 200
