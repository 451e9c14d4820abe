"""The command line: help, version, and user mistakes as one line without a traceback."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from kindlab import cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kindlab.cli", *args], capture_output=True, text=True, timeout=60)


def test_version_and_help():
    assert run("--version").stdout.strip().startswith("kindlab ")
    out = run("--help").stdout
    for verb in ("create", "delete", "get", "apply", "exec", "cp", "curl", "doctor"):
        assert verb in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["get", "pods", "--backend", "netns", "--name", "no-such-lab"], "no-such-lab"),
        (["apply", "-f", "does/not/exist.yaml", "--backend", "netns", "--name", "no-such-lab"],
         "does/not/exist.yaml: no such file"),       # read before the cluster is looked for
        (["apply", "-f", "manifests/static", "--backend", "netns", "--name", "no-such-lab"], "no-such-lab"),
        (["create", "cluster", "--name", "x", "--config", "does/not/exist", "--backend", "netns"],
         "no such kind config file"),
        (["delete", "clusters", "--backend", "netns"], "needs --all"),
        (["delete", "pod", "--backend", "netns"], "needs a pod name"),
    ],
)
def test_user_mistakes_are_one_line(args, message):
    result = run(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("kindlab: error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_command_is_usage_error():
    result = run("frobnicate")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_age_is_kubectl_short_form():
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert cli.age("2026-01-01T23:59:18Z", now) == "42s"
    assert cli.age("2026-01-01T23:55:00Z", now) == "5m"
    assert cli.age("2026-01-01T20:00:00Z", now) == "4h"
    assert cli.age(None, now) == "<unknown>"


def test_pod_table_shows_waiting_reason_and_wide_columns():
    pod = {"metadata": {"name": "p", "creationTimestamp": None},
           "spec": {"nodeName": "kind-worker2", "containers": [{"name": "echo"}]},
           "status": {"phase": "Pending", "hostIP": "172.18.0.4",
                      "containerStatuses": [{"ready": False, "restartCount": 0,
                                             "state": {"waiting": {"reason": "ContainerCreating"}}}]}}
    header, rows = cli.pod_rows([pod], wide=True)
    table = cli.format_table(header, rows)
    assert "ContainerCreating" in table and "0/1" in table and "kind-worker2" in table and "<none>" in table
