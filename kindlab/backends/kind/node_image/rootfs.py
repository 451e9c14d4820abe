"""The node image's base: a Debian 12 rootfs made by debootstrap from the machine's own Debian mirror, cached.

Minbase with what a kind node runs: systemd as PID 1, containerd and runc (Debian's: CRI v1alpha2, which the
kubelet 1.20 speaks), iptables and nftables, the CNI reference plugins, conntrack, socat, ethtool, iproute2,
mount tools, and python3 (kindlab-cni and the node's registry are Python programs).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from ....errors import EnvironmentProblem
from ....progress import Reporter, quiet

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "containerd", "runc", "iptables", "nftables", "iproute2", "kmod",
            "procps", "conntrack", "ethtool", "socat", "ca-certificates", "containernetworking-plugins", "python3",
            "util-linux", "mount")
SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


def mirror() -> str:
    """The machine's own Debian mirror for the suite (deb822 or one-line sources), else Debian's default."""
    for path in SOURCES:
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in text.split("\n\n"):
            if re.search(rf"^Suites:.*\b{SUITE}\b", stanza, re.M) and re.search(r"^Types:.*\bdeb\b", stanza, re.M):
                if found := re.search(r"^URIs:\s*(\S+)", stanza, re.M):
                    return found.group(1)
        if found := re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", text, re.M):
            return found.group(1)
    return DEFAULT_MIRROR


def key() -> str:
    """What the base depends on: the suite, the mirror and the packages."""
    return hashlib.sha256(f"{SUITE} {mirror()} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]


def base(cache: Path, report: Reporter = quiet) -> Path:
    """The debootstrapped rootfs, made once per key under `cache`; its path."""
    dest = cache / f"rootfs-{key()}"
    if (dest / ".kindlab-done").is_file():
        return dest
    if os.geteuid() != 0:
        raise EnvironmentProblem("building the kind node image needs root (debootstrap)")
    if not shutil.which("debootstrap"):
        raise EnvironmentProblem("building the kind node image needs debootstrap: apt-get install debootstrap "
                                 "(make setup installs it)")
    work = dest.with_name(dest.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    report(f"node image: debootstrap {SUITE} (minbase and {len(PACKAGES)} packages) from {mirror()}")
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(work), mirror()]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        log = (work / "debootstrap" / "debootstrap.log")
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else done.stderr[-1500:]
        shutil.rmtree(work, ignore_errors=True)
        raise EnvironmentProblem(f"debootstrap of {SUITE} failed (exit {done.returncode}):\n{tail}")
    for cached in (work / "var/cache/apt/archives").glob("*.deb"):
        cached.unlink()
    (work / ".kindlab-done").write_text(key() + "\n")
    work.rename(dest)
    return dest
