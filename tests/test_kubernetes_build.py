"""Set-up's Kubernetes build (scripts/build-kubernetes.sh): made with every backported fix of
scripts/kubernetes-patches, and made again when one changes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from kindlab import kubernetes_build

PATCHES = Path(__file__).resolve().parents[1] / "scripts" / "kubernetes-patches"


def test_every_patch_says_what_it_fixes_and_where_it_comes_from():
    patches = sorted(PATCHES.glob("*.patch"))
    assert patches
    for patch in patches:
        text = patch.read_text()
        assert re.search(r"^Description: \S", text, re.M), patch.name
        assert re.search(r"^Origin: (backport|upstream), https://github\.com/kubernetes/kubernetes/", text, re.M)
        assert re.search(r"^--- a/\S+\n\+\+\+ b/\S+\n@@ ", text, re.M), f"{patch.name}: not a -p1 unified diff"


def test_the_build_in_use_was_made_with_the_patches_of_this_checkout():
    """The stamp names the patches' digest as the script computes it (`cat *.patch | sha256sum`), so a changed
    patch makes set-up build again."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(PATCHES.glob("*.patch")))).hexdigest()[:12]
    folder = kubernetes_build.bin_dir(["kube-controller-manager", "kubelet", "kubeadm"])
    if folder is None:   # set-up cannot build here (not Debian 12, not root); under CI that skip fails
        pytest.skip("no Kubernetes build: run `make setup` (scripts/build-kubernetes.sh)")
    assert f"patches-{digest}" in (folder.parent / ".built").read_text().split()
