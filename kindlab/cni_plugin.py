"""kindlab-cni: the lab's primary CNI plugin, standing in for cilium-cni.

Like flannel's CNI plugin, it reads the node's pod subnet from a node-local file
(/run/kindlab/node/subnet.env, written by the provider install) and delegates to the
reference `bridge` plugin with `host-local` IPAM, returning their result as its own.
Like cilium-cni, it carries what it needs: the delegates are taken from the provider's own
folder (KINDLAB_DELEGATE_PATH, the machine's CNI package), not from the node's /opt/cni/bin,
so a node whose /opt/cni/bin holds only kindlab-cni and loopback still gets pod networks.
The provider installs this file, with a `#!python -IS` line, as /opt/cni/bin/kindlab-cni:
it uses only the standard library and must stay a single file.
"""

import json
import os
import sys

SUBNET_FILE = "/run/kindlab/node/subnet.env"
PLUGIN = "kindlab-cni"
#: The provider's own config, as Cilium 1.5 wrote 05-cilium.conf (today: 05-cilium.conflist).
CONF_NAME = "05-kindlab.conf"
CONF = {"cniVersion": "0.4.0", "name": "kindlab", "type": PLUGIN}
SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]


def fail(code: int, msg: str, details: str = "", version: str = "0.4.0") -> int:
    """Print a CNI error result and return the exit status."""
    print(json.dumps({"cniVersion": version, "code": code, "msg": msg, "details": details}))
    return 1


def read_env(path: str) -> dict:
    """KEY=VALUE lines."""
    out = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                out[key] = value
    return out


def delegate_config(conf: dict, subnet: str, mtu: int) -> dict:
    """The bridge + host-local configuration for this node's pod subnet."""
    out = {
        "cniVersion": conf.get("cniVersion", "0.4.0"),
        "name": conf.get("name", "kindlab"),
        "type": "bridge",
        "bridge": conf.get("bridge", "cni0"),
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "mtu": mtu,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": os.path.join(os.path.dirname(conf.get("subnetFile", SUBNET_FILE)), "ipam"),
        },
    }
    for key in ("prevResult", "runtimeConfig", "args"):
        if key in conf:
            out[key] = conf[key]
    return out


def find(plugin: str, path: str) -> str | None:
    """The plugin's path in `path` (folders separated by ':'), as libcni looks for it."""
    for folder in path.split(os.pathsep):
        path = os.path.join(folder, plugin)
        if folder and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    if command == "VERSION":
        print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS}))
        return 0
    try:
        conf = json.load(sys.stdin)
    except ValueError as exc:
        return fail(6, "failed to parse network configuration", str(exc))
    version = conf.get("cniVersion", "0.4.0")
    if command not in ("ADD", "DEL", "CHECK"):
        return fail(4, f"unknown CNI_COMMAND {command!r}", version=version)
    subnet_file = conf.get("subnetFile", SUBNET_FILE)
    try:
        env = read_env(subnet_file)
        subnet, mtu = env["KINDLAB_SUBNET"], int(env.get("KINDLAB_MTU", "1500"))
    except (OSError, KeyError, ValueError) as exc:
        if command == "DEL":   # nothing was set up without a subnet: DEL must succeed
            return 0
        return fail(11, f"failed to load {subnet_file}: is the kindlab provider installed on this node?",
                    str(exc), version)
    delegates = env.get("KINDLAB_DELEGATE_PATH") or os.environ.get("CNI_PATH", "")
    bridge = find("bridge", delegates)
    if bridge is None:
        return fail(11, f'failed to find plugin "bridge" in path [{delegates.replace(os.pathsep, " ")}]',
                    version=version)
    os.environ["CNI_PATH"] = delegates   # where bridge finds host-local
    data = json.dumps(delegate_config(conf, subnet, mtu)).encode()
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    os.dup2(read_end, 0)
    os.execv(bridge, [bridge])   # bridge's result and exit status are ours
    return 1


if __name__ == "__main__":
    sys.exit(main())
