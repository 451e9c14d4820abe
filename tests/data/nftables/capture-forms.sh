#!/bin/bash
# forms-inet.{json,txt}: rules of forms beyond portmap's (sets, ranges, negation, counters, interfaces, ct,
# log, goto, snat, mangle, verdicts), loaded by nft itself into a throwaway network namespace (deleted on exit).
# Run as root: tests/data/nftables/capture-forms.sh
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
NS=kl-nftforms
ip netns add $NS; trap 'ip netns del $NS' EXIT
ip netns exec $NS nft -f - <<'NFT'
table inet kindlab_forms {
	chain other {
		return
	}
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" tcp dport { 80, 443 } counter packets 0 bytes 0 dnat ip to 10.0.0.2:8080
		ip saddr != 10.0.0.0/8 udp dport 1000-2000 dnat ip to 10.0.0.3
		meta l4proto tcp th dport 53 goto other
		ct state established,related accept
		tcp dport != 22 log prefix "kindlab: " jump other
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth1" masquerade random
		ip daddr 10.0.0.9 snat ip to 172.18.0.3
		meta mark set 0x2000 comment "mark it"
		drop
	}
}
NFT
ip netns exec $NS nft -j list table inet kindlab_forms > "$OUT/forms-inet.json"
ip netns exec $NS nft list table inet kindlab_forms > "$OUT/forms-inet.txt"
