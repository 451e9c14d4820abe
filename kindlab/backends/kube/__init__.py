"""The Kubernetes API half shared by every backend with a real API server (kind, and the lab's real cluster).

  shapes   client models as the API server's JSON, manifests, kubectl-like apply
  client   KubeApi: list, watch, apply and delete pods, read nodes and events
  errors   the Kubernetes client's exceptions as kindlab errors
  debug    node debug pods, as `kubectl debug node/NAME` makes them (doctor's way into a node)
  remote   RemoteCluster: any cluster through its kubeconfig, as far as doctor needs one
  kubelet_settings  what every kubelet kindlab starts is given (node status every 1s)
  forward  a loopback port of the host joined to an API server inside a network namespace (the real lab's,
           kindlab's own Docker Engine's)
"""
