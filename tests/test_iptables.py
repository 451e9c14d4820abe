"""kindlab.iptables: parse, round trip, errors, diff, trace, node_rules (no root needed).

Fixtures in tests/data/iptables are real iptables 1.8.9 output (see its README); the live round trip
through iptables-restore in a scratch namespace is in test_iptables_netns.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import TextLab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kindlab import iptables
from kindlab.errors import IptablesParseError, KindlabError
from kindlab.iptables import arguments

DATA = Path(__file__).parent / "data" / "iptables"
WS = " \t\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what parse() takes for whitespace
SAVED = sorted(p.name for p in DATA.glob("*save*.txt"))

PORTMAP = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-DN-f2bdc201a4632f9cd4dcc - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A CNI-DN-f2bdc201a4632f9cd4dcc -s 192.168.1.0/24 -p tcp -m tcp --dport 80 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-f2bdc201a4632f9cd4dcc -s 127.0.0.1/32 -p tcp -m tcp --dport 80 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-f2bdc201a4632f9cd4dcc -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.2:8080
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"kindnet\\" id: \\"abc\\"" -m multiport --dports 80 \
-j CNI-DN-f2bdc201a4632f9cd4dcc
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
COMMIT
"""


def fixture(name: str) -> str:
    return (DATA / name).read_text()


def table(rules: str, name: str = "filter", chains: str = "INPUT ACCEPT,A -") -> str:
    """A one-table ruleset around some rule lines."""
    declared = "".join(f":{c.split()[0]} {c.split()[1]} [0:0]\n" for c in chains.split(","))
    return f"*{name}\n{declared}{rules}COMMIT\n"


def one_rule(line: str) -> dict:
    """parse() of a single rule (in chain A of table filter), as a dict of its columns."""
    return iptables.parse(table(line + "\n")).rules.iloc[0].to_dict()


def row(rules: pd.DataFrame, chain: str, position: int) -> dict:
    hit = rules[(rules["chain"] == chain) & (rules["position"] == position)]
    assert len(hit) == 1, (chain, position, hit)
    return hit.iloc[0].to_dict()


# -- parse: the columns ---------------------------------------------------------------------------
def test_portmap_rules_become_columns():
    rs = iptables.parse(PORTMAP)
    chains, rules = rs.chains, rs.rules
    assert list(chains.columns) == iptables.CHAIN_COLUMNS and list(rules.columns) == iptables.RULE_COLUMNS
    assert chains["builtin"].tolist() == [True] * 4 + [False] * 4
    assert chains["policy"].astype(object).where(chains["builtin"], None).tolist()[:5] == ["ACCEPT"] * 4 + [None]
    assert rules["packets"].isna().all() and str(rules["packets"].dtype) == "Int64"

    dnat = row(rules, "CNI-DN-f2bdc201a4632f9cd4dcc", 3)
    assert (dnat["protocol"], dnat["dport"], dnat["matches"]) == ("tcp", "80", ("tcp",))
    assert (dnat["target"], dnat["to_destination"], dnat["target_options"]) == ("DNAT", "192.168.1.2:8080", None)
    assert dnat["rule"] == "-A CNI-DN-f2bdc201a4632f9cd4dcc -p tcp -m tcp --dport 80 -j DNAT --to-destination " \
                           "192.168.1.2:8080"
    assert row(rules, "CNI-DN-f2bdc201a4632f9cd4dcc", 1)["source"] == "192.168.1.0/24"

    jump = row(rules, "CNI-HOSTPORT-DNAT", 1)
    assert jump["comment"] == 'dnat name: "kindnet" id: "abc"'
    assert (jump["matches"], jump["dports"], jump["dport"]) == (("comment", "multiport"), "80", None)
    assert row(rules, "PREROUTING", 1)["match_options"] == "--dst-type LOCAL"
    assert row(rules, "CNI-HOSTPORT-MASQ", 1)["match_options"] == "--mark 0x2000/0x2000"
    mark = row(rules, "CNI-HOSTPORT-SETMARK", 1)
    assert (mark["target"], mark["target_options"]) == ("MARK", "--set-xmark 0x2000/0x2000")
    assert rules["lineno"].tolist() == list(range(10, 19))
    assert rs.tables == ["nat"] and rs.to_iptables_save() == PORTMAP


def test_positions_count_within_each_chain_of_each_table():
    rs = iptables.parse(fixture("nft-save-c.txt"))
    rules = rs.rules
    for (_, _), group in rules.groupby(["table", "chain"], observed=True):
        assert group["position"].tolist() == list(range(1, len(group) + 1))
    assert row(rules[rules["table"] == "filter"], "INPUT", 3)["comment"] == "plain"
    assert row(rules[rules["table"] == "nat"], "PREROUTING", 2)["comment"] == "kubernetes service portals"


def test_counters_are_nullable_integers():
    rules = iptables.parse(fixture("nft-save-c.txt")).rules
    dnat = row(rules, "CNI-HOSTPORT-DNAT", 1)
    assert (dnat["packets"], dnat["bytes"]) == (3, 180)
    chains = iptables.parse(fixture("nft-save-c.txt")).chains
    filt = chains[(chains["table"] == "filter") & (chains["chain"] == "INPUT")].iloc[0]
    assert (filt["packets"], filt["bytes"], filt["policy"]) == (100, 6000, "ACCEPT")
    plain = iptables.parse(fixture("nft-save.txt")).rules
    assert plain["packets"].isna().all() and plain["bytes"].isna().all()
    assert plain["rule"].tolist() == rules["rule"].tolist()  # the same rules, counters aside


def test_negations_are_kept_in_the_values():
    r = one_rule("-A A ! -s 10.0.0.0/8 ! -d 10.1.0.0/16 ! -i lo ! -o eth0 ! -p udp ! --dport 22 -m conntrack "
                 "! --ctstate NEW -j ACCEPT")
    assert (r["source"], r["destination"], r["in_interface"], r["out_interface"], r["protocol"], r["dport"]) == \
           ("!10.0.0.0/8", "!10.1.0.0/16", "!lo", "!eth0", "!udp", "!22")
    assert r["match_options"] == "! --ctstate NEW"
    assert one_rule("-A A -s 10.0.0.0/8 -j ACCEPT")["source"] == "10.0.0.0/8"


def test_goto_and_no_target():
    assert one_rule("-A A -g INPUT")["goto"] is True
    r = one_rule("-A A -j INPUT")
    assert (r["goto"], r["target"]) == (False, "INPUT")
    r = one_rule("-A A -p tcp")
    assert pd.isna(r["target"]) and r["goto"] is False


def test_long_option_names_read_like_short_ones():
    long = one_rule("-A A --protocol tcp --source 1.2.3.4 --match tcp --destination-port 80 --jump ACCEPT")
    short = one_rule("-A A -p tcp -s 1.2.3.4 -m tcp --dport 80 -j ACCEPT")
    for column in ("protocol", "source", "matches", "dport", "target"):
        assert long[column] == short[column]


@pytest.mark.parametrize(("line", "column", "value"), [
    ("-A A -m recent --update --seconds 60 --hitcount 4 --name ssh --rsource -j DROP", "match_options",
     "--update --seconds 60 --hitcount 4 --name ssh --rsource"),
    ("-A A ! -p udp -f -j DROP", "match_options", "-f"),
    ("-A A -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400", "match_options", "--tcp-flags SYN,RST SYN"),
    ("-A A -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400", "target_options", "--set-mss 1400"),
    ("-A A -j MASQUERADE --random-fully", "target_options", "--random-fully"),
    ("-A A -j LOG --log-prefix -j", "target_options", "--log-prefix -j"),  # unquoted: iptables-save does that
    ("-A A -j LOG --log-prefix \"x y: \"", "target_options", "--log-prefix \"x y: \""),
    ("-A A -j DNAT --to-destination 1.2.3.4 --to-destination 5.6.7.8", "target_options", "--to-destination 5.6.7.8"),
    ("-A A -m comment --comment one -m comment --comment \"t w o\"", "match_options", "--comment \"t w o\""),
    ("-A A -m comment --comment one -m comment --comment \"t w o\"", "matches", ("comment", "comment")),
    ("-A A -m set --match-set kube dst,dst -j ACCEPT", "match_options", "--match-set kube dst,dst"),
])
def test_options_kindlab_does_not_know_are_kept(line, column, value):
    assert one_rule(line)[column] == value


@pytest.mark.parametrize(("quoted", "comment"), [
    ('"say \\"hi\\""', 'say "hi"'),
    ('"back\\\\slash"', "back\\slash"),
    ('"it\\\'s"', "it's"),
    ('""', ""),
    ("plain", "plain"),
    ('"a  b\tc"', "a  b\tc"),
    ('"-j ACCEPT"', "-j ACCEPT"),
    ('"héllo wörld"', "héllo wörld"),
])
def test_comments_are_unescaped(quoted, comment):
    assert one_rule(f"-A A -m comment --comment {quoted} -j ACCEPT")["comment"] == comment


@pytest.mark.parametrize(("line", "args"), [
    ('a "b c" d', ["a", "b c", "d"]),
    ('ab"c d"e', ["abc d", "e"]),  # a quote inside an argument; a closing quote ends it (iptables does so)
    ('a "" b', ["a", "", "b"]),
    ('a x\\"y', None),  # outside quotes a backslash is a character, so this quote opens and never closes
    ('"a \\" b" c', ['a " b', "c"]),
    ("a\tb  c", ["a", "b", "c"]),
    ('"x" "y"', ["x", "y"]),
])
def test_split_args_follows_iptables_restore(line, args):
    if args is None:
        with pytest.raises(IptablesParseError):
            iptables.parse(table(f"-A A -m comment --comment {line}\n"))
    else:
        assert arguments.split_args(line) == args


def test_blank_and_indented_lines_are_accepted():
    text = "# a comment\n\n*filter\n:INPUT ACCEPT [0:0]\n  -A INPUT -j ACCEPT\n\nCOMMIT\n"
    rs = iptables.parse(text)
    assert rs.rules["rule"].tolist() == ["-A INPUT -j ACCEPT"] and rs.rules["lineno"].tolist() == [5]
    assert rs.to_iptables_save() == text


SPACING = st.sampled_from(["", "indent", "tab", "double", "trailing", "cr", "zeros"])


def respace(line: str, how: str) -> str:
    """The same line with other whitespace, or counters written with leading zeros."""
    if how == "indent":
        return "  " + line
    if how == "tab":
        return line.replace(" ", "\t", 1)
    if how == "double":
        return line.replace(" ", "  ", 1)
    if how == "trailing":
        return line + " "
    if how == "cr":
        return line + "\r"
    if how == "zeros":
        return line.replace("[", "[0", 1) if "[" in line else line
    return line


@settings(max_examples=150, deadline=None)
@given(st.lists(SPACING, min_size=80, max_size=80))
def test_any_spacing_is_written_back_and_read_as_the_plain_text_is(spacings):
    plain = (DATA / "nft-save-c.txt").read_text()
    lines = plain.split("\n")
    text = "\n".join(respace(line, how) if line and not line.startswith("#") else line
                     for line, how in zip(lines, spacings + [""] * len(lines), strict=False))
    rs, base = iptables.parse(text), iptables.parse(plain)
    assert rs.to_iptables_save() == text
    for column in ("table", "chain", "position", "packets", "bytes", "target", "matches", "lineno"):
        assert rs.rules[column].tolist() == base.rules[column].tolist(), column
    assert rs.chains[["table", "chain", "policy", "packets", "bytes"]].astype(str).equals(
        base.chains[["table", "chain", "policy", "packets", "bytes"]].astype(str))


def test_odd_spacing_and_counters_are_written_back_as_they_were():
    text = ("*filter\r\n:INPUT ACCEPT [007:0]\n:A  -  [0:0]\n  :B - [0:0]\n\t# indented comment\n"
            "[01:2] -A INPUT -j A\n[1:2]\t-A INPUT -j B\n[1:2]   -A A -j ACCEPT \n[0:0] -A B -p tcp -j DROP\r\n"
            "  COMMIT  \n")
    rs = iptables.parse(text)
    assert rs.rules["packets"].tolist() == [1, 1, 1, 0] and rs.chains["packets"].tolist() == [7, 0, 0]
    assert rs.rules["rule"].tolist()[:2] == ["-A INPUT -j A", "-A INPUT -j B"]
    assert rs.to_iptables_save() == text


def test_the_text_is_written_from_the_frames():
    rs = iptables.parse(PORTMAP)
    kept = rs.rules[~rs.rules["chain"].astype(str).str.startswith("CNI-DN-")]
    edited = iptables.Ruleset(rs.chains, kept, rs.layout, rs.verbatim)
    assert edited.to_iptables_save() == "\n".join(line for line in PORTMAP.split("\n") if "-A CNI-DN-" not in line)
    counted = rs.rules.assign(packets=5, bytes=7)
    text = iptables.Ruleset(rs.chains, counted, rs.layout, rs.verbatim).to_iptables_save()
    assert text.count("[5:7] -A ") == len(rs.rules) and iptables.parse(text).rules["rule"].equals(rs.rules["rule"])


def test_rows_without_a_line_number_get_a_clear_error():
    rs = iptables.parse(PORTMAP)
    extra = pd.concat([rs.rules, rs.rules.iloc[:1].assign(lineno=None)], ignore_index=True)
    with pytest.raises(KindlabError, match="1 row.* of `rules` have no lineno"):
        iptables.Ruleset(rs.chains, extra, rs.layout, rs.verbatim).to_iptables_save()


def test_an_edited_row_is_written_from_its_values_even_where_its_line_was_odd():
    rs = iptables.parse(table("[01:2]  -A A -j ACCEPT\n"))
    assert "[01:2]  -A A -j ACCEPT" in rs.to_iptables_save()
    edited = iptables.Ruleset(rs.chains, rs.rules.assign(packets=9), rs.layout, rs.verbatim)
    assert "\n[9:2] -A A -j ACCEPT\n" in edited.to_iptables_save()


def test_empty_tables_and_empty_text():
    assert iptables.parse("").rules.empty
    rs = iptables.parse("*raw\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    assert rs.tables == ["raw", "nat"] and rs.rules.empty and len(rs.chains) == 1
    assert list(rs.rules.columns) == iptables.RULE_COLUMNS


def test_bytes_round_trip():
    raw = PORTMAP.replace("masquerade mark", "masquerade m\u00e4rk").encode()
    assert iptables.parse(raw).to_iptables_save().encode() == raw


# -- round trip and consistency on real output ------------------------------------------------------
@pytest.mark.parametrize("name", SAVED)
def test_real_output_round_trips_byte_for_byte(name):
    raw = (DATA / name).read_bytes()
    rs = iptables.parse(raw.decode())
    assert rs.to_iptables_save().encode() == raw
    assert len(rs.rules) == sum(1 for line in raw.decode().splitlines() if line.lstrip("[0123456789:] ")[:3] == "-A ")
    lines = raw.decode().split("\n")
    for lineno, rule, packets, nbytes in rs.rules[["lineno", "rule", "packets", "bytes"]].itertuples(index=False):
        prefix = "" if pd.isna(packets) else f"[{packets}:{nbytes}] "
        assert lines[lineno - 1] == prefix + rule


def test_nft_and_legacy_read_the_same():
    def key(rs):
        cols = ["table", "chain", "position", "rule", "packets", "bytes"]
        return rs.rules[cols].astype(str).sort_values(cols).reset_index(drop=True)
    nft, legacy = iptables.parse(fixture("nft-save-c.txt")), iptables.parse(fixture("legacy-save-c.txt"))
    pd.testing.assert_frame_equal(key(nft), key(legacy))
    warned = iptables.parse(fixture("nft-save-c-warning.txt"))
    pd.testing.assert_frame_equal(key(nft), key(warned))


def test_ip6tables_output():
    rules = iptables.parse(fixture("nft6-save-c.txt")).rules
    web = row(rules[rules["table"] == "filter"], "INPUT", 3)
    assert (web["source"], web["destination"], web["dports"], web["comment"]) == \
           ("fe80::/10", "!::1/128", "80,443:445", 'web "v6"')
    assert row(rules[rules["table"] == "nat"], "PREROUTING", 1)["to_destination"] == "[fd00::2]:8080"


# -- malformed input --------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "lineno", "words"), [
    ("-A INPUT -j ACCEPT\n", 1, "outside a table"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n", 1, "no COMMIT"),
    ("*filter\n:INPUT ACCEPT [0:0]\n*nat\nCOMMIT\n", 3, "no COMMIT"),
    ("*filter\nCOMMIT\n*filter\nCOMMIT\n", 3, "twice"),
    ("COMMIT\n", 1, "COMMIT outside"),
    (":INPUT ACCEPT [0:0]\n", 1, "outside a table"),
    ("*filter\n:INPUT ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\nCOMMIT\n", 3, "declared twice"),
    ("*filter\n:INPUT\nCOMMIT\n", 2, "chain line"),
    ("*filter\n:INPUT ACCEPT [0:x]\nCOMMIT\n", 2, "counters"),
    ("*filter\n:INPUT ACCEPT [0:0]\n[1:99999999999999999999] -A INPUT\nCOMMIT\n", 3, "too large"),
    ("*filter\n:INPUT ACCEPT [0:0]\n[1:2 -A INPUT\nCOMMIT\n", 3, "counters"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-I INPUT -j ACCEPT\nCOMMIT\n", 3, "only -A"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A\nCOMMIT\n", 3, "needs a chain"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A OUTPUT -j ACCEPT\nCOMMIT\n", 3, "not declared"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j\nCOMMIT\n", 3, "needs a value"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT ! ! -p tcp\nCOMMIT\n", 3, "! !"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT ! -j ACCEPT\nCOMMIT\n", 3, "cannot be negated"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp !\nCOMMIT\n", 3, "end of the rule"),
    ('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment "open\nCOMMIT\n', 3, "unterminated"),
    ("*filter\nbogus\nCOMMIT\n", 2, "not a line"),
    ("* nat x\nCOMMIT\n", 1, "one name"),
])
def test_malformed_input_names_the_line(text, lineno, words):
    with pytest.raises(IptablesParseError) as err:
        iptables.parse(text)
    assert err.value.lineno == lineno and err.value.line == text.split("\n")[lineno - 1]
    assert words in str(err.value) and f"line {lineno}" in str(err.value)
    assert isinstance(err.value, KindlabError)


def test_the_error_is_not_a_parse_of_the_next_rule_in_the_run():
    text = table("-A A -j ACCEPT\n-A A -j ACCEPT\n-A A -j\n-A A -j ACCEPT\n")
    with pytest.raises(IptablesParseError) as err:
        iptables.parse(text)
    assert err.value.lineno == 6


def test_parse_rejects_what_is_not_text():
    with pytest.raises(TypeError):
        iptables.parse(123)  # type: ignore[arg-type]


# -- hypothesis: fuzzing and a reference reading ----------------------------------------------------
FRAGMENTS = ["*filter\n", "*nat\n", ":INPUT ACCEPT [0:0]\n", ":A - [1:2]\n", ":A -\n", "COMMIT\n", "# x\n", "\n",
             "-A ", "[3:4] ", "INPUT ", "A ", "-j ", "-g ", "-m ", "--comment ", "! ", "-s ", "-p tcp ", '"', "\\",
             "ACCEPT", "comment ", '"a b" ', "x\"y ", "[", ":", "]", " ", "\t", "\r", "é", "\x00", "--dport 80 "]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join) | st.text(max_size=200))
def test_fuzz_parse_returns_a_ruleset_or_raises_the_parse_error(text):
    try:
        rs = iptables.parse(text)
    except IptablesParseError as exc:
        assert exc.lineno is not None and 1 <= exc.lineno <= text.count("\n") + 1
        assert exc.line == text.split("\n")[exc.lineno - 1]
        return
    assert rs.to_iptables_save() == text
    for (_, _), group in rs.rules.groupby(["table", "chain"], observed=True):
        assert group["position"].tolist() == list(range(1, len(group) + 1))
    lines = text.split("\n")
    for lineno, rule in rs.rules[["lineno", "rule"]].itertuples(index=False):
        assert lines[lineno - 1].strip(WS).endswith(rule.strip(WS))


ONE_VALUE = {"-p": "protocol", "-s": "source", "-d": "destination", "-i": "in_interface", "-o": "out_interface",
             "--comment": "comment", "--dport": "dport", "--dports": "dports", "--to-destination": "to_destination"}


class Refused(Exception):
    """What reference() finds wrong with a line; parse() must say the same."""


def refuse(ok: bool, why: str) -> None:
    if not ok:
        raise Refused(why)


def reference(line: str) -> dict:
    """A slow, plain reading of one rule line: what parse() promises, without its fast paths."""
    args = arguments.split_slow(line)
    if args and args[0].startswith("["):
        args = args[1:]
    cols: dict = {c: None for c in ONE_VALUE.values()}
    cols.update(matches=[], match_options=[], target=None, goto=False, target_options=[])
    i, neg = 2, False
    while i < len(args):
        arg = args[i]
        if arg == "!":
            refuse(not neg, "! !")
            neg, i = True, i + 1
            continue
        takes_value = arg in arguments.OPTIONS
        refuse(not takes_value or i + 1 < len(args), "needs a value")
        value = args[i + 1] if takes_value else None
        rest = "target_options" if cols["target"] is not None else "match_options"
        if arg in ONE_VALUE and cols[ONE_VALUE[arg]] is None:
            cols[ONE_VALUE[arg]] = "!" + value if neg else value
        elif arg in ("-m", "--match") and not neg:
            cols["matches"].append(value)
        elif arg in ("-j", "-g", "--jump", "--goto") and cols["target"] is None:
            refuse(not neg, "cannot be negated")
            cols["target"], cols["goto"] = value, arg in ("-g", "--goto")
        else:
            cols[rest] += (["!"] if neg else []) + [arg] + ([value] if takes_value else [])
        neg, i = False, i + (2 if takes_value else 1)
    refuse(not neg, "end of the rule")
    for key in ("match_options", "target_options"):
        cols[key] = arguments.join(cols[key]) if cols[key] else None
    cols["matches"] = tuple(cols["matches"])
    return cols


TOKENS = ["-p", "-s", "-d", "-i", "-o", "-m", "-j", "-g", "--comment", "--dport", "--dports", "--to-destination",
          "!", "--mode", "--log-prefix", "--random-fully", "-f", "--tcp-flags", "comment", "tcp", "multiport",
          "DNAT", "ACCEPT", "80", "10.0.0.0/8", "a b", 'say "hi"', "back\\slash", "", "-A", "--jump", "x\ty", "é"]
COMMENT = [["-m", "comment", "--comment"]]


def render(arg: str, force_quotes: bool) -> str:
    """An argument in a rule line: quoted when it must be (as iptables-save does), or when asked to."""
    if force_quotes:
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arguments.quote(arg)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=3) | st.sampled_from(COMMENT)
                | st.tuples(st.sampled_from(COMMENT), st.sampled_from(TOKENS)).map(lambda p: [*p[0], p[1]]),
                max_size=8).map(lambda groups: [t for g in groups for t in g]),
       st.lists(st.sampled_from([False, False, False, True]), min_size=40, max_size=40), st.booleans())
def test_parse_agrees_with_a_plain_reading(args, quote_flags, counters):
    rendered = " ".join(render(arg, quote) for arg, quote in zip(args, quote_flags, strict=False))
    line = ("[5:6] " if counters else "") + "-A A " + rendered
    try:
        expected = reference(line)
    except Refused as problem:
        with pytest.raises(IptablesParseError, match=re.escape(str(problem))):
            iptables.parse(table(line + "\n"))
        return
    got = one_rule(line)
    for column, value in expected.items():
        actual = None if not isinstance(got[column], tuple) and pd.isna(got[column]) else got[column]
        assert actual == value, (column, line)
    assert got["packets"] == (5 if counters else got["packets"])


RULE_ARGS = (st.lists(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=3) | st.sampled_from(COMMENT)
                      | st.tuples(st.sampled_from(COMMENT), st.sampled_from(TOKENS)).map(lambda p: [*p[0], p[1]]),
                      max_size=8).map(lambda groups: [t for g in groups for t in g]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(RULE_ARGS, st.lists(st.booleans(), min_size=40, max_size=40), st.booleans()),
                min_size=2, max_size=40))
def test_every_rule_of_a_long_table_reads_as_if_alone(rules):
    """Rules read one after another share caches: no rule's reading may leak into the next one's."""
    lines, expected = [], []
    for args, quote_flags, counters in rules:
        rendered = " ".join(render(arg, quote) for arg, quote in zip(args, quote_flags, strict=False))
        line = ("[5:6] " if counters else "") + "-A A " + rendered
        try:
            expected.append(reference(line))
        except Refused:
            continue
        lines.append(line)
    parsed = iptables.parse(table("".join(line + "\n" for line in lines))).rules
    assert len(parsed) == len(lines)
    for (_, got), want, line in zip(parsed.iterrows(), expected, lines, strict=True):
        for column, value in want.items():
            actual = None if not isinstance(got[column], tuple) and pd.isna(got[column]) else got[column]
            assert actual == value, (column, line)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\x00"), max_size=60))
def test_any_comment_survives_the_iptables_save_quoting(comment):
    line = f"-A A -p tcp -m comment --comment {arguments.quote(comment)} -j ACCEPT"
    assert one_rule(line)["comment"] == comment


# -- diff ------------------------------------------------------------------------------------------
def test_diff_lists_what_portmap_added():
    after = iptables.parse(PORTMAP)
    before_text = "\n".join(line for line in PORTMAP.split("\n") if "CNI-DN-" not in line)
    changes = iptables.diff(iptables.parse(before_text), after)
    assert list(changes.columns) == ["change", *iptables.RULE_COLUMNS]
    assert set(changes["change"]) == {"added"} and len(changes) == 4
    assert set(changes["chain"]) == {"CNI-DN-f2bdc201a4632f9cd4dcc", "CNI-HOSTPORT-DNAT"}
    assert changes.loc[changes["target"] == "DNAT", "to_destination"].tolist() == ["192.168.1.2:8080"]
    back = iptables.diff(after, iptables.parse(before_text))
    assert set(back["change"]) == {"removed"} and sorted(back["rule"]) == sorted(changes["rule"])


def test_diff_ignores_counters_and_moves_but_counts_duplicates():
    base = table("[1:2] -A A -j ACCEPT\n[0:0] -A A -p tcp -j DROP\n[0:0] -A A -p tcp -j DROP\n")
    counted = base.replace("[1:2]", "[9:999]")
    assert iptables.diff(iptables.parse(base), iptables.parse(counted)).empty
    moved = table("[0:0] -A A -p tcp -j DROP\n[1:2] -A A -j ACCEPT\n[0:0] -A A -p tcp -j DROP\n")
    assert iptables.diff(iptables.parse(base), iptables.parse(moved)).empty
    once = table("[1:2] -A A -j ACCEPT\n[0:0] -A A -p tcp -j DROP\n")
    changes = iptables.diff(iptables.parse(base), iptables.parse(once))
    assert changes[["change", "rule"]].values.tolist() == [["removed", "-A A -p tcp -j DROP"]]
    other_table = base.replace("*filter", "*mangle")
    changes = iptables.diff(iptables.parse(base), iptables.parse(other_table))
    assert (changes["change"] == "removed").sum() == 3 and (changes["change"] == "added").sum() == 3


# -- trace -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved() -> iptables.Ruleset:
    return iptables.parse(fixture("nft-save-c.txt"))


def path_of(steps: pd.DataFrame) -> list[tuple]:
    return [(s.chain, s.action, s.target) for s in steps.itertuples()]


def test_trace_a_hostport_packet_to_the_pod(saved):
    steps = iptables.trace(saved, "nat", "PREROUTING", protocol="tcp", dst_port=80, dst_local=True)
    assert list(steps.columns) == iptables.STEP_COLUMNS
    assert path_of(steps) == [
        ("PREROUTING", "jump", "CNI-HOSTPORT-DNAT"),
        ("CNI-HOSTPORT-DNAT", "jump", "CNI-DN-f2bdc201a4632f9cd4dcc"),
        ("CNI-DN-f2bdc201a4632f9cd4dcc", "skip", "CNI-HOSTPORT-SETMARK"),  # -s: the source is not known
        ("CNI-DN-f2bdc201a4632f9cd4dcc", "skip", "CNI-HOSTPORT-SETMARK"),
        ("CNI-DN-f2bdc201a4632f9cd4dcc", "terminate", "DNAT"),
    ]
    last = steps.iloc[-1]
    assert last["to_destination"] == "192.168.1.2:8080" and last["position"] == 3 and last["depth"] == 2
    assert steps["step"].tolist() == list(range(5)) and steps["matched"].isna().tolist() == [False, False, True, True,
                                                                                            False]


def test_trace_from_the_pod_network_marks_for_masquerade(saved):
    steps = iptables.trace(saved, "nat", "PREROUTING", protocol="tcp", src="192.168.1.7", dst_port=80,
                           dst_local=True)
    assert path_of(steps)[2:] == [
        ("CNI-DN-f2bdc201a4632f9cd4dcc", "jump", "CNI-HOSTPORT-SETMARK"),
        ("CNI-HOSTPORT-SETMARK", "continue", "MARK"),
        ("CNI-HOSTPORT-SETMARK", "return", "RETURN"),
        ("CNI-DN-f2bdc201a4632f9cd4dcc", "terminate", "DNAT"),
    ]
    assert steps["depth"].tolist() == [0, 1, 2, 3, 3, 2]
    marked = iptables.trace(saved, "nat", "POSTROUTING", mark=0x2000, src="192.168.1.7", dst="10.0.0.1")
    assert path_of(marked)[-1] == ("CNI-HOSTPORT-MASQ", "terminate", "MASQUERADE")
    unmarked = iptables.trace(saved, "nat", "POSTROUTING", mark=0, src="10.9.9.9", dst="10.0.0.1")
    assert path_of(unmarked)[-1] == ("POSTROUTING", "policy", "ACCEPT")


def test_trace_a_service_packet_through_kube_proxy_chains(saved):
    packet = {"protocol": "tcp", "dst": "10.96.0.10", "dst_port": 80, "dst_local": False, "src": "10.0.0.5"}
    steps = iptables.trace(saved, "nat", "PREROUTING", **packet)
    assert [s for s in path_of(steps) if s[1] != "skip"] == [
        ("PREROUTING", "jump", "KUBE-SERVICES"),
        ("KUBE-SERVICES", "jump", "KUBE-SVC-CCCCCCCCCCCCCCCC"),
        ("KUBE-SVC-CCCCCCCCCCCCCCCC", "jump", "KUBE-SEP-BBBBBBBBBBBBBBBB"),  # the random one is skipped
        ("KUBE-SEP-BBBBBBBBBBBBBBBB", "terminate", "DNAT"),
    ]
    taken = iptables.trace(saved, "nat", "PREROUTING", unknown="take", **packet)
    assert taken.iloc[-1]["to_destination"] == "10.244.1.2:8080"
    assert "skip" not in set(taken["action"]) and taken["matched"].isna().sum() == 1


def test_trace_goto_does_not_come_back(saved):
    steps = iptables.trace(saved, "filter", "INPUT", protocol="tcp", dst_port=22, in_interface="eth0",
                           src="192.0.2.1", ctstate="NEW")
    assert [s for s in path_of(steps) if s[1] != "skip"] == [("INPUT", "goto", "SSH"), ("SSH", "terminate", "ACCEPT")]
    text = table("-A INPUT -g A\n-A INPUT -j ACCEPT\n-A A -p udp -j ACCEPT\n", chains="INPUT DROP,A -")
    steps = iptables.trace(iptables.parse(text), "filter", "INPUT", protocol="tcp")
    assert path_of(steps) == [("INPUT", "goto", "A"), ("A", "return", "RETURN"), ("INPUT", "policy", "DROP")]


@pytest.mark.parametrize(("rule", "packet", "matched"), [
    ("-p tcp", {"protocol": "TCP"}, True),
    ("-p 6", {"protocol": "tcp"}, True),
    ("! -p tcp", {"protocol": "udp"}, True),
    ("-p all", {}, True),
    ("-s 10.0.0.0/8", {"src": "10.2.3.4"}, True),
    ("! -s 10.0.0.0/8", {"src": "10.2.3.4"}, False),
    ("-d 10.0.0.0/8", {"dst": "192.0.2.1"}, False),
    ("-d fd00::/8", {"dst": "10.0.0.1"}, False),
    ("-d 10.0.0.0/8", {}, None),
    ("-i veth+", {"in_interface": "veth1234"}, True),
    ("-i eth0", {"in_interface": "eth1"}, False),
    ("-p tcp -m tcp --dport 80:90", {"protocol": "tcp", "dst_port": 85}, True),
    ("-p tcp -m tcp ! --dport 80", {"protocol": "tcp", "dst_port": 80}, False),
    ("-p tcp -m tcp --sport 1024:", {"protocol": "tcp", "src_port": 5000}, True),
    ("-p tcp -m multiport --dports 80,443:445", {"protocol": "tcp", "dst_port": 444}, True),
    ("-p tcp -m multiport --dports 80,443", {"protocol": "tcp", "dst_port": 22}, False),
    ("-m addrtype --dst-type LOCAL", {"dst_local": False}, False),
    ("-m addrtype ! --dst-type LOCAL", {"dst_local": False}, True),
    ("-m addrtype --dst-type UNICAST", {"dst_local": False}, None),
    ("-m mark --mark 0x1/0x1", {"mark": 3}, True),
    ("-m mark --mark 0x4", {"mark": 0}, False),
    ("-m conntrack --ctstate NEW,RELATED", {"ctstate": "new"}, True),
    ("-m conntrack --ctstate NEW", {}, None),
    ("-m statistic --mode random --probability 0.5", {}, None),
    ("-m comment --comment x", {}, True),
    ("-m physdev --physdev-is-bridged", {}, None),
])
def test_trace_evaluates_a_subset_of_matches(rule, packet, matched):
    rs = iptables.parse(table(f"-A INPUT {rule} -j DROP\n", chains="INPUT ACCEPT"))
    steps = iptables.trace(rs, "filter", "INPUT", **packet)
    first = steps.iloc[0]
    if matched is None:
        assert first["action"] == "skip" and pd.isna(first["matched"])
    elif matched:
        assert (first["action"], first["target"]) == ("terminate", "DROP")
    else:
        assert path_of(steps) == [("INPUT", "policy", "ACCEPT")]


def test_trace_refuses_loops_and_unknown_chains():
    loop = iptables.parse(table("-A A -g B\n-A B -g A\n", chains="A -,B -"))
    with pytest.raises(KindlabError, match="loop"):
        iptables.trace(loop, "filter", "A", max_jumps=50)
    with pytest.raises(KindlabError, match="no chain"):
        iptables.trace(loop, "nat", "PREROUTING")
    with pytest.raises(KindlabError, match="not an IP address"):
        iptables.trace(loop, "filter", "A", src="nowhere")


# -- ports -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "port", "covered"), [
    ("80", 80, True),                   # --dport 80
    ("80", 81, False),
    ("80,443", 443, True),              # --dports 80,443
    ("80,443", 444, False),
    ("80:90", 80, True),                # a range includes both ends
    ("80:90", 90, True),
    ("80:90", 91, False),
    (":90", 0, True),                   # an open low end is 0
    (":90", 91, False),
    ("80:", 65535, True),               # an open high end is 65535
    ("80:", 79, False),
    (":", 1234, True),
    ("80,443:445", 444, True),          # multiport: ports and ranges
    ("90:80", 85, False),               # min > max: iptables refuses it; nothing is in it
    ("0", 0, True),
    ("http", 80, None),                 # a service name: iptables-save writes numbers, so not read
    ("!80", 81, None),                  # a negation is the caller's to apply
    ("80,", 80, None),                  # an empty item, which iptables refuses
    ("65536", 80, None),                # beyond the port range
    ("80:70000", 80, None),
    ("", 80, None),
])
def test_in_ports_reads_port_specs_as_iptables_accepts_them(spec, port, covered):
    from kindlab.iptables.ports import in_ports

    assert in_ports(port, spec) is covered


def test_in_ports_of_an_unknown_port_is_unknown():
    from kindlab.iptables.ports import in_ports, port_range

    assert in_ports(None, "80") is None
    assert (port_range("80"), port_range(":90"), port_range("80:"), port_range("x")) == \
        ((80, 80), (0, 90), (80, 65535), None)


def test_trace_and_doctor_read_an_open_ended_range_alike():
    import dataclasses

    from kindlab.doctor import dnat_rule
    from kindlab.model.pods import HostPort

    rs = iptables.parse(table("-A PREROUTING -p tcp -m tcp --dport 8000: -j DNAT --to-destination 10.0.0.2:80\n",
                              chains="PREROUTING ACCEPT", name="nat"))
    steps = iptables.trace(rs, "nat", "PREROUTING", protocol="tcp", dst_port=8080)
    assert steps.iloc[-1]["target"] == "DNAT"
    hp = HostPort(pod="p", host_port=8080, container_port=80, protocol="TCP", host_ip=None, pod_ip="10.0.0.2",
                  running=True)
    assert len(dnat_rule(rs.rules, hp)) == 1
    assert dnat_rule(rs.rules, dataclasses.replace(hp, host_port=7999)).empty


# -- node_rules ------------------------------------------------------------------------------------


def test_node_rules_runs_iptables_save_with_counters_in_the_node():
    lab = TextLab(fixture("nft-save-c.txt"))
    rs = iptables.node_rules(lab, "kind-worker")
    assert lab.calls == [("kind-worker", ["iptables-save", "-c"])]
    assert rs.to_iptables_save() == lab.text and len(rs.rules) == lab.text.count("\n[")
    iptables.node_rules(lab, "kind-worker2", table="nat", ipv6=True)
    assert lab.calls[-1] == ("kind-worker2", ["ip6tables-save", "-c", "-t", "nat"])
