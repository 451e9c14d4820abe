"""containerd's own time for the steps of a pod's start, stated once (stdlib only: the model's agent imports it).

The model's runtime makes a sandbox's namespaces and runs CNI for real, but starts its processes with
`unshare` and `nsenter` in milliseconds, where containerd 1.6.20 starts a shim and runs runc. Measured in the
lab from the containerd log of the real runs of benchmarks/bench_fidelity.py (worker2's 8 pods healing at once,
worker3's pod alone), medians:

  - the pause container of a sandbox whose CNI ADD succeeded: containerd sets the network up first, so a
    failed attempt starts none (its RunPodSandbox took 0.05-0.07 s, no shim started), a successful one 0.30 s
    on worker2 where the model's took 0.14 s, 0.24 s on worker3 where the model's took 0.07 s;
  - PullImage of an image already there (the pull policy of an untagged image is Always): 0.02 s;
  - CreateContainer, with the kubelet's own steps around it: 0.02 s;
  - StartContainer, which runs runc's create and start (the task-start event comes at its end): 0.09 s.

The model's agent waits these out where they fall, scaled with the lab's back-off as the kubelet's periods
are (`kubelet.scaled`), so that a healed pod's container starts as much later after its last failure as on
containerd (bench_fidelity's *last failure -> container start*, mean real | model 13.93 | 13.41 s before).
"""

#: The pause container's start after a successful CNI ADD, beyond the model's own sandbox (s).
PAUSE_START = 0.16
#: PullImage of an image already present (s).
PULL = 0.02
#: CreateContainer with the kubelet's steps around it (s).
CREATE = 0.02
#: StartContainer: runc create and start, up to the container's task-start (s).
START = 0.09
