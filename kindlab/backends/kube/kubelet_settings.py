"""Settings kindlab gives every kubelet it starts, whoever starts it (the netns lab's real components, kind's
kubeadm), so that their clusters are compared on equal terms."""

from __future__ import annotations

# The kubelet's default is 10s: a node whose network turned ready waits up to that long to say Ready.
NODE_STATUS_UPDATE_FREQUENCY = "1s"


def kubeadm_patch() -> str:
    """The kubeadm config patch (kind's `kubeadmConfigPatches`) that gives kubeadm's kubelets these settings."""
    return ("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
            f"nodeStatusUpdateFrequency: {NODE_STATUS_UPDATE_FREQUENCY}\n")
