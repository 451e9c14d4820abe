"""The container runtime and CNI plugins every lab runs: Debian's newer builds, pinned, unpacked into the cache.

Debian 12 ships the CNI plugins 1.1.1 (2022) and containerd 1.6.20. kindlab runs what a reader's cluster runs
today where it can: the CNI plugins 1.9.1 (portmap's nftables backend, the 1.9.0 DNAT fix) and containerd 1.7,
the last containerd that serves CRI v1alpha2, the only CRI the kubelet 1.20 speaks. Both come from Debian's
newer suites as .deb files, fetched from the machine's Debian mirror by their pool path, checked against the
SHA-256 of the suite's Packages index, and unpacked with `dpkg-deb -x` into

    $KINDLAB_CACHE/packages/<package>_<version>/   the package's files (usr/bin, usr/lib/cni, ...)
    $KINDLAB_CACHE/packages/<package>_<version>/.kindlab-sha256   the stamp, written last
    $KINDLAB_CACHE/packages/<the .deb>                            kept: the kind node image installs it

The machine's own packages are not touched. Set-up runs `python -m kindlab.runtime_packages` (scripts/setup.sh).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .kubernetes_build import cache_root

DEFAULT_MIRROR = "http://deb.debian.org/debian"
STAMP = ".kindlab-sha256"
SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


@dataclass(frozen=True)
class Pin:
    """One .deb: its package, version, the suite that carries it, its pool path and SHA-256."""

    package: str
    version: str
    suite: str
    pool: str
    sha256: str

    @property
    def upstream(self) -> str:
        """The upstream version: 1.9.1+ds1-1 -> 1.9.1."""
        return self.version.split("+", 1)[0].split("~", 1)[0]

    @property
    def folder(self) -> Path:
        """Where it is unpacked."""
        return cache_root() / "packages" / f"{self.package}_{self.version}"

    @property
    def deb(self) -> Path:
        """The .deb itself, kept in the cache."""
        return cache_root() / "packages" / Path(self.pool).name

    @property
    def ready(self) -> bool:
        """True when the folder holds this exact .deb's files and the .deb is kept."""
        try:
            return (self.folder / STAMP).read_text().strip() == self.sha256 and self.deb.is_file()
        except OSError:
            return False


CNI_PLUGINS = Pin("containernetworking-plugins", "1.9.1+ds1-1", "sid",
                  "pool/main/g/golang-github-containernetworking-plugins/containernetworking-plugins_1.9.1+ds1-1_amd64.deb",
                  "12857dd3136d61e00bffcc2c8823d14df586e94406098326e02846cfa46a058e")
CONTAINERD = Pin("containerd", "1.7.24~ds1-6+deb13u1", "trixie",
                 "pool/main/c/containerd/containerd_1.7.24~ds1-6+deb13u1_amd64.deb",
                 "ed708deb96fe476a3bce4efa5c0538dfbcf717ab9a7c7944ba7260342c25899c")
PINS = (CNI_PLUGINS, CONTAINERD)
#: The containerd binaries a node runs (containerd finds its shim on PATH).
CONTAINERD_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")


def cni_dir() -> Path | None:
    """The pinned CNI plugins' folder (usr/lib/cni of the unpacked package), or None before set-up."""
    return CNI_PLUGINS.folder / "usr/lib/cni" if CNI_PLUGINS.ready else None


def containerd_bin() -> Path | None:
    """The pinned containerd's usr/bin, or None before set-up."""
    return CONTAINERD.folder / "usr/bin" if CONTAINERD.ready else None


def versions() -> dict[str, str]:
    """What the labs run: package -> Debian version, for the ones set-up has unpacked."""
    return {p.package: p.version for p in PINS if p.ready}


@functools.cache   # a lab's `capabilities` are read on every wait; dpkg's answer does not change meanwhile
def describe_cni_dir(folder: Path | str) -> str:
    """What a lab's plugin folder holds, in words: the pin's package and version, else the machine's package."""
    if Path(folder) == CNI_PLUGINS.folder / "usr/lib/cni":
        return f"{CNI_PLUGINS.package} {CNI_PLUGINS.version} (Debian {CNI_PLUGINS.suite}, kindlab's cache)"
    try:
        owner = subprocess.run(["dpkg-query", "-S", str(Path(folder) / "portmap")], capture_output=True, text=True,
                               timeout=10).stdout.split(":", 1)[0].strip()
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", owner], capture_output=True, text=True,
                                 timeout=10).stdout.strip() if owner else ""
    except (OSError, subprocess.TimeoutExpired):
        owner = version = ""
    return f"{owner} {version} (the machine's package)" if version else f"the plugins in {folder}"


def missing() -> list[str]:
    """The pins set-up has not unpacked yet, each with how to get it."""
    return [f"{p.package} {p.version} in {p.folder} (make setup: python -m kindlab.runtime_packages)"
            for p in PINS if not p.ready]


def debian_mirror(suite: str) -> str:
    """The machine's own Debian mirror for `suite` (deb822 or one-line apt sources), else Debian's default."""
    for path in SOURCES:
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in text.split("\n\n"):
            if re.search(rf"^Suites:.*\b{suite}\b", stanza, re.M) and re.search(r"^Types:.*\bdeb\b", stanza, re.M):
                if found := re.search(r"^URIs:\s*(\S+)", stanza, re.M):
                    return found.group(1)
        if found := re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{suite}\s", text, re.M):
            return found.group(1)
    return DEFAULT_MIRROR


def mirror() -> str:
    """Where the pins are fetched from: $KINDLAB_DEBIAN_MIRROR, else the mirror of the machine's Debian 12 (its
    pool holds every suite's files)."""
    return (os.environ.get("KINDLAB_DEBIAN_MIRROR") or debian_mirror("bookworm")).rstrip("/")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _download(url: str, dest: Path, want: str) -> None:
    """Fetch `url` into `dest`, refusing it (and leaving nothing) unless its SHA-256 is `want`."""
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=120) as answer, part.open("wb") as out:  # noqa: S310 (http(s) mirror)
        shutil.copyfileobj(answer, out, 1 << 20)
    if (got := _sha256(part)) != want:
        part.unlink()
        raise RuntimeError(f"{url}: SHA-256 {got}, pinned {want}: refusing it")
    part.rename(dest)


def fetch(pin: Pin, base: str | None = None) -> Path:
    """Fetch `pin`'s .deb (kept beside its folder: the node image installs it with dpkg) and unpack it, unless
    both are there already; the folder."""
    if pin.ready:
        return pin.folder
    pin.folder.parent.mkdir(parents=True, exist_ok=True)
    if not pin.deb.is_file() or _sha256(pin.deb) != pin.sha256:
        pin.deb.unlink(missing_ok=True)
        _download(f"{base or mirror()}/{pin.pool}", pin.deb, pin.sha256)
    with tempfile.TemporaryDirectory(dir=pin.folder.parent, prefix=".unpack-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["dpkg-deb", "-x", str(pin.deb), str(tree)], check=True)
        (tree / STAMP).write_text(pin.sha256 + "\n")
        shutil.rmtree(pin.folder, ignore_errors=True)
        tree.rename(pin.folder)
    return pin.folder


def main() -> int:
    """Fetch every pin (set-up's step); says which it took. Exit 3 where this machine cannot unpack a .deb (the
    labs then run the machine's own CNI plugins, and the real lab does not run)."""
    if not shutil.which("dpkg-deb"):
        print("kindlab setup: no dpkg-deb: the labs use the machine's own CNI plugins, and real Kubernetes "
              "(which needs the pinned containerd) does not run here", file=sys.stderr)
        return 3
    for pin in PINS:
        was = pin.ready
        try:
            fetch(pin)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"kindlab setup: could not fetch {pin.package} {pin.version} ({pin.suite}): {exc}", file=sys.stderr)
            return 1
        print(f"kindlab setup: {pin.package} {pin.version} (Debian {pin.suite}, sha256 {pin.sha256[:12]}) "
              f"{'cached' if was else 'unpacked'} in {pin.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
