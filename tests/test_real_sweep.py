"""A run killed mid-way (SIGKILL, no finally) leaves namespaces, containerd and a node init: the next run's
sweep removes them, and leaves a live run's testbed alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kindlab.backends.netns.real import binaries

pytestmark = pytest.mark.netns

if binaries.missing():
    pytest.skip(f"the real components cannot run here: missing {'; '.join(binaries.missing())}",
                allow_module_level=True)

SCRIPT = textwrap.dedent("""
    import secrets, sys, time
    from pathlib import Path
    from kindlab.backends.netns.real import binaries, components, testbed
    prefix = f"kr-{secrets.token_hex(2)}"
    state = Path("/run") / prefix
    nodes = [components.NodeSpec("cp", "172.18.0.2", "control-plane", kubelet=False),
             components.NodeSpec("w", "172.18.0.3")]
    cluster = components.ClusterSpec(name="kind", nodes=nodes, bin_dir=binaries.bin_dir())
    components.write(state / "cluster", cluster)
    bed = testbed.create(prefix, state, [(n.name, n.ip) for n in nodes], "172.18.0.1", state / "cluster")
    w = bed.node("w")
    bed.start(w, "containerd", components.containerd(cluster).argv)
    while True:
        try:
            bed.exec(w, ["ctr", "version"], "ctr version")
            break
        except Exception:
            time.sleep(0.1)
    print(prefix, w.init.pid, flush=True)
    time.sleep(600)
""")


def test_a_killed_run_is_swept(tmp_path):
    from kindlab.backends.netns.real import teardown, testbed

    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    prefix, init = proc.stdout.readline().split()
    net = {teardown.ns_id(p) for p in Path("/run/netns").glob(f"{prefix}-*")}
    mnt = {teardown.ns_id(f"/proc/{init}/ns/mnt")}
    alive_before = teardown.members(net, mnt)
    assert len(alive_before) >= 3   # two node inits and containerd
    assert prefix not in testbed.sweep_stale()   # its owner lives: left alone
    assert teardown.members(net, mnt)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    ticks = teardown.now_ticks()
    assert prefix in testbed.sweep_stale()
    assert not teardown.members(net, mnt, born_before=ticks)
    assert not list(Path("/run/netns").glob(f"{prefix}-*"))
    assert not (Path("/run") / prefix).exists()
    assert not [pid for pid in alive_before if os.path.exists(f"/proc/{pid}")
                and teardown.ns_id(f"/proc/{pid}/ns/net") in net]
