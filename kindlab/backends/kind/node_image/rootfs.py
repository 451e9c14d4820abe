"""The node image's base: a Debian 12 rootfs made by debootstrap from the machine's own Debian mirror, cached.

Minbase with what a kind node runs: systemd as PID 1, runc, iptables and nftables, conntrack, socat, ethtool,
iproute2, mount tools, and python3 (kindlab-cni and the node's registry are Python programs); then, with dpkg, the
pinned containerd 1.7 (CRI v1alpha2, which the kubelet 1.20 speaks) and CNI plugins 1.9.1 (kindlab.runtime_packages),
the same the netns labs run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .... import runtime_packages
from ....errors import EnvironmentProblem
from ....progress import Reporter, quiet

SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "runc", "iptables", "nftables", "iproute2", "kmod",
            "procps", "conntrack", "ethtool", "socat", "ca-certificates", "python3", "util-linux", "mount")
#: Installed over the base with dpkg, as the netns labs run them: the pinned CNI plugins 1.9.1 and containerd 1.7.
PINNED = runtime_packages.PINS


def mirror() -> str:
    """The machine's own Debian mirror for the suite, else Debian's default."""
    return runtime_packages.debian_mirror(SUITE)


def key() -> str:
    """What the base depends on: the suite, the mirror and the packages."""
    pins = " ".join(f"{p.package}={p.version}@{p.sha256}" for p in PINNED)
    return hashlib.sha256(f"{SUITE} {mirror()} {' '.join(PACKAGES)} {pins}".encode()).hexdigest()[:12]


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
    _install_pinned(work, report)
    for cached in (work / "var/cache/apt/archives").glob("*.deb"):
        cached.unlink()
    (work / ".kindlab-done").write_text(key() + "\n")
    work.rename(dest)
    return dest


def _install_pinned(work: Path, report: Reporter) -> None:
    """dpkg -i the pinned .debs (runtime_packages) in the new rootfs, so that its dpkg knows their versions."""
    if lack := runtime_packages.missing():
        shutil.rmtree(work, ignore_errors=True)
        raise EnvironmentProblem("the kind node image needs " + "; ".join(lack))
    inside = Path("/var/cache/apt/archives")
    for pin in PINNED:
        shutil.copyfile(pin.deb, work / inside.relative_to("/") / pin.deb.name)
    report("node image: dpkg -i " + ", ".join(f"{p.package} {p.version}" for p in PINNED))
    argv = ["chroot", str(work), "dpkg", "-i", *(str(inside / p.deb.name) for p in PINNED)]
    done = subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise EnvironmentProblem(f"installing the pinned packages in the node image failed: {done.stderr[-1500:]}")
