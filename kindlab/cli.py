"""The `kindlab` command: kind's and kubectl's verbs for a kindlab cluster.

    kindlab create cluster --name kind --config kind/config [--backoff S]
    kindlab delete cluster --name kind | kindlab delete clusters --all
    kindlab get clusters|nodes|pods|events [-o wide|json]
    kindlab apply -f PATH | kindlab delete -f PATH | kindlab delete pod NAME
    kindlab exec NODE -- CMD... | kindlab cp SRC DEST | kindlab curl URL
    kindlab doctor [-o json]

A user's mistake prints one line and exits non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .errors import KindlabError

GET_KINDS = {"clusters": "clusters", "cluster": "clusters", "nodes": "nodes", "node": "nodes", "no": "nodes",
             "pods": "pods", "pod": "pods", "po": "pods", "events": "events", "event": "events", "ev": "events"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per verb."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default="kind", help="cluster name (default: kind)")
    common.add_argument("--backend", choices=("kind", "netns"), help="backend (default: $KINDLAB_BACKEND or auto)")

    parser = argparse.ArgumentParser(prog="kindlab", description="Run the hostPort walkthrough on kind or netns.")
    parser.add_argument("--version", action="version", version=f"kindlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True

    create = sub.add_parser("create", parents=[common], help="create a cluster (like kind create cluster)")
    create.add_argument("what", choices=("cluster",))
    create.add_argument("--config", default="kind/config", help="kind config file (default: kind/config)")
    create.add_argument("--backoff", type=float, help="sandbox retry back-off in seconds (netns; default 10)")

    delete = sub.add_parser("delete", parents=[common], help="delete a cluster, clusters, a pod, or -f PATH")
    delete.add_argument("what", nargs="?", choices=("cluster", "clusters", "pod", "pods"))
    delete.add_argument("names", nargs="*", help="pod names")
    delete.add_argument("--all", action="store_true", help="with clusters: every cluster, dead labs too")
    delete.add_argument("-f", "--filename", help="delete the pods a manifest file or folder defines")

    get = sub.add_parser("get", parents=[common], help="list clusters, nodes, pods or events")
    get.add_argument("what", choices=sorted(GET_KINDS))
    get.add_argument("-o", "--output", choices=("wide", "json"), help="output format")

    apply = sub.add_parser("apply", parents=[common], help="create pods and deployments from manifests")
    apply.add_argument("-f", "--filename", required=True, help="manifest file or folder")

    execp = sub.add_parser("exec", parents=[common], help="run a command in a node (like docker exec)")
    execp.add_argument("node")
    execp.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")

    cp = sub.add_parser("cp", parents=[common], help="copy files to or from a node (like docker cp)")
    cp.add_argument("src")
    cp.add_argument("dest")

    curl = sub.add_parser("curl", parents=[common], help="GET a URL from the host side of the cluster")
    curl.add_argument("url")
    curl.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    curl.add_argument("-i", "--include", action="store_true", help="print the status line and headers too")

    doctor = sub.add_parser("doctor", parents=[common], help="check every node's hostPort plumbing")
    doctor.add_argument("-o", "--output", choices=("json",), help="output format")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one command; KindlabError becomes one line on stderr and its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.verb](args) or 0
    except KindlabError as exc:
        print(f"kindlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kindlab: interrupted", file=sys.stderr)
        return 130


def _lab(args: argparse.Namespace):
    from .backends import get

    return get(args.name, backend=args.backend)


def cmd_create(args: argparse.Namespace) -> int:
    from .backends import up

    lab = up(args.config, name=args.name, backend=args.backend, backoff=args.backoff)
    print(f"Cluster {lab.name!r} is up on the {lab.backend} backend: {len(lab.node_names())} nodes.")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from . import backends, objects

    if args.filename:
        lab = _lab(args)
        for obj in objects.load(args.filename):
            if isinstance(obj, objects.PodSpec):
                print(lab.delete_pod(obj.name, obj.namespace))
        return 0
    if args.what == "cluster":
        found = backends.delete(args.name, backend=args.backend)
        print(f"Deleted cluster {args.name!r}." if found else f"No cluster {args.name!r} to delete.")
        return 0
    if args.what == "clusters":
        if not args.all:
            raise KindlabError("delete clusters needs --all (or use: kindlab delete cluster --name NAME)")
        for name in backends.delete_all(backend=args.backend):
            print(f"Deleted cluster {name!r}.")
        return 0
    if args.what in ("pod", "pods"):
        if not args.names:
            raise KindlabError("delete pod needs a pod name: kindlab delete pod NAME")
        lab = _lab(args)
        for name in args.names:
            print(lab.delete_pod(name))
        return 0
    raise KindlabError("delete what? kindlab delete cluster|clusters --all|pod NAME|-f PATH")


def cmd_get(args: argparse.Namespace) -> int:
    from . import backends

    what = GET_KINDS[args.what]
    if what == "clusters":
        names = backends.clusters(backend=args.backend)
        if args.output == "json":
            print(json.dumps({"items": [{"name": n} for n in names]}, indent=2))
        elif not names:
            print("No kind clusters found.", file=sys.stderr)
        else:
            print("\n".join(names))
        return 0
    lab = _lab(args)
    items = {"nodes": lab.node_list, "pods": lab.pod_list, "events": lab.event_list}[what]()
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2, default=str))
        return 0
    if not items:
        print("No resources found in default namespace.", file=sys.stderr)
        return 0
    print(format_table(*TABLES[what](items, wide=args.output == "wide")))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    lab = _lab(args)
    for line in lab.apply(args.filename):
        print(line)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from .errors import ExecError

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise KindlabError("exec needs a command: kindlab exec NODE -- CMD [ARGS...]")
    lab = _lab(args)
    try:
        out = lab.exec(args.node, command)
    except ExecError as exc:
        sys.stdout.write(exc.stdout)
        sys.stderr.write(exc.stderr)
        return exc.returncode or 1
    sys.stdout.write(out)
    return 0


def cmd_cp(args: argparse.Namespace) -> int:
    _lab(args).cp(args.src, args.dest)
    return 0


def cmd_curl(args: argparse.Namespace) -> int:
    response = _lab(args).curl(args.url, timeout=args.timeout)
    if args.include:
        print(f"HTTP/1.1 {response.status}")
        for key, value in response.headers.items():
            print(f"{key}: {value}")
        print()
    sys.stdout.write(response.body)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor

    findings = doctor(_lab(args))
    if args.output == "json":
        print(json.dumps({"findings": findings.to_dict(orient="records")}, indent=2, default=str))
    else:
        rows = [[r.node, r.check, "ok" if r.ok else "FAIL", r.message, "" if r.ok else r.fix]
                for r in findings.itertuples()]
        print(format_table(["NODE", "CHECK", "RESULT", "MESSAGE", "FIX"], rows))
    return 0 if bool(findings["ok"].all()) else 1


COMMANDS = {"create": cmd_create, "delete": cmd_delete, "get": cmd_get, "apply": cmd_apply, "exec": cmd_exec,
            "cp": cmd_cp, "curl": cmd_curl, "doctor": cmd_doctor}


# -- kubectl-style tables -------------------------------------------------------------
def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """Columns padded as kubectl pads them: three spaces between columns."""
    cells = [header] + [["<none>" if v in (None, "") else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl's short age: 42s, 5m, 3h, 2d."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def pod_rows(items: list[dict], wide: bool = False) -> tuple[list[str], list[list[Any]]]:
    """kubectl get pods: NAME READY STATUS RESTARTS AGE (wide: IP NODE HOSTIP)."""
    header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (["IP", "NODE", "HOSTIP"] if wide else [])
    rows = []
    for p in items:
        status = p.get("status", {}) or {}
        statuses = status.get("containerStatuses") or []
        total = len((p.get("spec") or {}).get("containers") or []) or len(statuses)
        ready = sum(1 for s in statuses if s.get("ready"))
        reason = status.get("reason") or next((s["state"]["waiting"].get("reason") for s in statuses
                                               if (s.get("state") or {}).get("waiting")), None)
        row = [p["metadata"]["name"], f"{ready}/{total}", reason or status.get("phase"),
               sum(int(s.get("restartCount", 0)) for s in statuses),
               age(p["metadata"].get("creationTimestamp"))]
        if wide:
            row += [status.get("podIP"), (p.get("spec") or {}).get("nodeName"), status.get("hostIP")]
        rows.append(row)
    return header, sorted(rows, key=lambda r: r[0])


def node_rows(items: list[dict], wide: bool = False) -> tuple[list[str], list[list[Any]]]:
    """kubectl get nodes: NAME STATUS ROLES AGE VERSION (wide: INTERNAL-IP POD-CIDR)."""
    header = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"] + (["INTERNAL-IP", "POD-CIDR"] if wide else [])
    rows = []
    for n in items:
        labels = n["metadata"].get("labels", {}) or {}
        roles = ",".join(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")) or "<none>"
        conditions = (n.get("status") or {}).get("conditions") or []
        ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), "Unknown")
        row = [n["metadata"]["name"], "Ready" if ready == "True" else "NotReady", roles,
               age(n["metadata"].get("creationTimestamp")),
               ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")]
        if wide:
            ip = next((a["address"] for a in (n.get("status") or {}).get("addresses", [])
                       if a.get("type") == "InternalIP"), None)
            row += [ip, (n.get("spec") or {}).get("podCIDR")]
        rows.append(row)
    return header, rows


def event_rows(items: list[dict], wide: bool = False) -> tuple[list[str], list[list[Any]]]:
    """kubectl get events: LAST SEEN TYPE REASON OBJECT MESSAGE (wide: COUNT FIRST SEEN)."""
    header = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"] + (["COUNT", "FIRST SEEN"] if wide else [])
    rows = []
    for e in sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or "")):
        obj = e.get("involvedObject") or {}
        row = [age(e.get("lastTimestamp") or e.get("eventTime")), e.get("type"), e.get("reason"),
               f"{str(obj.get('kind', 'Pod')).lower()}/{obj.get('name')}", e.get("message")]
        if wide:
            row += [e.get("count") or 1, age(e.get("firstTimestamp"))]
        rows.append(row)
    return header, rows


TABLES = {"pods": pod_rows, "nodes": node_rows, "events": event_rows}


if __name__ == "__main__":
    sys.exit(main())
