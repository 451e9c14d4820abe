"""Real Kubernetes in the netns lab's nodes: `kindlab create cluster --kubernetes real` (the default where built).

Module map:
  (the images it runs and the registry that serves them: kindlab.backends.oci; the loopback port to its API
  server: kindlab.backends.kube.forward)
  binaries    where set-up keeps the built v1.20 binaries; what this machine lacks to run them
  pki         a per-lab CA and kubeadm's certificates, written as PEM files
  kubeconfig  kubeconfig files with the CA and client certificate embedded
  components  configs and command lines: etcd, kube-apiserver, controller-manager, scheduler,
              containerd, kubelet, kube-proxy; `write` lays out every node's own files
  teardown    processes found by namespace (shims and containers carry no marker), their cgroups
  startup     the components started in a lab's own nodes (lifecycle.create calls it), restarted when dead
  cluster     RealLab: the lab's Cluster, its Kubernetes half through KubeApi and the admin kubeconfig
  runtime_log a pod's failed attempts and start, from its node's containerd log (RealLab.runtime_times)
  task_events containerd's task-start events as they arrive (`ctr events`: RealLab.container_starts)
  testbed     minimal node namespaces for the smoke test (the lab uses nodes.py)
  bringup     a cluster brought up on a testbed step by step (the smoke test and tests/data/real/record.py)
"""
