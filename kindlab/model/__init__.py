"""The rules of Kubernetes and CNI that kindlab relies on, each stated once.

  cni         how the runtime chooses a network config, what makes one valid, whether it chains portmap
  pods        Running and Ready, hostPorts, sandbox failures and their events, timestamps
  kubelet     the kubelet's sandbox retry back-off (stdlib only: the model's agent imports it)
  containerd  containerd's time for the steps of a pod's start (stdlib only, as kubelet)
  backoff     the model of the time to heal that back-off implies

It imports no backend and no cluster: backends, doctor, heal, the walkthrough and the plots call it.
"""
