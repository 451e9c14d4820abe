"""A lab's PKI, laid out as kubeadm lays out /etc/kubernetes/pki.

    ca.crt/key                      CN=kubernetes: signs the serving and client certificates below
    apiserver.crt/key               serving: DNS kubernetes, kubernetes.default, ...svc.<domain>, the
                                    control-plane's name, localhost; IP the service IP, 127.0.0.1, the node IP
    apiserver-kubelet-client        CN=kube-apiserver-kubelet-client, O=system:masters
    front-proxy-ca, front-proxy-client
    etcd/ca, etcd/server, etcd/peer, etcd/healthcheck-client, apiserver-etcd-client
    sa.key/sa.pub                   the service-account signing key pair
    admin, controller-manager, scheduler, kube-proxy, kubelet-<node> (client), kubelet-<node>-serving

Keys are ECDSA P-256 (kubeadm's `encryptionAlgorithm: ECDSA-P256`): a whole lab's PKI takes
milliseconds, where RSA-2048 would take about a second.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate and its key."""

    cert: x509.Certificate
    key: Key

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())


@dataclass(frozen=True)
class Request:
    """What a certificate says: subject, organizations, usages and alternative names."""

    cn: str
    orgs: tuple[str, ...] = ()
    usages: tuple[x509.ObjectIdentifier, ...] = (CLIENT,)
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeIdentity:
    """A node as its certificates name it."""

    name: str
    ip: str


@dataclass
class ClusterIdentity:
    """What the PKI needs to know about the cluster."""

    control_plane: NodeIdentity
    nodes: list[NodeIdentity]
    service_ip: str = "10.96.0.1"
    dns_domain: str = "cluster.local"
    extra_sans: list[str] = field(default_factory=list)


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, orgs: Iterable[str] = ()) -> x509.Name:
    return x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> Issued:
    """A self-signed CA, as kubeadm makes ca, front-proxy-ca and etcd/ca."""
    key = new_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + 10 * VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=True,
                                         content_commitment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def issue(ca: Issued, req: Request) -> Issued:
    """A leaf certificate signed by `ca`."""
    key = new_key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(req.cn, req.orgs)).issuer_name(ca.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                            content_commitment=False, data_encipherment=False, key_agreement=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(list(req.usages)), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in req.dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in req.ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def requests(c: ClusterIdentity) -> dict[str, tuple[str, Request]]:
    """Every leaf certificate of the cluster: file stem -> (signing CA's stem, request)."""
    cp = c.control_plane
    api_dns = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{c.dns_domain}",
               cp.name, "localhost", *(s for s in c.extra_sans if not _is_ip(s)))
    api_ips = (c.service_ip, "127.0.0.1", cp.ip, *(s for s in c.extra_sans if _is_ip(s)))
    etcd_names = (cp.name, "localhost")
    etcd_ips = (cp.ip, "127.0.0.1", "::1")
    out: dict[str, tuple[str, Request]] = {
        "apiserver": ("ca", Request("kube-apiserver", usages=(SERVER,), dns=api_dns, ips=api_ips)),
        "apiserver-kubelet-client": ("ca", Request("kube-apiserver-kubelet-client", ("system:masters",))),
        "front-proxy-client": ("front-proxy-ca", Request("front-proxy-client")),
        "etcd/server": ("etcd/ca", Request(cp.name, usages=(SERVER, CLIENT), dns=etcd_names, ips=etcd_ips)),
        "etcd/peer": ("etcd/ca", Request(cp.name, usages=(SERVER, CLIENT), dns=etcd_names, ips=etcd_ips)),
        "etcd/healthcheck-client": ("etcd/ca", Request("kube-etcd-healthcheck-client", ("system:masters",))),
        "apiserver-etcd-client": ("etcd/ca", Request("kube-apiserver-etcd-client", ("system:masters",))),
        "admin": ("ca", Request("kubernetes-admin", ("system:masters",))),
        "controller-manager": ("ca", Request("system:kube-controller-manager")),
        "scheduler": ("ca", Request("system:kube-scheduler")),
        "kube-proxy": ("ca", Request("system:kube-proxy")),
    }
    for n in c.nodes:
        out[f"kubelet-{n.name}"] = ("ca", Request(f"system:node:{n.name}", ("system:nodes",)))
        out[f"kubelet-{n.name}-serving"] = ("ca", Request(n.name, usages=(SERVER,), dns=(n.name,), ips=(n.ip,)))
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


CAS = {"ca": "kubernetes", "front-proxy-ca": "front-proxy-ca", "etcd/ca": "etcd-ca"}


def write(folder: Path, cluster: ClusterIdentity) -> dict[str, Issued]:
    """Make the CAs, every leaf and the service-account key pair as PEM files in `folder`; returns them by stem."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Issued] = {stem: make_ca(cn) for stem, cn in CAS.items()}
    for stem, (ca, req) in requests(cluster).items():
        made[stem] = issue(made[ca], req)
    for stem, issued in made.items():
        _save(folder / f"{stem}.crt", issued.cert_pem())
        _save(folder / f"{stem}.key", issued.key_pem(), private=True)
    sa = new_key()
    _save(folder / "sa.key", Issued(made["ca"].cert, sa).key_pem(), private=True)
    _save(folder / "sa.pub", sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    return made


def _save(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)
