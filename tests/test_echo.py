"""The echo workload answers like inanimate/echo-server, over real HTTP on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from kindlab import echo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n192.168.1.2\techo-pod\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.96.0.10\nsearch default.svc.cluster.local\n")
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOSTNAME": "echo-pod", "PORT": str(port), "ADD_HEADERS": '{"X-Extra": "1"}'}
    proc = subprocess.Popen([sys.executable, "-m", "kindlab.echo", "--bind", "127.0.0.1",
                             "--hosts-file", str(hosts), "--resolv-file", str(resolv)], env=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/some/path"
    proc.kill()
    proc.wait()


def test_answers_with_what_it_knows(server):
    with urllib.request.urlopen(server, timeout=5) as response:
        body = response.read().decode()
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain"
        assert response.headers["X-Extra"] == "1"
    assert "-> My hostname is: echo-pod" in body
    assert "-> Requesting IP: 127.0.0.1:" in body
    assert "GET /some/path" in body
    assert "HOSTNAME=echo-pod" in body
    assert "nameserver 10.96.0.10" in body
    assert "192.168.1.2\techo-pod" in body


def test_render_sections_in_order():
    body = echo.render(hostname="h", peer="1.2.3.4:5", request_line="HTTP/1.1 GET /", request_headers=[("A", "b")],
                       headers={"Content-Type": "text/plain"}, env={"Z": "1", "A": "2"}, resolv="r\n", hosts="x\n",
                       now=datetime(2026, 1, 1, tzinfo=UTC))
    order = ["My hostname is: h", "Requesting IP: 1.2.3.4:5", "Request Headers", "  A: b", "Response Headers",
             "My environment", "  A=2\n  Z=1", "resolv.conf", "/etc/hosts", "2026-01-01"]
    positions = [body.index(part) for part in order]
    assert positions == sorted(positions)


def test_bad_add_headers_falls_back_to_content_type_only():
    assert echo.response_headers({"ADD_HEADERS": "not json"}) == {"Content-Type": "text/plain"}
    assert echo.response_headers({})["X-Real-Server"] == "echo-server"
