"""The pinned CNI plugins and containerd: fetched from the machine's mirror, refused unless their SHA-256 is the
pinned one, unpacked into the cache, and what every lab runs."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from kindlab import runtime_packages as rp
from kindlab.backends.netns import preflight
from kindlab.backends.netns.real import binaries


def test_the_mirror_is_the_machines_own(tmp_path: Path, monkeypatch):
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                       "Components: main\n\nTypes: deb\nURIs: http://mirror.example/security\nSuites: "
                       "bookworm-security\n")
    monkeypatch.setattr(rp, "SOURCES", (sources,))
    monkeypatch.delenv("KINDLAB_DEBIAN_MIRROR", raising=False)
    assert rp.debian_mirror("bookworm") == rp.mirror() == "http://mirror.example/debian"
    sources.write_text("deb [arch=amd64] http://one.example/debian bookworm main\n")
    assert rp.debian_mirror("bookworm") == "http://one.example/debian"
    monkeypatch.setattr(rp, "SOURCES", (tmp_path / "none",))
    assert rp.debian_mirror("bookworm") == rp.DEFAULT_MIRROR
    monkeypatch.setenv("KINDLAB_DEBIAN_MIRROR", "http://other.example/debian/")
    assert rp.mirror() == "http://other.example/debian"


def test_the_pins_are_the_versions_the_issue_names():
    assert (rp.CNI_PLUGINS.upstream, rp.CONTAINERD.upstream) == ("1.9.1", "1.7.24")
    for pin in rp.PINS:
        assert pin.pool.startswith("pool/main/") and pin.pool.endswith("_amd64.deb")
        assert f"_{pin.version}_" in pin.pool and len(pin.sha256) == 64


def _deb(folder: Path) -> Path:
    """A small real .deb (dpkg-deb -b) holding usr/lib/cni/portmap."""
    tree = folder / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text("Package: fake-plugins\nVersion: 1.0\nArchitecture: amd64\n"
                                         "Maintainer: kindlab <kindlab@localhost>\nDescription: a test\n")
    (tree / "usr/lib/cni").mkdir(parents=True)
    (tree / "usr/lib/cni/portmap").write_text("#!/bin/sh\n")
    deb = folder / "pool/main/f/fake-plugins_1.0_amd64.deb"
    deb.parent.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-b", "--root-owner-group", str(tree), str(deb)], check=True, capture_output=True)
    return deb


def test_a_pin_is_unpacked_only_when_its_checksum_matches(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("KINDLAB_CACHE", str(tmp_path / "cache"))
    deb = _deb(tmp_path / "mirror")
    good = hashlib.sha256(deb.read_bytes()).hexdigest()
    wrong = rp.Pin("fake-plugins", "1.0", "sid", "pool/main/f/fake-plugins_1.0_amd64.deb", "0" * 64)
    with pytest.raises(RuntimeError, match="SHA-256 .* pinned 0{64}: refusing it"):
        rp.fetch(wrong, base=f"file://{tmp_path / 'mirror'}")
    assert not wrong.ready and list((tmp_path / "cache/packages").iterdir()) == []   # nothing half-made is left
    (tmp_path / "cache/packages" / deb.name).write_bytes(b"a .deb cut short")          # a kept .deb gone bad
    pin = rp.Pin("fake-plugins", "1.0", "sid", wrong.pool, good)
    folder = rp.fetch(pin, base=f"file://{tmp_path / 'mirror'}")
    assert pin.ready and (folder / "usr/lib/cni/portmap").read_text() == "#!/bin/sh\n"
    assert pin.deb.read_bytes() == deb.read_bytes()
    deb.unlink()
    assert rp.fetch(pin, base=f"file://{tmp_path / 'mirror'}") == folder    # cached: not fetched again


def test_every_lab_runs_the_pinned_plugins_and_containerd():
    """Set-up has unpacked the pins (make setup), and the netns labs take them over the machine's packages."""
    assert rp.missing() == [] and rp.versions() == {p.package: p.version for p in rp.PINS}
    assert preflight.cni_dir() == rp.cni_dir() == rp.CNI_PLUGINS.folder / "usr/lib/cni"
    assert binaries.path().split(":")[0] == str(rp.containerd_bin())
    version = subprocess.run([str(rp.containerd_bin() / "containerd"), "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert " 1.7.24" in version
    said = subprocess.run([str(rp.cni_dir() / "portmap")], capture_output=True, text=True)
    assert "CNI portmap plugin" in said.stdout + said.stderr
