"""The CNI on kind where Cilium cannot be installed: kindlab-cni, installed by a DaemonSet as Cilium's agent
installs cilium-cni.

The DaemonSet `kube-system/kindlab-cni` runs one privileged pod per node (host network, the node's / at /host).
Its script asks the API server for the node's pod subnet (with the kubelet's own credentials, through the node's
kubectl), writes it where kindlab-cni reads it, puts kindlab-cni (and `loopback`, where missing) into the node's
/opt/cni/bin, on worker2 therefore into the host folder mounted over /opt/cni, as the seed's cilium-cni lands
in /tmp/empty/bin, and writes /etc/cni/net.d/05-kindlab.conf. kindlab-cni runs on the node with the node's
python3 and delegates to the node's own `bridge` and `host-local` (/usr/lib/cni, Debian's package). The seed's
chained `000-*-portmap.conflist` comes through kind's extraMounts, as in the seed.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from ... import cni_plugin
from ...errors import ConfigError

CILIUM = "cilium"
KINDLAB = "kindlab"
CHOICES = (CILIUM, KINDLAB)
NAME = "kindlab-cni"
#: Each CNI's DaemonSet in kube-system, and what its pods are called in progress lines.
DAEMONSETS = {CILIUM: "cilium", KINDLAB: NAME}
AGENTS = {CILIUM: "Cilium agents", KINDLAB: "kindlab-cni installers"}
NAMESPACE = "kube-system"
CNI_INSTALLER = "docker.io/kindlab/cni-installer:v1"
DELEGATES = "/usr/lib/cni"

SCRIPT = r"""# kindlab's CNI installer: run by the DaemonSet kube-system/kindlab-cni on every node.
set -eu
host=/host
say() { echo "kindlab-cni-install: $*"; }
cidr=""
while [ -z "$cidr" ]; do
  cidr=$(chroot $host kubectl --kubeconfig=/etc/kubernetes/kubelet.conf get node "$NODE_NAME" \
         -o 'jsonpath={.spec.podCIDR}' 2>/dev/null || true)
  [ -n "$cidr" ] || sleep 1
done
mkdir -p $host/opt/cni/bin $host/etc/cni/net.d $host/run/kindlab/node
printf 'KINDLAB_NETWORK=%s\nKINDLAB_SUBNET=%s\nKINDLAB_MTU=1500\nKINDLAB_DELEGATE_PATH=%s\n' \
  "$POD_NETWORK" "$cidr" "$DELEGATES" > $host/run/kindlab/node/subnet.env
cp /kindlab-cni $host/opt/cni/bin/.kindlab-cni.new
mv $host/opt/cni/bin/.kindlab-cni.new $host/opt/cni/bin/kindlab-cni
[ -e $host/opt/cni/bin/loopback ] || cp $host$DELEGATES/loopback $host/opt/cni/bin/loopback
printf '%s\n' "$CONF" > $host/etc/cni/net.d/.$CONF_NAME.new
mv $host/etc/cni/net.d/.$CONF_NAME.new $host/etc/cni/net.d/$CONF_NAME
say "kindlab-cni installed on $NODE_NAME: pod subnet $cidr, /etc/cni/net.d/$CONF_NAME"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""


def description(cni: str) -> str:
    """The CNI in words, as the backend line says it."""
    return ("Cilium (helm), chaining portmap through the seed's conflist" if cni == CILIUM else
            "kindlab-cni (DaemonSet kube-system/kindlab-cni) standing in for cilium-cni")


def choose(cni: str | None = None) -> str:
    """`cni`, else $KINDLAB_CNI, else Cilium where helm is installed (its chart and images come from the
    internet) and kindlab-cni otherwise."""
    choice = cni or os.environ.get("KINDLAB_CNI") or (CILIUM if shutil.which("helm") else KINDLAB)
    if choice not in CHOICES:
        raise ConfigError(f"unknown CNI {choice!r} for kind; choose one of {', '.join(CHOICES)} (--cni, KINDLAB_CNI)")
    return choice


def plugin_script(source: str) -> str:
    """kindlab-cni as the node runs it: its own python3, isolated."""
    return "#!/usr/bin/python3 -IS\n" + source


def daemonset(pod_subnet: str) -> dict[str, Any]:
    """The DaemonSet that installs kindlab-cni on every node."""
    labels = {"k8s-app": NAME}
    env = {"POD_NETWORK": pod_subnet, "DELEGATES": DELEGATES, "CONF_NAME": cni_plugin.CONF_NAME,
           "CONF": json.dumps(cni_plugin.CONF)}
    container = {
        "name": "install", "image": CNI_INSTALLER, "imagePullPolicy": "IfNotPresent",
        "securityContext": {"privileged": True},
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                *({"name": k, "value": v} for k, v in env.items())],
        "volumeMounts": [{"name": "host", "mountPath": "/host"}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"hostNetwork": True, "priorityClassName": "system-node-critical",
                     "tolerations": [{"operator": "Exists"}], "terminationGracePeriodSeconds": 1,
                     "containers": [container],
                     "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}}},
    }
