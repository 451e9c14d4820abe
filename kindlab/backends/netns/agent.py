"""The node agent: the kubelet's part, one supervisor process per lab (for all its nodes).

Started detached by the lab (`python -m kindlab.backends.netns.agent kindlab-lab=<lab>`), it holds
the store's agent.lock for its life and outlives the process that started it. Its loop polls the
store's generation counter every 20 ms and re-reads everything at least once a second
(level-triggered). For each desired pod it:
  admits it (hostPort conflicts on the node -> Failed/NodePorts, as the kubelet rejects),
  makes a sandbox, runs CNI ADD, starts the workload and pushes its start at once (runtime_events), taking as
  long as containerd does for the pause container, the pull and the container's start (model.containerd), and
  reports Running at PLEG's next relist after that (the server may listen a moment later, as on containerd);
  on a sandbox failure records FailedCreatePodSandBox and keeps the sandbox when its CNI DEL fails too
  (as containerd does), retries once at PLEG's next relist, then after the kubelet's back-off (constant
  `backoff` plus up to 50 % jitter, on the sync loop's tick: model.kubelet), each retry a SandboxChanged
  that must first tear the kept sandbox down; it keeps each failed attempt's time;
  on deletion stops the workload, runs CNI DEL and removes the sandbox, then keeps the pod Terminating (its
  container terminated) until the status manager's tick after the relists that find it reclaimed, or after the
  container GC's round when a relist came between the workload's exit and the sandbox's stop (model.kubelet).
Statuses are written the moment a transition happens. A new agent adopts the pods of a dead one:
their pause and workload processes are found again by pid and start time.

This module is the entry point; the agent is made of
  kubelet_loop       Agent: the sync loop, admission, the back-off and PLEG's clocks, status writes, adoption
  pod_worker         the pod work on pool threads: make, retry, remake and kill pods, with their events
  pod_status         PodState and its Stage, the v1 status and annotations written for a pod
  container_runtime  the model's containerd: sandboxes, CNI ADD/DEL, the containers' processes, orphans
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys

from .kubelet_loop import Agent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].startswith("kindlab-lab="):
        print("usage: python -m kindlab.backends.netns.agent kindlab-lab=<lab>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faulthandler.register(signal.SIGUSR1)   # kill -USR1 <agent> prints every thread's stack to agent.log
    return Agent(args[0].split("=", 1)[1]).run()


if __name__ == "__main__":
    sys.exit(main())
