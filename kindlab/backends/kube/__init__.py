"""The Kubernetes API half shared by every backend with a real API server (kind, and the lab's real cluster).

  shapes   client models as the API server's JSON, manifests, kubectl-like apply
  client   KubeApi: list, watch, apply and delete pods, read nodes and events
  errors   the Kubernetes client's exceptions as kindlab errors
"""
