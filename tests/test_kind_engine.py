"""kindlab's own Docker Engine: the runtime that leaves out what the machine cannot grant, which Docker is used."""

from __future__ import annotations

import json
from pathlib import Path

from kindlab.backends.kind import docker_host, runc_caps


def test_the_sub_command_is_found_after_runcs_global_options():
    argv = ["--root", "/run/r", "--log", "/l.json", "--log-format", "json", "--systemd-cgroup", "create",
            "--bundle", "/b", "--pid-file", "/p", "id"]
    assert runc_caps.command(argv) == ("create", ["--bundle", "/b", "--pid-file", "/p", "id"])
    assert runc_caps.option(["--bundle=/x", "id"], "--bundle", "-b") == "/x"
    assert runc_caps.option(["-p", "/proc.json"], "--process", "-p") == "/proc.json"
    assert runc_caps.command(["--version"]) == ("", [])


def test_a_spec_keeps_only_the_capabilities_the_bounding_set_holds(tmp_path: Path):
    caps = ["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]
    spec = {"process": {"capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")}},
            "root": {"path": "rootfs"}}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    runc_caps.trim_file(str(tmp_path / "config.json"), {"CAP_SYS_ADMIN", "CAP_NET_ADMIN"}, spec=True)
    trimmed = json.loads((tmp_path / "config.json").read_text())
    assert trimmed["process"]["capabilities"] == {k: ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
                                                 for k in ("bounding", "effective", "permitted")}
    assert trimmed["root"] == {"path": "rootfs"}


def test_the_bounding_set_is_read_as_this_process_has_it():
    with open("/proc/self/status") as status:
        mask = int(next(line.split()[1] for line in status if line.startswith("CapBnd:")), 16)
    assert len(runc_caps.bounding_set()) == bin(mask).count("1")
    assert ("CAP_SYS_ADMIN" in runc_caps.bounding_set()) == bool(mask >> 21 & 1)


def test_the_machines_docker_is_used_where_one_answers(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert docker_host.machine_docker() == "tcp://127.0.0.1:2375" and not docker_host.own()
    assert docker_host.env()["DOCKER_HOST"] == "tcp://127.0.0.1:2375" and docker_host.netns() is None
    monkeypatch.setenv("DOCKER_HOST", docker_host.OWN.url)   # kindlab's own, named: still kindlab's
    assert docker_host.own() and docker_host.netns() == docker_host.OWN.netns_path


def test_without_a_docker_kindlabs_own_engine_is_the_one(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(docker_host, "DEFAULT_SOCKET", tmp_path / "docker.sock")
    assert docker_host.own() and docker_host.env()["DOCKER_HOST"] == docker_host.OWN.url
