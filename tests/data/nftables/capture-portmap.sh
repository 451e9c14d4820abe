#!/bin/bash
# portmap-ip{,6}.{json,txt}: portmap ADD with "backend": "nftables", run by hand for three sandboxes in a
# throwaway network namespace (deleted on exit), then `nft -j list table` and `nft list table` in it.
# Run as root from the repository: tests/data/nftables/capture-portmap.sh
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
CNI=$(.venv/bin/python -c 'import kindlab.runtime_packages as r; print(r.cni_dir())')   # the pinned plugins
NS=kl-nftcap; POD=kl-nftcap-pod
ip netns add $NS; ip netns add $POD
trap 'ip netns del $NS; ip netns del $POD' EXIT
ip -n $NS link set lo up
ip -n $NS link add cni0 type veth peer name cni0p
ip -n $NS addr add 192.168.1.1/24 dev cni0; ip -n $NS link set cni0 up; ip -n $NS link set cni0p up
ip -n $NS link add eth0 type veth peer name eth0p
ip -n $NS addr add 172.18.0.3/16 dev eth0; ip -n $NS link set eth0 up; ip -n $NS link set eth0p up
add() {  # container id, pod address, port mappings (JSON)
  printf '%s' "{\"cniVersion\":\"1.0.0\",\"name\":\"cilium-portmap\",\"type\":\"portmap\",\"backend\":\"nftables\",
   \"capabilities\":{\"portMappings\":true},\"runtimeConfig\":{\"portMappings\":$3},
   \"prevResult\":{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"/var/run/netns/$POD\"}],
   \"ips\":[{\"address\":\"$2\",\"interface\":0}]}}" |
  CNI_COMMAND=ADD CNI_CONTAINERID=$1 CNI_NETNS=/var/run/netns/$POD CNI_IFNAME=eth0 CNI_PATH=$CNI \
    ip netns exec $NS "$CNI/portmap" >/dev/null
}
add 5f0c3a9e1d2b47c8a6e4f10b9d8c7a6e5f4d3c2b1a09f8e7d6c5b4a392817065 192.168.1.5/24 \
  '[{"hostPort":80,"containerPort":8080,"protocol":"tcp"}]'
add 0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9 192.168.1.7/24 \
  '[{"hostPort":8081,"containerPort":8080,"protocol":"tcp","hostIP":"172.18.0.3"},
    {"hostPort":5353,"containerPort":53,"protocol":"udp"}]'
add 9e8d7c6b5a493827161504f3e2d1c0b9a8f7e6d5c4b3a29180706f5e4d3c2b1a fd00:10:244:1::5/64 \
  '[{"hostPort":80,"containerPort":8080,"protocol":"tcp"}]'
for fam in ip ip6; do
  ip netns exec $NS nft -j list table $fam cni_hostport > "$OUT/portmap-$fam.json"
  ip netns exec $NS nft list table $fam cni_hostport > "$OUT/portmap-$fam.txt"
done
