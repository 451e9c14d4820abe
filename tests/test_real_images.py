"""Images made on the machine: valid OCI layouts and archives, served by the lab's registry, and an echo
server that answers like kindlab's and stops on SIGTERM as PID 1."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kindlab.backends.netns.real import binaries
from kindlab.backends.oci import images, registry

PYTHON_MISSING = not images.PYTHON.exists()


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, images.Image]:
    folder = tmp_path_factory.mktemp("images")
    built = binaries.bin_dir()
    pause = built / "pause" if built else Path("/bin/true")   # any executable makes a valid layout
    out = {"pause": images.pause_image(pause, folder)}
    if not PYTHON_MISSING:
        out["echo"] = images.echo_image(folder)
    return out


def blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def check_layout(image: images.Image) -> tuple[dict, list[str]]:
    """Assert the OCI image-layout rules; return the config and the layer's member names."""
    layout = image.layout
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2 and len(index["manifests"]) == 1
    desc = index["manifests"][0]
    assert desc["mediaType"] == images.MANIFEST and desc["digest"] == image.manifest_digest
    assert desc["annotations"]["io.containerd.image.name"] == image.name
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == image.tag
    manifest_bytes = blob(layout, desc["digest"])
    assert len(manifest_bytes) == desc["size"]
    manifest = json.loads(manifest_bytes)
    assert manifest["schemaVersion"] == 2 and manifest["config"]["mediaType"] == images.CONFIG
    config_bytes = blob(layout, manifest["config"]["digest"])
    assert len(config_bytes) == manifest["config"]["size"]
    config = json.loads(config_bytes)
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == images.LAYER
    layer_bytes = blob(layout, layer["digest"])
    assert len(layer_bytes) == layer["size"]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}   # uncompressed: digest == diff_id
    with tarfile.open(fileobj=__import__("io").BytesIO(layer_bytes)) as tar:
        members = tar.getmembers()
    assert all(m.uid == 0 and m.gid == 0 for m in members)
    assert all(m.mtime == 0 for m in members if m.isdir())
    names = [m.name for m in members]
    assert names == sorted(names) and len(names) == len(set(names))
    with tarfile.open(image.archive) as archive:   # the archive is the layout, file for file
        arc = {m.name for m in archive.getmembers() if m.isfile()}
    on_disk = {str(p.relative_to(layout)) for p in layout.rglob("*") if p.is_file()}
    assert arc == on_disk and {"oci-layout", "index.json"} <= arc
    return config, names


def test_pause_image_is_a_valid_layout(made):
    image = made["pause"]
    assert image.name == "registry.k8s.io/pause:3.2" and image.repository == "pause" and image.tag == "3.2"
    config, names = check_layout(image)
    assert config["config"]["Entrypoint"] == ["/pause"] and "pause" in names


@pytest.mark.skipif(PYTHON_MISSING, reason=f"{images.PYTHON} (Debian's python3.11) is not installed")
def test_echo_image_is_a_small_valid_layout(made):
    image = made["echo"]
    assert image.name == "docker.io/inanimate/echo-server:latest" and image.repository == "inanimate/echo-server"
    config, names = check_layout(image)
    assert config["config"]["Entrypoint"][0] == str(images.PYTHON)
    assert {"app/entry.py", "app/kindlab/echo.py", "usr/lib/python3.11/http/server.py", "lib64/ld-linux-x86-64.so.2",
            "tmp"} <= set(names)
    assert not [n for n in names if "_ssl" in n or "lzma" in n]   # optional modules left out
    assert image.size < 25 * 2**20
    assert Path(image.layout / "blobs").exists()


@pytest.mark.skipif(PYTHON_MISSING, reason=f"{images.PYTHON} (Debian's python3.11) is not installed")
def test_the_echo_image_s_cached_bytecode_is_valid_for_its_sources(made):
    """Python uses a .pyc only while its header's source mtime and size are the source's: a stale one is
    compiled again at every start (and -B keeps the result from being written)."""
    layout = made["echo"].layout
    manifest = json.loads(blob(layout, made["echo"].manifest_digest))
    with tarfile.open(layout / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]) as tar:
        members = {m.name: m for m in tar.getmembers()}
        checked = 0
        for name, member in members.items():
            source = re.sub(r"__pycache__/(\w+)\.cpython-\d+\.pyc$", r"\1.py", name)
            if source == name or source not in members:
                continue
            header = tar.extractfile(member).read(16)
            flags, mtime, size = (int.from_bytes(header[i:i + 4], "little") for i in (4, 8, 12))
            assert (flags, mtime, size) == (0, members[source].mtime & 0xFFFFFFFF, members[source].size), name
            checked += 1
    assert checked >= 20   # http.server, socketserver, email, ... all have their bytecode


def test_images_are_reproducible(made, tmp_path):
    again = images.pause_image(Path(binaries.bin_dir() or "/bin") / ("pause" if binaries.bin_dir() else "true"),
                               tmp_path)
    assert again.manifest_digest == made["pause"].manifest_digest


def test_the_registry_serves_the_layouts(made):
    server = registry.Registry(registry.Layouts([i.layout for i in made.values()]))
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/v2/") as r:
            assert r.status == 200 and r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        pause = made["pause"]
        with urllib.request.urlopen(f"{base}/v2/pause/manifests/3.2?ns=registry.k8s.io") as r:
            manifest = r.read()
            assert r.headers["Docker-Content-Digest"] == pause.manifest_digest
            assert r.headers["Content-Type"] == images.MANIFEST
        head = urllib.request.Request(f"{base}/v2/pause/manifests/{pause.manifest_digest}", method="HEAD")
        with urllib.request.urlopen(head) as r:
            assert r.headers["Content-Length"] == str(len(manifest)) and r.read() == b""
        layer = json.loads(manifest)["layers"][0]["digest"]
        with urllib.request.urlopen(f"{base}/v2/pause/blobs/{layer}") as r:
            assert "sha256:" + hashlib.sha256(r.read()).hexdigest() == layer
        for missing in ("/v2/pause/manifests/latest", "/v2/nginx/manifests/1.25", f"/v2/nothere/blobs/{layer}",
                        "/v2/pause/blobs/sha256:00", "/v2/pause/blobs/sha256:..%2f..%2findex.json"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + missing)
            assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.netns
@pytest.mark.skipif(PYTHON_MISSING or os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root, unshare and Debian's python3.11")
def test_echo_rootfs_answers_and_stops_on_sigterm_as_pid_1(made, tmp_path):
    """The echo image's rootfs, chrooted as PID 1 of new PID and network namespaces."""
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    layout = made["echo"].layout
    manifest = json.loads(blob(layout, made["echo"].manifest_digest))
    with tarfile.open(layout / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]) as tar:
        tar.extractall(rootfs, filter="tar")
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc/hosts").write_text("127.0.0.1\tlocalhost\n10.244.1.5\techo-pod\n")
    (rootfs / "etc/resolv.conf").write_text("nameserver 10.96.0.10\n")
    config = json.loads(blob(layout, manifest["config"]["digest"]))["config"]
    proc = subprocess.Popen(["unshare", "--net", "--pid", "--fork", "--kill-child", shutil.which("chroot"), str(rootfs),
                             *config["Entrypoint"]], env={"HOSTNAME": "echo-pod", "PATH": "/usr/bin:/bin"})
    try:
        def child() -> int | None:
            text = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            return int(text[0]) if text else None
        deadline = time.monotonic() + 10
        while (pid := child()) is None or Path(f"/proc/{pid}/exe").resolve().name != "python3.11":
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        enter = ["nsenter", f"--net=/proc/{pid}/ns/net"]
        subprocess.run([*enter, "ip", "link", "set", "lo", "up"], check=True)
        body = ""
        while "My hostname" not in body and time.monotonic() < deadline:
            body = subprocess.run([*enter, "curl", "-s", "--max-time", "1", "http://127.0.0.1:8080/x"],
                                  capture_output=True, text=True).stdout
            time.sleep(0.05)
        assert "-> My hostname is: echo-pod" in body and "10.244.1.5\techo-pod" in body and "GET /x" in body
        start = time.monotonic()
        os.kill(pid, signal.SIGTERM)   # ignored by a PID 1 without a handler
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - start < 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_registry_runs_as_a_process_and_stops_on_sigterm(made):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "kindlab.backends.oci.registry", "--listen",
                             f"127.0.0.1:{port}", "--marker", "kindlab-lab=kr-test", str(made["pause"].layout)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/pause/manifests/3.2", timeout=1) as r:
                    assert r.headers["Docker-Content-Digest"] == made["pause"].manifest_digest
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "the registry did not start"
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
