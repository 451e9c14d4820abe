"""iptables-save output as pandas: parse it, diff two of it, trace a packet through it.

    rs = kindlab.iptables.parse(text)          # text of `iptables-save [-c]` or `ip6tables-save [-c]`
    rs.chains, rs.rules                        # DataFrames: one row per chain, one row per rule
    rs.to_iptables_save() == text              # written from the frames, byte for byte
    kindlab.iptables.diff(before, after)       # the rules portmap's ADD (or DEL) added (or removed)
    kindlab.iptables.trace(rs, "nat", "PREROUTING", protocol="tcp", dst_port=80, dst_local=True)
    kindlab.iptables.node_rules(lab, "kind-worker")
    kindlab.iptables.parse_nft(text)           # `nft -j list table ip cni_hostport`: portmap's nftables rules
    kindlab.iptables.node_nft_rules(lab, "kind-worker")

`rules`, one row per `-A` line in the text's order (RULE_COLUMNS):

- `table`, `chain` (categoricals), `position` (1-based within the chain), `lineno` (1-based in the text);
- `packets`, `bytes`: nullable Int64, from the `[p:b]` of `iptables-save -c`; <NA> without `-c`;
- `protocol`, `source`, `destination`, `in_interface`, `out_interface`, `dport` (tcp/udp `--dport`),
  `dports` (multiport `--dports`): the value as written, with a leading `!` when negated: `! -s 10.0.0.0/8`
  is `"!10.0.0.0/8"`, so a filter on `"10.0.0.0/8"` never picks a negated rule;
- `matches`: the `-m` modules in order, a tuple of str, e.g. `("comment", "multiport")`;
- `comment`: the `--comment` text, unescaped (`say "hi"`, not `say \\"hi\\"`);
- `match_options`: the match options without a column of their own, in order, as iptables text
  (`--mode random --probability 0.5`, `! --ctstate NEW`); a repeated option lands here too, so nothing
  is dropped;
- `target` (categorical), `goto` (True for `-g`), `to_destination` (`--to-destination`) and
  `target_options`: the target's other options as text (`--set-xmark 0x2000/0x2000`);
- `rule`: the rule's text without counters, as `iptables-save` prints it: `-A CHAIN ...`.

`protocol`, `in_interface` and `out_interface` are categoricals too (NaN where absent); the other text
columns hold str, or None where the rule has no such option (object dtype: pandas' str dtype would cost
parse() ~8% more). `chains` (CHAIN_COLUMNS): `table`, `chain`, `builtin`, `policy` (NaN for user
chains), `packets`, `bytes`, `lineno`.

Lines are split into arguments as iptables-restore splits them: a double quote opens and closes a
quoted argument, in which a backslash escapes the next character; whitespace is ASCII whitespace.

The modules: `arguments` (splitting and quoting a rule's arguments, the options read), `parsing`
(text -> Ruleset), `frames` (the DataFrames), `ruleset` (Ruleset, and its text written back from the
frames), `diffing`, `tracing`, `nftables` and `nft_text` (`nft -j` output as the same rule frame, with
`family` and `handle` after RULE_COLUMNS: NFT_RULE_COLUMNS), and `ports` (whether a `--dport`/`--dports`
value covers a port: tracing's and doctor's rule, `ports.in_ports`).
"""

from __future__ import annotations

from typing import Any

from .diffing import diff
from .frames import CHAIN_COLUMNS, RULE_COLUMNS
from .nftables import NFT_RULE_COLUMNS, NftParseError, node_nft_rules, parse_nft
from .parsing import parse
from .ruleset import Ruleset
from .tracing import STEP_COLUMNS, trace

__all__ = ["CHAIN_COLUMNS", "NFT_RULE_COLUMNS", "RULE_COLUMNS", "STEP_COLUMNS", "NftParseError", "Ruleset", "diff",
           "node_nft_rules", "node_rules", "parse", "parse_nft", "trace"]


def node_rules(lab: Any, node: str, table: str | None = None, ipv6: bool = False) -> Ruleset:
    """Parse `iptables-save -c` (or `ip6tables-save -c`) run in a node of the lab, optionally one table only."""
    cmd = ["ip6tables-save" if ipv6 else "iptables-save", "-c"]
    if table is not None:
        cmd += ["-t", table]
    return parse(lab.exec(node, cmd))

