"""Container images made on the machine, shared by every backend that runs containerd (not a backend itself).

  images    OCI image layouts and archives of files from the machine: pause, busybox, the echo server, and
            the control-plane images of a kind node
  registry  a read-only registry serving those layouts, so that pulls never leave the lab
"""
