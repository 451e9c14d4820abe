#!/usr/bin/python3 -I
"""runc, less the capabilities this machine cannot grant: the default runtime of kindlab's own Docker Engine.

dockerd hands runc an OCI spec. For a `--privileged` container (every kind node) that spec asks for every
capability, and runc fails (`unable to apply caps: operation not permitted`) when the machine's capability
bounding set lacks one of them (here CAP_SYS_RESOURCE). This wrapper, registered with dockerd's
`--add-runtime` and made the default, removes the capabilities the calling process's bounding set lacks
from the spec of `create`/`run` (the bundle's config.json) and from the process file of `exec`, then hands
over to runc with the same arguments. A container so made has exactly what the machine could give it.
Standalone (stdlib only): dockerd's shim runs it as a program.
"""

from __future__ import annotations

import json
import os
import sys

RUNC = os.environ.get("KINDLAB_RUNC", "/usr/sbin/runc")
#: Linux's capability numbers, as the OCI spec names them (capability(7)); CAP_LAST_CAP is 40 (CHECKPOINT_RESTORE).
NAMES = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
         "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
         "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
         "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
         "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
         "CHECKPOINT_RESTORE"]
#: runc's global options that take a value (runc --help), to find the sub-command after them.
VALUED = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def bounding_set() -> set[str]:
    """The capabilities of this process's bounding set, as "CAP_NAME"s (from /proc/self/status CapBnd)."""
    with open("/proc/self/status") as status:
        mask = int(next(line.split()[1] for line in status if line.startswith("CapBnd:")), 16)
    return {f"CAP_{name}" for bit, name in enumerate(NAMES) if mask >> bit & 1}


def command(argv: list[str]) -> tuple[str, list[str]]:
    """runc's sub-command and the arguments after it."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in VALUED:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg, argv[i + 1:]
    return "", []


def option(args: list[str], *names: str) -> str | None:
    """The value of the first of `names` in `args` (`--name VALUE` or `--name=VALUE`)."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def trim(capabilities: dict[str, list[str]], allowed: set[str]) -> dict[str, list[str]]:
    """Each capability set with only what `allowed` holds."""
    return {kind: [c for c in caps if c in allowed] for kind, caps in capabilities.items()}


def trim_file(path: str, allowed: set[str], spec: bool) -> None:
    """Rewrite a spec (config.json: its process's capabilities) or a process file (exec) in place."""
    with open(path) as f:
        doc = json.load(f)
    process = doc.get("process", {}) if spec else doc
    if process.get("capabilities"):
        process["capabilities"] = trim(process["capabilities"], allowed)
        with open(path, "w") as f:
            json.dump(doc, f)


def main(argv: list[str]) -> None:
    sub, rest = command(argv)
    allowed = bounding_set()
    if sub in ("create", "run"):
        bundle = option(rest, "--bundle", "-b") or "."
        trim_file(os.path.join(bundle, "config.json"), allowed, spec=True)
    elif sub == "exec" and (process := option(rest, "--process", "-p")):
        trim_file(process, allowed, spec=False)
    os.execv(RUNC, [RUNC, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
