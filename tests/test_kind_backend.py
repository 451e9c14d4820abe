"""The kind backend's logic, without Docker: recorded API objects through a faked Kubernetes API,
a fake Docker client, and captured kind/helm command lines."""

from __future__ import annotations

import http.server
import io
import json
import posixpath
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import docker.errors
import pandas as pd
import pytest
import yaml
from kubernetes import config as kube_config
from kubernetes import watch as kube_watch
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from kindlab import objects, topology
from kindlab.backends.kind import archive, backend, cluster, curl, docker_host, kube, lifecycle, state, tools
from kindlab.backends.kind.cluster import KindCluster, exec_argv
from kindlab.backends.kind.translate import to_kindlab_error, translate_errors
from kindlab.backends.kube import shapes
from kindlab.errors import (
    BackendUnavailable,
    ClusterError,
    ConnectionRefused,
    CurlError,
    ExecError,
    KindlabError,
    NotFound,
    RequestTimeout,
    WaitTimeout,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "kind"
PORTMAP_MISSING = 'failed to find plugin "portmap" in path [/opt/cni/bin]'


# -- fakes -------------------------------------------------------------------------------------
def recorded(name: str, model: str):
    """A recorded list (tests/data/kind) as the client model the API call would return."""
    return ApiClient().deserialize((DATA / f"{name}.json").read_text(), model, "application/json")


class FakeContainer:
    """A node container: an in-memory file tree, exec_run answered by `responder`, calls recorded."""

    def __init__(self, name: str):
        self.name = name
        self.dirs = {"/", "/tmp", "/var", "/var/tmp", "/etc", "/etc/cni", "/etc/cni/net.d", "/opt", "/opt/cni",
                     "/opt/cni/bin"}
        self.attrs = {"HostConfig": {"Tmpfs": {"/tmp": "", "/run": ""}}}  # as kind runs its nodes
        self.files: dict[str, bytes] = {}
        self.calls: list[tuple] = []
        self.responder = lambda argv: (0, b"", b"")

    def exec_run(self, cmd, demux=False, **kwargs):
        self.calls.append(("exec_run", cmd))
        if cmd[:2] == ["test", "-d"]:
            return (0 if cmd[2].rstrip("/") in self.dirs else 1), (None, None)
        code, out, err = self.responder(cmd)
        return code, (out or None, err or None)

    def put_archive(self, path, data):
        self.calls.append(("put_archive", path, data))
        folder = posixpath.normpath(path)
        if folder not in self.dirs:
            raise docker.errors.NotFound(f"Could not find the file {path} in container {self.name}")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                where = posixpath.join(folder, member.name)
                if member.isdir():
                    self.dirs.add(where)
                else:
                    self.files[where] = tar.extractfile(member).read()
        return True

    def get_archive(self, path):
        self.calls.append(("get_archive", path))
        path = posixpath.normpath(path)
        name = posixpath.basename(path)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            if path in self.files:
                self._add(tar, name, self.files[path])
            elif path in self.dirs:
                tar.addfile(_dir_info(name))
                for f, data in sorted(self.files.items()):
                    if f.startswith(path + "/"):
                        self._add(tar, name + f[len(path):], data)
            else:
                raise docker.errors.NotFound(f"Could not find the file {path} in container {self.name}")
        raw = buf.getvalue()
        return iter([raw[:100], raw[100:]]), {"name": name, "size": len(raw), "mode": 0o644}

    @staticmethod
    def _add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))


def _dir_info(name):
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


class FakeDocker:
    """docker.DockerClient's `containers.get` and `info`, over FakeContainers."""

    def __init__(self, names, os_name="Debian GNU/Linux 12 (bookworm)"):
        self.nodes = {n: FakeContainer(n) for n in names}
        self.os_name = os_name
        self.containers = self

    def get(self, name):
        if name not in self.nodes:
            raise docker.errors.NotFound(f"No such container: {name}")
        return self.nodes[name]

    def info(self):
        return {"OperatingSystem": self.os_name}


@pytest.fixture
def topo():
    return topology.load(ROOT / "kind" / "config", name="kind")


@pytest.fixture
def fake_docker(topo):
    return FakeDocker([n.name for n in topo.nodes])


@pytest.fixture
def lab(topo, fake_docker):
    return KindCluster("kind", topo, docker_client=fake_docker, api_client=ApiClient())


@pytest.fixture
def fake_api(monkeypatch):
    """CoreV1Api list calls answered with the recorded objects; the calls are recorded."""
    calls = []

    def answer(model, data):
        def method(self, *args, **kwargs):
            calls.append((data, args))
            return recorded(data, model)
        return method

    monkeypatch.setattr(CoreV1Api, "list_node", answer("V1NodeList", "nodes"))
    monkeypatch.setattr(CoreV1Api, "list_namespaced_pod", answer("V1PodList", "pods"))
    monkeypatch.setattr(CoreV1Api, "list_namespaced_event", answer("CoreV1EventList", "events"))
    return calls


def without_nulls(value):
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return [without_nulls(v) for v in value] if isinstance(value, list) else value


def api_error(status: int, reason: str, message: str) -> ApiException:
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "reason": reason, "code": status})
    return ApiException(status=status, reason=reason, body=body)


# -- nodes, pods, events from the recorded API objects -------------------------------------------
def test_nodes_frame_from_recorded_nodes(lab, fake_api):
    frame = lab.nodes()
    assert list(frame["name"]) == ["kind-control-plane", "kind-worker", "kind-worker2", "kind-worker3"]
    assert list(frame["role"]) == ["control-plane", "worker", "worker", "worker"]
    assert list(frame["ip"]) == ["172.18.0.3", "172.18.0.4", "172.18.0.2", "172.18.0.5"]   # Docker's order
    assert frame.loc[1, "podCIDR"] == "192.168.4.0/24"
    assert set(frame["backend"]) == {"kind"}
    assert list(frame["kubeletVersion"]) == ["v1.20.2"] * 4
    assert lab.node_ip("kind-worker3") == "172.18.0.5"


def test_pods_frame_shows_pending_container_creating_and_running(lab, fake_api):
    pods = lab.pods().set_index("name")
    stuck = pods.loc["echo-kind-worker2"]
    assert (stuck["phase"], stuck["reason"], stuck["ready"], stuck["hostIP"]) == \
        ("Pending", "ContainerCreating", False, "172.18.0.2")
    assert pd.isna(stuck["podIP"])
    running = pods.loc["echo-kind-worker"]
    assert (running["phase"], running["ready"], running["hostIP"], running["podIP"]) == \
        ("Running", True, "172.18.0.4", "192.168.4.2")
    assert running["node"] == "kind-worker"
    assert ("pods", ("default",)) in fake_api


def test_pod_dicts_have_kubernetes_json_names_and_z_timestamps(lab, fake_api):
    pod = lab.pod("echo-kind-worker")
    assert pod["spec"]["nodeName"] == "kind-worker"
    assert pod["spec"]["containers"][0]["ports"][0] == {"containerPort": 8080, "hostPort": 80, "protocol": "TCP"}
    assert pod["status"]["startTime"] == "2026-12-07T12:22:56Z"
    assert pod["status"]["hostIP"] == "172.18.0.4"
    # Nothing lost or renamed; only explicit nulls (lastProbeTime) drop out, as models cannot tell them from unset.
    assert pod == without_nulls(json.loads((DATA / "pods.json").read_text())["items"][0])


def test_events_frame_has_the_failed_sandbox_with_containerd_wording(lab, fake_api):
    events = lab.events()
    failed = events[events["reason"] == "FailedCreatePodSandBox"]
    # containerd 1.7: each retry is a new sandbox, after a SandboxChanged whose count grows (tests/data/real)
    assert len(failed) == 4 and (failed["count"] == 1).all()
    (changed,) = events[events["reason"] == "SandboxChanged"].itertuples()
    assert (changed.object, changed.type, changed.count) == ("pod/echo-kind-worker2", "Normal", 3)
    assert set(failed["object"]) == {"pod/echo-kind-worker2"}
    assert set(failed["type"]) == {"Warning"}
    for message in failed["message"]:
        assert message.startswith("Failed to create pod sandbox: rpc error: code = Unknown desc = "
                                  "failed to setup network for sandbox ")
        assert message.endswith('plugin type="portmap" failed (add): ' + PORTMAP_MISSING)
    assert events["time"].is_monotonic_increasing
    assert ("events", ("default",)) in fake_api


# -- exec ----------------------------------------------------------------------------------------
def test_exec_string_runs_under_sh_with_timeout_and_returns_stdout(lab, fake_docker):
    node = fake_docker.nodes["kind-worker"]
    node.responder = lambda argv: (0, b":CNI-HOSTPORT-DNAT - [0:0]\n", b"")
    assert lab.exec("kind-worker", "iptables-save | grep HOSTPORT") == ":CNI-HOSTPORT-DNAT - [0:0]\n"
    assert node.calls[-1] == ("exec_run", ["timeout", "-k", "5", "60", "sh", "-c", "iptables-save | grep HOSTPORT"])


def test_exec_list_runs_as_is_and_no_timeout_means_no_wrapper():
    assert exec_argv(["ls", "/opt/cni/bin"], timeout=None) == ["ls", "/opt/cni/bin"]
    assert exec_argv("ls", timeout=2.5)[:4] == ["timeout", "-k", "5", "2.5"]


def test_exec_nonzero_raises_exec_error_with_stderr(lab, fake_docker):
    fake_docker.nodes["kind-worker2"].responder = lambda argv: (2, b"", b"ls: cannot access '/opt/cni/bin/portmap'\n")
    with pytest.raises(ExecError) as err:
        lab.exec("kind-worker2", "ls /opt/cni/bin/portmap")
    assert err.value.returncode == 2
    assert "cannot access" in err.value.stderr and "cannot access" in str(err.value)
    assert "kind-worker2" in str(err.value) and "exited 2" in str(err.value)
    assert lab.exec("kind-worker2", "ls /opt/cni/bin/portmap", check=False) == ""


def test_exec_timeout_exit_is_reported_as_timed_out(lab, fake_docker):
    fake_docker.nodes["kind-worker"].responder = lambda argv: (124, b"", b"")
    with pytest.raises(ExecError, match="timed out after 3s"):
        lab.exec("kind-worker", "sleep 10", timeout=3)


def test_exec_input_is_staged_as_a_file_and_redirected(lab, fake_docker):
    node = fake_docker.nodes["kind-worker"]
    lab.exec("kind-worker", ["iptables-restore", "--test"], input="*nat\nCOMMIT\n", timeout=None)
    (_, folder, _), (_, argv) = node.calls
    staged = next(iter(node.files))
    assert folder == "/var/tmp" and node.files[staged] == b"*nat\nCOMMIT\n"  # not kind's tmpfs /tmp
    assert argv[:2] == ["sh", "-c"] and f"< {staged}" in argv[2] and f"rm -f {staged}" in argv[2]
    assert argv[3:] == ["iptables-restore", "--test"]


def test_exec_unknown_node_names_the_nodes_without_asking_docker(lab, fake_docker):
    with pytest.raises(NotFound, match="kind-worker3"):
        lab.exec("kind-worker9", "true")
    assert all(not c.calls for c in fake_docker.nodes.values())


@pytest.mark.parametrize("exc, kind", [
    (docker.errors.NotFound("No such container: kind-worker"), NotFound),
    (docker.errors.APIError("500 Server Error", explanation="container is not running"), ClusterError),
    (docker.errors.DockerException("Error while fetching server API version"), BackendUnavailable),
])
def test_docker_errors_become_kindlab_errors(lab, fake_docker, exc, kind):
    def fail(name):
        raise exc
    fake_docker.get = fail
    with pytest.raises(kind) as err:
        lab.exec("kind-worker", "true")
    assert "kind cluster 'kind'" in str(err.value)
    assert err.value.__cause__ is exc


# -- cp ------------------------------------------------------------------------------------------
def test_cp_host_file_into_node_folder(lab, fake_docker):
    lab.cp(str(ROOT / "kind/cni/000-cilium-portmap.conflist"), "kind-worker3:/etc/cni/net.d/")
    node = fake_docker.nodes["kind-worker3"]
    assert node.calls[-1][:2] == ("put_archive", "/etc/cni/net.d/")
    assert node.files["/etc/cni/net.d/000-cilium-portmap.conflist"] == \
        (ROOT / "kind/cni/000-cilium-portmap.conflist").read_bytes()


def test_cp_to_a_path_that_is_no_folder_renames(lab, fake_docker, tmp_path):
    src = tmp_path / "conf"
    src.write_text("{}")
    lab.cp(str(src), "kind-worker3:/etc/cni/net.d/10-x.conflist")
    node = fake_docker.nodes["kind-worker3"]
    assert ("exec_run", ["test", "-d", "/etc/cni/net.d/10-x.conflist"]) in node.calls
    assert node.files["/etc/cni/net.d/10-x.conflist"] == b"{}"


def test_cp_round_trip_host_node_host(lab, fake_docker, tmp_path):
    payload = bytes(range(256)) * 64
    (tmp_path / "portmap").write_bytes(payload)
    lab.cp(str(tmp_path / "portmap"), "kind-worker:/opt/cni/bin/")
    out = tmp_path / "out"
    out.mkdir()
    lab.cp("kind-worker:/opt/cni/bin/portmap", str(out))
    lab.cp("kind-worker:/opt/cni/bin/portmap", str(out / "renamed"))
    assert (out / "portmap").read_bytes() == payload == (out / "renamed").read_bytes()


def test_cp_node_to_node_folder(lab, fake_docker):
    fake_docker.nodes["kind-worker"].files["/opt/cni/bin/portmap"] = b"\x7fELF portmap"
    lab.cp("kind-worker:/opt/cni/bin/portmap", "kind-worker2:/opt/cni/bin/")
    assert fake_docker.nodes["kind-worker2"].files["/opt/cni/bin/portmap"] == b"\x7fELF portmap"


def test_cp_a_node_folder_to_the_host(lab, fake_docker, tmp_path):
    fake_docker.nodes["kind-worker"].files.update({"/opt/cni/bin/portmap": b"p", "/opt/cni/bin/loopback": b"l"})
    lab.cp("kind-worker:/opt/cni/bin", str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["loopback", "portmap"]


def test_cp_errors(lab, fake_docker, tmp_path):
    with pytest.raises(KindlabError, match="one side must be NODE:PATH"):
        lab.cp("a", "b")
    with pytest.raises(NotFound):
        lab.cp(str(ROOT / "kind/config"), "kind-worker:/no/such/folder/")
    with pytest.raises(NotFound):
        lab.cp("kind-worker:/etc/missing", str(tmp_path))
    with pytest.raises(KindlabError, match="no such folder on the host"):
        lab.cp("kind-worker:/etc/cni", str(tmp_path / "missing") + "/")


@pytest.mark.parametrize("spec, node, path", [
    ("kind-worker3:/etc/cni/net.d/", "kind-worker3", "/etc/cni/net.d/"),
    ("kind/cni/000-cilium-portmap.conflist", None, "kind/cni/000-cilium-portmap.conflist"),
    ("./a:b", None, "./a:b"),
    ("/abs/x:y", None, "/abs/x:y"),
])
def test_parse_location(spec, node, path):
    loc = archive.parse_location(spec)
    assert (loc.node, loc.path) == (node, path)


def test_parse_location_wants_an_absolute_node_path():
    with pytest.raises(KindlabError, match="absolute"):
        archive.parse_location("kind-worker:etc")


def test_rename_top_renames_the_tree():
    data = archive.rename_top(archive.pack_bytes({"bin/portmap": b"x", "bin/loopback": b"y"}), "bin", "plugins")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["plugins/loopback", "plugins/portmap"]


# -- apply and delete ------------------------------------------------------------------------------
class ApiRecorder:
    """read/create/patch stand-ins: `live` is what read returns (None: 404)."""

    def __init__(self, live=None):
        self.live, self.calls = live, []

    def read(self, name, namespace):
        self.calls.append(("read", name, namespace))
        if self.live is None:
            raise api_error(404, "NotFound", f'pods "{name}" not found')
        return self.live

    def create(self, namespace, body):
        self.calls.append(("create", namespace, body))
        self.live = body

    def patch(self, name, namespace, body, _content_type=None):
        self.calls.append(("patch", name, namespace, body, _content_type))
        self.live = body


def patch_pod_api(monkeypatch, rec):
    monkeypatch.setattr(CoreV1Api, "read_namespaced_pod", lambda self, n, ns: rec.read(n, ns))
    monkeypatch.setattr(CoreV1Api, "create_namespaced_pod", lambda self, ns, body: rec.create(ns, body))
    monkeypatch.setattr(CoreV1Api, "patch_namespaced_pod",
                        lambda self, n, ns, body, _content_type=None: rec.patch(n, ns, body, _content_type))


def test_apply_creates_then_unchanged_then_configured(lab, monkeypatch):
    rec = ApiRecorder()
    patch_pod_api(monkeypatch, rec)
    assert lab.apply(ROOT / "manifests/static/echo-kind-worker.yaml") == ["pod/echo-kind-worker created"]
    created = rec.calls[-1][2]
    assert created["spec"]["nodeName"] == "kind-worker"
    assert json.loads(created["metadata"]["annotations"][shapes.LAST_APPLIED])["kind"] == "Pod"
    assert lab.apply(ROOT / "manifests/static/echo-kind-worker.yaml") == ["pod/echo-kind-worker unchanged"]
    assert [c[0] for c in rec.calls] == ["read", "create", "read"]
    changed = objects.load(ROOT / "manifests/static/echo-kind-worker.yaml")[0]
    changed.labels["tier"] = "demo"
    assert lab.apply_object(changed) == "pod/echo-kind-worker configured"
    assert rec.calls[-1][0] == "patch" and rec.calls[-1][4] == shapes.PATCH_TYPE


def test_apply_against_a_live_model_compares_the_annotation(lab, monkeypatch):
    live = recorded("pods", "V1PodList").items[0]
    notes = live.metadata.annotations   # as kubectl writes it: the same object, another text
    notes[shapes.LAST_APPLIED] = json.dumps(json.loads(notes[shapes.LAST_APPLIED]), indent=1)
    rec = ApiRecorder(live)
    patch_pod_api(monkeypatch, rec)
    assert lab.apply_object(objects.load(ROOT / "manifests/static/echo-kind-worker.yaml")[0]) == \
        "pod/echo-kind-worker configured"


def test_apply_deployment_uses_apps_v1(lab, monkeypatch):
    rec = ApiRecorder()
    monkeypatch.setattr(AppsV1Api, "read_namespaced_deployment", lambda self, n, ns: rec.read(n, ns))
    monkeypatch.setattr(AppsV1Api, "create_namespaced_deployment", lambda self, ns, body: rec.create(ns, body))
    assert lab.apply(ROOT / "manifests/deploy/") == ["deployment.apps/echo created"]
    body = rec.calls[-1][2]
    assert (body["apiVersion"], body["spec"]["replicas"]) == ("apps/v1", 1)
    assert body["spec"]["selector"]["matchLabels"] == body["spec"]["template"]["metadata"]["labels"] == {"run": "echo"}
    assert body["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPort"] == 80


def test_apply_rejected_by_the_api_server_says_why(lab, monkeypatch):
    def reject(self, ns, body):
        raise api_error(422, "Unprocessable Entity",
                        'Pod "echo-kind-worker" is invalid: spec.containers: Required value')
    monkeypatch.setattr(CoreV1Api, "read_namespaced_pod", lambda self, n, ns: ApiRecorder().read(n, ns))
    monkeypatch.setattr(CoreV1Api, "create_namespaced_pod", reject)
    with pytest.raises(ClusterError, match="422.*spec.containers: Required value"):
        lab.apply(ROOT / "manifests/static/echo-kind-worker.yaml")


def test_delete_pod_waits_until_gone(lab, monkeypatch):
    reads = iter([object(), object()])
    calls = []

    def read(self, name, ns):
        calls.append("read")
        try:
            return next(reads)
        except StopIteration:
            raise api_error(404, "NotFound", f'pods "{name}" not found') from None

    monkeypatch.setattr(cluster, "POLL_SECONDS", 0)
    monkeypatch.setattr(CoreV1Api, "delete_namespaced_pod", lambda self, n, ns: calls.append(("delete", n, ns)))
    monkeypatch.setattr(CoreV1Api, "read_namespaced_pod", read)
    assert lab.delete_pod("echo-kind-worker3") == 'pod "echo-kind-worker3" deleted'
    assert calls == [("delete", "echo-kind-worker3", "default"), "read", "read", "read"]


def test_delete_missing_pod_is_not_found(lab, monkeypatch):
    def delete(self, name, ns):
        raise api_error(404, "NotFound", f'pods "{name}" not found')
    monkeypatch.setattr(CoreV1Api, "delete_namespaced_pod", delete)
    with pytest.raises(NotFound, match='pods "nope" not found'):
        lab.delete_pod("nope")


def test_watch_pods_yields_monotonic_time_type_and_pod_dict(lab, monkeypatch):
    items = json.loads((DATA / "pods.json").read_text())["items"]
    seen = {}

    def stream(self, func, *args, **kwargs):
        seen.update(func=func.__name__, args=args, kwargs=kwargs)
        yield {"type": "ADDED", "object": None, "raw_object": items[1]}
        yield {"type": "MODIFIED", "object": None, "raw_object": items[0]}

    stopped = []
    monkeypatch.setattr(kube_watch.Watch, "stream", stream)
    monkeypatch.setattr(kube_watch.Watch, "stop", lambda self: stopped.append(True))
    events = list(lab.watch_pods(timeout=7.5))
    assert [(t, p["metadata"]["name"]) for _, t, p in events] == [("ADDED", "echo-kind-worker2"),
                                                                  ("MODIFIED", "echo-kind-worker")]
    assert events[0][0] <= events[1][0]
    assert seen == {"func": "list_namespaced_pod", "args": ("default",), "kwargs": {"timeout_seconds": 7}}
    assert stopped == [True]


def test_watch_errors_are_translated(lab, monkeypatch):
    def stream(self, func, *args, **kwargs):
        raise ApiException(status=410, reason="Expired: too old resource version")
        yield  # pragma: no cover
    monkeypatch.setattr(kube_watch.Watch, "stream", stream)
    with pytest.raises(ClusterError, match="410"):
        list(lab.watch_events(timeout=1))


# -- curl --------------------------------------------------------------------------------------------
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # http.server's name
        body = f"-> My hostname is: echo-kind-worker\n-> Path: {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Real-Server", "echo-server")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_curl_from_the_host(lab, echo_url):
    lab.curl_from_node = False
    resp = lab.curl(echo_url + "/x?y=1")
    assert (resp.status, resp.ok, resp.headers["X-Real-Server"]) == (200, True, "echo-server")
    assert "My hostname is: echo-kind-worker" in resp.body and "Path: /x?y=1" in resp.body


def test_curl_refused_and_timeout_on_the_host(lab):
    lab.curl_from_node = False
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(ConnectionRefused, match=r"curl: \(7\).*Connection refused") as err:
        lab.curl(f"http://127.0.0.1:{port}/")
    assert err.value.exit_code == 7
    with socket.socket() as silent:  # accepts (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(RequestTimeout, match=r"curl: \(28\)"):
            lab.curl(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=0.3)


CURL_OUTPUT = ("HTTP/1.1 100 Continue\r\n\r\n"
               "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Real-Server: echo-server\r\n"
               "Date: Sun, 20 Sep 2026 10:05:00 GMT\r\n\r\n"
               "Welcome to echo-server!\n\n-> My hostname is: echo-kind-worker\n")


def test_curl_on_docker_desktop_runs_curl_in_a_node(topo):
    desktop = FakeDocker([n.name for n in topo.nodes], os_name="Docker Desktop")
    node = desktop.nodes["kind-control-plane"]
    node.responder = lambda argv: (0, CURL_OUTPUT.encode(), b"")
    lab = KindCluster("kind", topo, docker_client=desktop, api_client=ApiClient())
    resp = lab.curl("http://172.18.0.2/", timeout=4)
    assert node.calls[-1] == ("exec_run", ["timeout", "-k", "5", "14", "curl", "-s", "-S", "-i", "--max-time", "4",
                                           "http://172.18.0.2/"])
    assert (resp.status, resp.headers["X-Real-Server"]) == (200, "echo-server")
    assert resp.body == "Welcome to echo-server!\n\n-> My hostname is: echo-kind-worker\n"


@pytest.mark.parametrize("code, err, kind", [
    (7, b"curl: (7) Failed to connect to 172.18.0.3 port 80 after 0 ms: Couldn't connect to server",
     ConnectionRefused),
    (28, b"curl: (28) Connection timed out after 5002 milliseconds", RequestTimeout),
    (6, b"curl: (6) Could not resolve host: nowhere", CurlError),
])
def test_curl_in_a_node_maps_curl_exit_codes(lab, fake_docker, code, err, kind):
    lab.curl_from_node = True
    fake_docker.nodes["kind-control-plane"].responder = lambda argv: (code, b"", err)
    with pytest.raises(kind, match=re.escape(err.decode())):
        lab.curl("http://172.18.0.3/")


def test_curl_falls_back_to_a_node_when_the_host_has_no_route(lab, fake_docker, monkeypatch):
    def unroutable(url, timeout):
        raise curl.Unroutable(113, "No route to host")
    monkeypatch.setattr(curl, "host_get", unroutable)
    fake_docker.nodes["kind-control-plane"].responder = lambda argv: (0, CURL_OUTPUT.encode(), b"")
    assert lab.curl("http://172.18.0.2/").status == 200
    assert lab.curl_from_node is True


def test_docker_desktop_detection():
    assert cluster.is_docker_desktop({"OperatingSystem": "Docker Desktop"}, platform="linux")
    assert cluster.is_docker_desktop({"OperatingSystem": "Ubuntu 24.04"}, platform="darwin")
    assert not cluster.is_docker_desktop({"OperatingSystem": "Ubuntu 24.04"}, platform="linux")


# -- translation in one place ----------------------------------------------------------------------
def test_unreachable_api_server_and_bad_kubeconfig_are_cluster_errors():
    import urllib3

    refused = urllib3.exceptions.MaxRetryError(None, "/api/v1/nodes", "Connection refused")
    assert "cannot reach the Kubernetes API server" in str(to_kindlab_error(refused, "x"))
    config_error = to_kindlab_error(kube_config.ConfigException("Expected object with name kind-x"), "x")
    assert isinstance(config_error, ClusterError) and "kind export kubeconfig" in str(config_error)
    with pytest.raises(ValueError), translate_errors():  # programming errors pass unchanged
        raise ValueError("bug")


def test_api_client_falls_back_to_kind_get_kubeconfig(monkeypatch):
    def missing(**kwargs):
        raise kube_config.ConfigException("Invalid kube-config file. No configuration found.")
    got = {}
    monkeypatch.setattr(kube_config, "new_client_from_config", missing)
    monkeypatch.setattr(kube_config, "new_client_from_config_dict",
                        lambda cfg, context, persist_config: got.update(cfg=cfg, context=context) or "client")
    monkeypatch.setattr(tools, "run", lambda args, timeout: got.update(args=args) or "apiVersion: v1\nkind: Config\n")
    assert kube.api_client("lab") == "client"
    assert got == {"args": ["kind", "get", "kubeconfig", "--name", "lab"],
                   "cfg": {"apiVersion": "v1", "kind": "Config"}, "context": "kind-lab"}


# -- kind and helm: command lines, create/delete, get-or-create ---------------------------------------
class FakeRun:
    """subprocess.run stand-in: records argv; `clusters` is what `kind get clusters` prints."""

    def __init__(self, clusters=()):
        self.clusters = list(clusters)
        self.calls: list[list[str]] = []
        self.configs: list[dict] = []

    def __call__(self, args, capture_output=True, text=True, timeout=None, **kwargs):
        self.calls.append(list(args))
        out = ""
        if args[:3] == ["kind", "get", "clusters"]:
            out = "".join(f"{c}\n" for c in self.clusters)
        elif args[:3] == ["kind", "create", "cluster"]:
            self.configs.append(yaml.safe_load(Path(args[args.index("--config") + 1]).read_text()))
            self.clusters.append(args[args.index("--name") + 1])
        elif args[:3] == ["kind", "delete", "cluster"]:
            self.clusters.remove(args[args.index("--name") + 1])
        return subprocess.CompletedProcess(args, 0, out, "")

    def tools(self) -> list[list[str]]:
        return [c for c in self.calls if c[0] in ("kind", "helm") and c[1:3] != ["get", "clusters"]]


@pytest.fixture
def seed_config(tmp_path):
    """A copy of kind/config and kind/cni, so that `empty` is made in tmp_path."""
    shutil.copytree(ROOT / "kind", tmp_path / "kind", ignore=shutil.ignore_patterns("empty"))
    return tmp_path / "kind" / "config"


@pytest.fixture
def tooling(monkeypatch, tmp_path):
    """Docker, kind and helm 'installed'; kind/helm/docker calls captured; state in tmp_path."""
    run = FakeRun()
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setenv("KINDLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("KINDLAB_CILIUM_VERSION", raising=False)
    monkeypatch.setattr(lifecycle, "POLL_SECONDS", 0)
    monkeypatch.setattr(docker_host, "machine_docker", lambda: "unix:///var/run/docker.sock")   # the machine's
    monkeypatch.setattr(tools, "require_versions", lambda: None)   # test_old_kind_or_docker_is_refused
    return run


@pytest.fixture
def fake_cluster_api(monkeypatch):
    """Nodes Ready (recorded), and a cilium DaemonSet that appears once helm ran."""
    installed = {"cilium": False}

    def read_ds(self, name, ns):
        if not installed["cilium"]:
            raise api_error(404, "NotFound", 'daemonsets.apps "cilium" not found')
        spec = {"selector": {"matchLabels": {"k8s-app": "cilium"}}, "template": {
            "metadata": {"labels": {"k8s-app": "cilium"}},
            "spec": {"containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.20.2"}]}}}
        return ApiClient().deserialize(json.dumps({"metadata": {"name": "cilium"}, "spec": spec, "status": {
            "currentNumberScheduled": 4, "desiredNumberScheduled": 4, "numberMisscheduled": 0, "numberReady": 4}}),
            "V1DaemonSet", "application/json")

    monkeypatch.setattr(AppsV1Api, "read_namespaced_daemon_set", read_ds)
    monkeypatch.setattr(CoreV1Api, "list_node", lambda self: recorded("nodes", "V1NodeList"))
    monkeypatch.setattr(kube, "api_client", lambda name: ApiClient())
    return installed


def test_up_creates_with_absolute_paths_installs_cilium_and_waits(tooling, fake_cluster_api, seed_config, monkeypatch):
    real_run = tools.run

    def run(args, timeout=600):
        if args[0] == "helm" and args[1] == "upgrade":
            fake_cluster_api["cilium"] = True
        return real_run(args, timeout=timeout)

    monkeypatch.setattr(tools, "run", run)
    reports = []
    lab = backend.up(topology.load(seed_config, name="kind"),
                       report=lambda message, done=None, total=None: reports.append((message, done, total)))
    assert isinstance(lab, KindCluster) and lab.name == "kind"
    assert reports[-1] == ("kind: nodes Ready", 4, 4)
    assert ("kind: Cilium agents ready", 4, 4) in reports
    create, repo, install = tooling.tools()
    assert create[:7] == ["kind", "create", "cluster", "--name", "kind", "--config", create[6]]
    assert create[7:] == ["--wait", "0s"]
    assert repo == ["helm", "repo", "add", "cilium", "https://helm.cilium.io/", "--force-update"]
    assert install == ["helm", "upgrade", "--install", "cilium", "cilium/cilium", "--version", tools.CILIUM_VERSION,
                       "--namespace", "kube-system", "--kube-context", "kind-kind",
                       "--set", "image.pullPolicy=IfNotPresent", "--set", "ipam.mode=kubernetes",
                       "--set", "cni.exclusive=false", "--set", "kubeProxyReplacement=false"]
    config = tooling.configs[0]
    mounts = [m for n in config["nodes"] for m in n.get("extraMounts", [])]
    assert all(Path(m["hostPath"]).is_absolute() for m in mounts)
    empty = seed_config.parent / "empty"
    assert {"containerPath": "/opt/cni", "hostPath": str(empty.resolve()), "readOnly": False,
            "propagation": "None"} in config["nodes"][2]["extraMounts"]
    assert empty.is_dir()
    assert config["networking"]["podSubnet"] == "192.168.0.0/16"
    assert lifecycle.load_state("kind")["created"] == [{"host": str(empty.resolve()), "node": "kind-worker2",
                                                        "path": "/opt/cni"}]


def test_up_on_an_existing_cluster_with_cilium_just_returns_it(tooling, fake_cluster_api, seed_config):
    tooling.clusters.append("kind")
    fake_cluster_api["cilium"] = True
    lab = backend.up(topology.load(seed_config, name="kind"))
    assert lab.name == "kind" and tooling.tools() == []
    assert not (seed_config.parent / "empty").exists()


def test_cilium_version_override(tooling, monkeypatch):
    monkeypatch.setenv("KINDLAB_CILIUM_VERSION", "1.19.3")
    assert tools.helm_install_cilium("lab")[5:7] == ["--version", "1.19.3"]


def test_failed_create_removes_the_folders_it_made(tooling, seed_config, monkeypatch):
    def run(args, **kwargs):
        if args[:3] == ["kind", "create", "cluster"]:
            return subprocess.CompletedProcess(args, 1, "", "ERROR: failed to create cluster: node(s) already exist")
        return FakeRun()(args)
    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(ClusterError, match="node\\(s\\) already exist"):
        backend.up(topology.load(seed_config, name="kind"))
    assert not (seed_config.parent / "empty").exists()
    assert lifecycle.load_state("kind") == {}


def test_delete_empties_and_removes_the_folder_kindlab_made(tooling, seed_config, monkeypatch):
    topo = topology.load(seed_config, name="kind")
    created = lifecycle.make_missing_mount_dirs(topo)
    (seed_config.parent / "empty" / "bin").mkdir()
    lifecycle.save_state("kind", topo.source, created)
    tooling.clusters.append("kind")
    emptied = []
    monkeypatch.setattr(state, "_empty_from_node", lambda node, path: emptied.append((node, path)))
    assert state.delete("kind") is True
    assert emptied == [("kind-worker2", "/opt/cni")]
    assert ["kind", "delete", "cluster", "--name", "kind"] in tooling.calls
    assert not (seed_config.parent / "empty").exists()
    assert lifecycle.load_state("kind") == {}
    assert state.delete("kind") is False


def test_clusters_and_get(tooling, seed_config, monkeypatch):
    tooling.clusters.extend(["kind", "other"])
    assert backend.clusters() == ["kind", "other"]
    lifecycle.save_state("kind", seed_config, [])
    monkeypatch.setattr(kube, "api_client", lambda name: ApiClient())
    lab = backend.get("kind")
    assert lab.node_names() == ["kind-control-plane", "kind-worker", "kind-worker2", "kind-worker3"]
    with pytest.raises(NotFound, match="kind clusters: kind, other"):
        backend.get("nope")


def test_missing_tools_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("KINDLAB_CACHE", str(tmp_path))   # nor where set-up puts kind
    monkeypatch.setattr(docker_host, "machine_docker", lambda: None)
    monkeypatch.setattr(docker_host, "answers", lambda: False)
    with pytest.raises(BackendUnavailable) as err:
        tools.require()
    message = str(err.value)
    assert "kind (https://kind.sigs.k8s.io" in message and "Docker Engine or Docker Desktop" in message
    assert "KINDLAB_BACKEND=netns" in message


def test_old_kind_or_docker_is_refused(monkeypatch):
    class Client:
        def __init__(self, api: str | None):
            self.api = api

        def version(self):
            if self.api is None:
                raise ConnectionError("Connection refused")
            return {"ApiVersion": self.api}

    kind = {"out": "kind v0.19.0 go1.20.4 linux/amd64"}
    client = Client("1.41")
    monkeypatch.setattr(tools, "run", lambda args, timeout=None: kind["out"])
    monkeypatch.setattr(docker_host, "url", lambda: "unix:///var/run/docker.sock")
    monkeypatch.setattr(docker_host, "client", lambda timeout=60: client)
    with pytest.raises(BackendUnavailable, match="kind v0.19.0 .*is too old: kindlab needs kind v0.20.0 or later"):
        tools.require_versions()
    kind["out"] = "kind v0.33.0 go1.26.8 linux/amd64"
    tools.require_versions()
    client.api = "1.40"
    with pytest.raises(BackendUnavailable, match="speaks API 1.40: kind's nodes need API 1.41 .*upgrade Docker"):
        tools.require_versions()
    client.api = None
    with pytest.raises(BackendUnavailable, match="does not answer .*Connection refused.*start it"):
        tools.require_versions()
    assert tools.version_tuple("1.41") == (1, 41) and tools.version_tuple("none") == ()


def test_a_failing_tool_reports_its_stderr(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: subprocess.CompletedProcess(
        args, 1, "", "Error: INSTALLATION FAILED: context deadline exceeded\n"))
    with pytest.raises(ClusterError, match="`helm repo add .*` failed \\(exit 1\\):\nError: INSTALLATION FAILED"):
        tools.run(tools.helm_repo_add())


def test_wait_count_times_out_with_a_hint(monkeypatch):
    monkeypatch.setattr(lifecycle, "POLL_SECONDS", 0)
    with pytest.raises(WaitTimeout, match="nodes Ready: 3/4 after 0s; see kubectl"):
        lifecycle.wait_count("nodes Ready", 4, lambda: 3, timeout=0, hint="see kubectl")


def test_wait_count_reports_each_change_once(monkeypatch):
    monkeypatch.setattr(lifecycle, "POLL_SECONDS", 0)
    counts, reports = iter([0, 0, 2, 2, 3, 4]), []
    lifecycle.wait_count("nodes Ready", 4, lambda: next(counts), timeout=5,
                         report=lambda message, done=None, total=None: reports.append((message, done, total)))
    assert reports == [("nodes Ready", n, 4) for n in (0, 2, 3, 4)]


class Container:
    def __init__(self, name, role, mounts=()):
        self.name = name
        self.labels = {"io.x-k8s.kind.cluster": "lab2", "io.x-k8s.kind.role": role}
        self.attrs = {"Mounts": list(mounts)}


def test_topology_from_node_containers():
    found = [
        Container("lab2-worker10", "worker"),
        Container("lab2-worker2", "worker", [
            {"Type": "bind", "Source": "/lib/modules", "Destination": "/lib/modules", "RW": False},
            {"Type": "bind", "Source": "/src/kind/empty", "Destination": "/opt/cni", "RW": True},
            {"Type": "volume", "Source": "/var/lib/docker/volumes/x/_data", "Destination": "/var", "RW": True}]),
        Container("lab2-external-load-balancer", "external-load-balancer"),
        Container("lab2-worker", "worker"),
        Container("lab2-control-plane", "control-plane"),
    ]
    topo = lifecycle.topology_from_containers("lab2", found)
    assert [n.name for n in topo.nodes] == ["lab2-control-plane", "lab2-worker", "lab2-worker2", "lab2-worker10"]
    assert [n.index for n in topo.nodes] == [0, 1, 2, 3]
    (mount,) = topo.nodes[2].mounts
    assert (mount.container_path, str(mount.host_path), mount.read_only) == ("/opt/cni", "/src/kind/empty", False)


def test_importing_kindlab_loads_neither_docker_nor_kubernetes():
    code = "import sys, kindlab, kindlab.backends.kind; print('docker' in sys.modules, 'kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
