"""Hostile input and shared state (issue 32): every case of the probe (tests/hostile_sweep.py) is refused with
kindlab's one-line error and its exit code, or works (the controls); a hang fails the case (the sweep's
subprocess timeout). Also: a hostPath folder made for one lab survives while another lab mounts it, and a
killed `create` leaves no node set-up shell behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from hostile_sweep import CASES, HEAD, Case, run_case, silent_server

from kindlab import backends, input_files, objects, topology
from kindlab.backends.netns import processes
from kindlab.backends.netns.names import ledger, marker, state_dir
from kindlab.backends.netns.state import hostpaths
from kindlab.backends.netns.state.store import read_json
from kindlab.errors import ConfigError, ManifestError

LAB = "hostile"


@pytest.fixture(scope="module")
def port() -> str:
    return str(silent_server())


@pytest.fixture(scope="module")
def sweep_lab(netns_ready, tmp_path_factory):
    """The lab the cases that need one run on: a control-plane and a worker."""
    config = tmp_path_factory.mktemp("hostile") / "config"
    config.write_text(HEAD + "nodes:\n- role: control-plane\n- role: worker\n")
    backends.delete(LAB, backend="netns")
    lab = backends.up(config, name=LAB, backend="netns", backoff=0.5, kubernetes="model")
    yield lab
    backends.delete(LAB, backend="netns")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_case_is_refused_in_one_line_or_works(case: Case, request, tmp_path, port):
    if case.lab:
        request.getfixturevalue("sweep_lab")
    started = time.monotonic()
    category, done = run_case(ROOT, case, tmp_path / "case", {"lab": LAB, "worker": f"{LAB}-worker", "port": port})
    assert done is not None, f"{case.id} hung (no answer in the sweep's timeout)"
    if case.refuse:
        assert done.returncode == case.code, done
        assert done.stderr.startswith("kindlab: error: ") and len(done.stderr.splitlines()) == 1, done.stderr
        assert case.words in done.stderr, done.stderr
        assert category == "clear errors"
    else:
        assert done.returncode == 0, done
    if case.probe == "hang":
        assert time.monotonic() - started < 15


@pytest.mark.parametrize("text, words", [
    ("a: &x [*x]\n", "line 1: not valid YAML: an alias refers to the value that holds it"),
    ("a: 1\nb: 2\na: 3\n", "line 3: not valid YAML: duplicate key 'a'"),
    ("[" * 101 + "]" * 101, "line 1: not valid YAML: nested more than 100 levels deep"),
    ("a: 1\x00\n", "character 4: not valid YAML: U+0000 is not allowed"),
])
def test_yaml_that_cannot_be_read_in_bounded_time_or_means_two_things(text, words):
    with pytest.raises(ManifestError, match="^<m>: " + re.escape(words)):
        input_files.load_all(text, "<m>", ManifestError)


def test_a_merge_key_may_be_overridden_and_a_small_alias_is_fine():
    assert input_files.load_one("base: &b {x: 1}\nc:\n  <<: *b\n  x: 2\n", "<m>", ManifestError)["c"] == {"x": 2}


def test_inputs_larger_than_the_limit_are_refused_before_they_are_parsed(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("#" * (input_files.MAX_BYTES + 1))
    with pytest.raises(ConfigError, match=f"more than the {input_files.MAX_BYTES}-byte limit"):
        topology.load(big)
    with pytest.raises(ManifestError, match=f"more than the {input_files.MAX_BYTES}-byte limit"):
        objects.load(big)


def two_labs_config(folder: Path, shared: Path) -> Path:
    path = folder / "config"
    path.write_text(HEAD + f"nodes:\n- role: control-plane\n  extraMounts:\n  - containerPath: /data\n"
                           f"    hostPath: {shared}\n")
    return path


def test_a_made_host_folder_lives_until_its_last_lab_goes(netns_ready, tmp_path):
    shared = tmp_path / "data"                  # missing: made by the first lab, as Docker makes it
    config = two_labs_config(tmp_path, shared)
    try:
        first = backends.up(config, name="share-a", backend="netns", kubernetes="model")
        second = backends.up(config, name="share-b", backend="netns", kubernetes="model")
        assert sorted(hostpaths.users()[str(shared)]) == ["share-a", "share-b"]
        second.exec("share-b-control-plane", ["sh", "-c", "echo kept > /data/file"])
        assert backends.delete(first.name, backend="netns")
        assert (shared / "file").read_text() == "kept\n"           # the other lab's data is still there
        assert second.exec("share-b-control-plane", ["cat", "/data/file"]) == "kept\n"
        assert backends.delete(second.name, backend="netns")
        assert not shared.exists()                                   # gone with its last user
    finally:
        for name in ("share-a", "share-b"):
            backends.delete(name, backend="netns")


def test_a_host_folder_replaced_after_it_was_made_is_never_deleted(netns_ready, tmp_path):
    shared = tmp_path / "data"
    config = two_labs_config(tmp_path, shared)
    try:
        backends.up(config, name="share-a", backend="netns", kubernetes="model")
        os.rename(shared, tmp_path / "made")      # the user moves the lab's folder away and puts their own there
        shared.mkdir()
        (shared / "mine").write_text("the user's")
        backends.delete("share-a", backend="netns")
        assert (shared / "mine").read_text() == "the user's"
        assert str(shared) not in hostpaths.users()
    finally:
        backends.delete("share-a", backend="netns")


def test_a_killed_create_leaves_no_node_set_up_shell(netns_ready, tmp_path):
    config = tmp_path / "config"
    config.write_text(HEAD + "nodes:\n- role: control-plane\n" + "- role: worker\n" * 15)
    name = "killed"
    backends.delete(name, backend="netns")
    argv = ["create", "cluster", "--name", name, "--config", str(config), "--backend", "netns", "--kubernetes", "model"]
    create = subprocess.Popen([sys.executable, "-m", "kindlab.cli", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    last = state_dir(name) / "ns" / f"{name}-worker15.mnt"     # touched just before the last shell starts
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not last.exists():
            time.sleep(0.0005)        # then every node's shell is started or being started, none is done
        create.send_signal(signal.SIGKILL)
        create.wait()
        assert (read_json(state_dir(name) / "lab.json") or {}).get("phase") == "creating"   # killed mid-way
        assert len(_ledger_lines(name)) >= 15       # every shell started before the last is in the ledger
        backends.delete(name, backend="netns")
        assert not [p for p in _processes_naming(marker(name))], "a node set-up shell outlived the lab"
        assert not state_dir(name).exists()
    finally:
        create.kill()
        backends.delete(name, backend="netns")


def _ledger_lines(name: str) -> list[str]:
    try:
        return ledger(name).read_text().splitlines()
    except OSError:
        return []


def _processes_naming(word: str) -> list[int]:
    """Live processes whose command line holds `word` anywhere (a set-up shell's script names its node's title)."""
    out = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if pid != os.getpid() and processes.alive(pid) and any(word in w for w in processes.cmdline(pid)):
            out.append(pid)
    return out


def test_create_says_what_it_waits_for(netns_ready, tmp_path):
    """While another process makes or deletes a lab (it holds the machine's lifecycle lock), `create` names it."""
    import fcntl

    from kindlab.backends.netns import lifecycle

    config = tmp_path / "config"
    config.write_text(HEAD + "nodes:\n- role: control-plane\n")
    lifecycle.STATE_ROOT.mkdir(parents=True, exist_ok=True)
    argv = ["create", "cluster", "--name", "waiter", "--config", str(config), "--backend", "netns", "--kubernetes",
            "model"]
    try:
        with open(lifecycle.LOCK, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            create = subprocess.Popen([sys.executable, "-m", "kindlab.cli", *argv], cwd=ROOT, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert create.stderr is not None
            line = create.stderr.readline()
            assert line.startswith(f"netns: waiting for process {os.getpid()} (")
            assert "labs are made and deleted one at a time" in line
        out, err = create.communicate(timeout=120)
        assert create.returncode == 0, err
    finally:
        backends.delete("waiter", backend="netns")
