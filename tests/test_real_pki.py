"""The real lab's PKI: kubeadm's files, chains that verify, the names the components check."""

from __future__ import annotations

import base64
import ipaddress

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kindlab.backends.netns.real import kubeconfig, pki

CP = pki.NodeIdentity("kind-control-plane", "172.18.0.2")
WORKERS = [pki.NodeIdentity("kind-worker", "172.18.0.3"), pki.NodeIdentity("kind-worker2", "172.18.0.4")]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    return folder, pki.write(folder, pki.ClusterIdentity(CP, [CP, *WORKERS]))


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def names(cert: x509.Certificate, oid) -> list[str]:
    return [a.value for a in cert.subject.get_attributes_for_oid(oid)]


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


def usages(cert: x509.Certificate) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_kubeadm_files_are_there(made):
    folder, _ = made
    expected = ["ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client", "etcd/ca",
                "etcd/server", "etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client", "admin",
                "controller-manager", "scheduler", "kube-proxy", "kubelet-kind-worker", "kubelet-kind-worker2"]
    for stem in expected:
        assert (folder / f"{stem}.crt").is_file() and (folder / f"{stem}.key").is_file(), stem
        assert (folder / f"{stem}.key").stat().st_mode & 0o077 == 0, f"{stem}.key is readable by others"
    public = serialization.load_pem_public_key((folder / "sa.pub").read_bytes())
    private = serialization.load_pem_private_key((folder / "sa.key").read_bytes(), None)
    assert public.public_numbers() == private.public_key().public_numbers()


@pytest.mark.parametrize("stem, ca", [
    ("apiserver", "ca"), ("apiserver-kubelet-client", "ca"), ("admin", "ca"), ("controller-manager", "ca"),
    ("scheduler", "ca"), ("kube-proxy", "ca"), ("kubelet-kind-worker", "ca"), ("kubelet-kind-worker-serving", "ca"),
    ("front-proxy-client", "front-proxy-ca"), ("etcd/server", "etcd/ca"), ("etcd/peer", "etcd/ca"),
    ("etcd/healthcheck-client", "etcd/ca"), ("apiserver-etcd-client", "etcd/ca"),
])
def test_each_leaf_verifies_against_its_ca_only(made, stem, ca):
    folder, _ = made
    leaf, issuer = load(folder / f"{stem}.crt"), load(folder / f"{ca}.crt")
    leaf.verify_directly_issued_by(issuer)   # signature, issuer name, issuer is a CA
    others = {"ca", "front-proxy-ca", "etcd/ca"} - {ca}
    for other in others:
        with pytest.raises((ValueError, InvalidSignature)):
            leaf.verify_directly_issued_by(load(folder / f"{other}.crt"))
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key((folder / f"{stem}.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()


def test_the_cas_are_self_signed_cas(made):
    folder, _ = made
    for stem, cn in pki.CAS.items():
        cert = load(folder / f"{stem}.crt")
        cert.verify_directly_issued_by(cert)
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert names(cert, NameOID.COMMON_NAME) == [cn]


def test_apiserver_serving_names(made):
    folder, _ = made
    cert = load(folder / "apiserver.crt")
    dns, ips = sans(cert)
    assert {"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
            "kind-control-plane", "localhost"} <= dns
    assert {"10.96.0.1", "127.0.0.1", "172.18.0.2"} <= ips
    assert usages(cert) == {ExtendedKeyUsageOID.SERVER_AUTH}


@pytest.mark.parametrize("stem, cn, orgs", [
    ("admin", "kubernetes-admin", ["system:masters"]),
    ("kubelet-kind-worker", "system:node:kind-worker", ["system:nodes"]),
    ("kubelet-kind-worker2", "system:node:kind-worker2", ["system:nodes"]),
    ("controller-manager", "system:kube-controller-manager", []),
    ("scheduler", "system:kube-scheduler", []),
    ("kube-proxy", "system:kube-proxy", []),
    ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"]),
    ("apiserver-etcd-client", "kube-apiserver-etcd-client", ["system:masters"]),
    ("etcd/healthcheck-client", "kube-etcd-healthcheck-client", ["system:masters"]),
    ("front-proxy-client", "front-proxy-client", []),
])
def test_client_identities(made, stem, cn, orgs):
    folder, _ = made
    cert = load(folder / f"{stem}.crt")
    assert names(cert, NameOID.COMMON_NAME) == [cn]
    assert names(cert, NameOID.ORGANIZATION_NAME) == orgs
    assert usages(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_etcd_and_kubelet_serving_names(made):
    folder, _ = made
    for stem in ("etcd/server", "etcd/peer"):
        dns, ips = sans(load(folder / f"{stem}.crt"))
        assert {"kind-control-plane", "localhost"} <= dns and {"172.18.0.2", "127.0.0.1", "::1"} <= ips
        assert usages(load(folder / f"{stem}.crt")) == {ExtendedKeyUsageOID.SERVER_AUTH,
                                                        ExtendedKeyUsageOID.CLIENT_AUTH}
    dns, ips = sans(load(folder / "kubelet-kind-worker2-serving.crt"))
    assert dns == {"kind-worker2"} and ips == {"172.18.0.4"}


def test_extra_sans_split_into_names_and_addresses(tmp_path):
    made = pki.write(tmp_path, pki.ClusterIdentity(CP, [], extra_sans=["lab.example", "10.1.2.3"]))
    dns, ips = sans(made["apiserver"].cert)
    assert "lab.example" in dns and "10.1.2.3" in ips
    assert all(ipaddress.ip_address(i) for i in ips)


def test_kubeconfig_embeds_the_ca_and_client(made, tmp_path):
    _, certs = made
    path = kubeconfig.write(tmp_path / "admin.conf", "https://127.0.0.1:6443", certs["ca"], certs["admin"],
                            "kubernetes-admin", "kind")
    assert path.stat().st_mode & 0o077 == 0
    doc = yaml.safe_load(path.read_text())
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    ca = x509.load_pem_x509_certificate(base64.b64decode(cluster["certificate-authority-data"]))
    client = x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
    client.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key(base64.b64decode(doc["users"][0]["user"]["client-key-data"]), None)
    assert key.public_key().public_numbers() == client.public_key().public_numbers()
    assert doc["current-context"] == "kubernetes-admin@kind"
    assert doc["contexts"][0]["context"] == {"cluster": "kind", "user": "kubernetes-admin"}
