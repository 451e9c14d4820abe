"""Kubeconfig files, as kubeadm and `kind get kubeconfig` write them: the CA and the client's
certificate and key embedded as base64, one cluster, one user, one context."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from .pki import Issued


def render(server: str, ca: Issued, client: Issued, user: str, cluster: str = "kubernetes") -> str:
    """The kubeconfig text for `user` talking to `server` (https://host:port), trusting `ca`."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    context = f"{user}@{cluster}"
    doc = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster,
                      "cluster": {"server": server, "certificate-authority-data": b64(ca.cert_pem())}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(client.cert_pem()),
                                          "client-key-data": b64(client.key_pem())}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write(path: Path, server: str, ca: Issued, client: Issued, user: str, cluster: str = "kubernetes") -> Path:
    """Write the kubeconfig (mode 0600) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(server, ca, client, user, cluster))
    path.chmod(0o600)
    return path
