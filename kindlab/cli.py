"""The `kindlab` command: kind's and kubectl's verbs for a kindlab cluster.

    kindlab create cluster --name kind --config kind/config [--kubernetes real|model] [--backoff S] [--cni C]
    kindlab build node-image
    kindlab delete cluster --name kind | kindlab delete clusters --all
    kindlab get clusters|nodes|pods|events [-o wide|json] | kindlab get kubeconfig
    kindlab apply -f PATH | kindlab delete -f PATH | kindlab delete pod NAME
    kindlab exec NODE -- CMD... | kindlab cp SRC DEST | kindlab curl URL
    kindlab doctor [-o json] [--kubeconfig FILE [--context NAME]] [--node NODE...] [--dry-run]

A user's mistake prints one line and exits non-zero, never a traceback; options may come anywhere
among a command's arguments, as with kubectl; a closed stdout (`kindlab get nodes | head -1`) ends quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .errors import KindlabError, ManifestError

# Bounds of the numbers the command line takes: (option, lowest, whether the lowest itself is allowed, highest).
SECONDS = {"timeout": ("--timeout", 0.0, False, 86400.0), "backoff": ("--backoff", 0.0, True, 300.0)}

GET_KINDS = {"clusters": "clusters", "cluster": "clusters", "nodes": "nodes", "node": "nodes", "no": "nodes",
             "pods": "pods", "pod": "pods", "po": "pods", "events": "events", "event": "events", "ev": "events",
             "kubeconfig": "kubeconfig"}


class _Intermixed(argparse.ArgumentParser):
    """A sub-command's parser that takes options anywhere among its arguments (`delete pod --name x NAME`);
    a parser with a `--` remainder (exec) parses as usual."""

    _mixing = False

    def parse_known_args(self, args=None, namespace=None):
        remainder = any(a.nargs == argparse.REMAINDER for a in self._get_positional_actions())
        if self._mixing or remainder:
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per verb."""
    from .backends import registry

    # the options every cluster verb shares, lent to their sub-parsers (`parents`): of the sub-parsers' class, as
    # typeshed types `add_parser`'s parents (a parent only lends its options; it never parses)
    common = _Intermixed(add_help=False)
    common.add_argument("--name", default="kind", help="cluster name (default: kind)")
    common.add_argument("--backend", choices=registry.names(), help="backend (default: $KINDLAB_BACKEND or auto)")

    parser = argparse.ArgumentParser(prog="kindlab", description="Run the hostPort walkthrough on kind or netns.")
    parser.add_argument("--version", action="version", version=f"kindlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Intermixed)
    sub.required = True

    create = sub.add_parser("create", parents=[common], help="create a cluster (like kind create cluster)")
    create.add_argument("what", choices=("cluster",))
    create.add_argument("--config", default="kind/config", help="kind config file (default: kind/config)")
    create.add_argument("--kubernetes", choices=registry.kubernetes_choices(),
                        help="the real kubelet and API server, or kindlab's model of the kubelet (netns) "
                             "(default: $KINDLAB_KUBERNETES, else real where set-up built it)")
    create.add_argument("--backoff", type=float, help="the model's sandbox retry back-off in seconds (default 10)")
    create.add_argument("--cni", choices=registry.cni_choices(),
                        help="kind: Cilium (helm) or kindlab-cni (default: $KINDLAB_CNI, else cilium where helm is "
                             "installed, else kindlab); netns: always kindlab")

    build = sub.add_parser("build", help="make on this machine what a backend needs (like kind build node-image)")
    build.add_argument("what", choices=registry.build_choices())

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
    doctor.add_argument("--kubeconfig", help="check any cluster through this kubeconfig (one debug pod per node)")
    doctor.add_argument("--context", help="with --kubeconfig: the context to use (default: its current one)")
    doctor.add_argument("--node", action="append", dest="nodes", metavar="NODE", help="only this node (repeatable)")
    doctor.add_argument("--image", help="the debug pods' image (default: busybox:1.36; it needs /bin/busybox)")
    doctor.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (default 300)")
    doctor.add_argument("--dry-run", action="store_true", help="print the objects doctor would create, create nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one command; KindlabError becomes one line on stderr and its exit code."""
    args = build_parser().parse_args(argv)
    try:
        check_seconds(args)
        code = COMMANDS[args.verb](args) or 0
        sys.stdout.flush()
        return code
    except KindlabError as exc:
        print(f"kindlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        print("kindlab: interrupted", file=sys.stderr)
        return 130


def check_seconds(args: argparse.Namespace) -> None:
    """KindlabError unless every number of seconds given is finite and within its bounds (SECONDS): nan, inf,
    a negative or zero timeout would turn a deadline off or overflow the timer."""
    import math

    for dest, (option, low, low_ok, high) in SECONDS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if not (math.isfinite(value) and (value >= low if low_ok else value > low) and value <= high):
            floor = f">= {low:g}" if low_ok else f"> {low:g}"
            raise KindlabError(f"{option} {value:g}: must be a number of seconds {floor} and at most {high:g}")


def _stdout_closed() -> int:
    """The reader of stdout went away (`| head`, `| true`): stop quietly, as a tool killed by SIGPIPE does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())   # so that the interpreter's last flush does not fail again
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _lab(args: argparse.Namespace):
    from .backends import get

    return get(args.name, backend=args.backend)


def cmd_create(args: argparse.Namespace) -> int:
    from .backends import up
    from .progress import Bars

    lab = up(args.config, name=args.name, backend=args.backend, backoff=args.backoff, progress=Bars(sys.stderr),
             kubernetes=args.kubernetes, cni=args.cni)
    print(f"Cluster {lab.name!r} is up: {len(lab.node_names())} nodes, {lab.capabilities.describe()}.")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """`kindlab build WHAT`: the backend that makes it, reporting as it goes; what was made on stdout."""
    from .backends import registry
    from .progress import Bars

    print(registry.builder(args.what).build(args.what, Bars(sys.stderr)))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from . import backends, objects

    if args.filename:
        items = objects.load(args.filename)
        if not items:
            raise ManifestError(f"no objects passed to delete (from {args.filename})")
        lab = _lab(args)
        for obj in items:
            if isinstance(obj, objects.PodSpec):
                print(lab.delete_pod(obj.name, obj.namespace))
        return 0
    if args.what == "cluster":
        found = backends.delete(args.name, backend=args.backend)
        if found:
            print(f"Deleted cluster {args.name!r}.")
        else:   # deleting is idempotent, as kind's: nothing to do is no error
            print(f"No cluster {args.name!r} to delete.", file=sys.stderr)
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
        _warn_broken(names, args.backend)
        if args.output == "json":
            print(json.dumps({"items": [{"name": n} for n in names]}, indent=2))
        elif not names:
            print("No kind clusters found.", file=sys.stderr)
        else:
            print("\n".join(names))
        return 0
    lab = _lab(args)
    if what == "kubeconfig":
        sys.stdout.write(lab.kubeconfig())
        return 0
    items = {"nodes": lab.node_list, "pods": lab.pod_list, "events": lab.event_list}[what]()
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2, default=str))
        return 0
    if not items:
        print("No resources found in default namespace.", file=sys.stderr)
        return 0
    print(format_table(*TABLES[what](items, wide=args.output == "wide")))
    return 0


def _warn_broken(names: list[str], backend: str | None) -> None:
    """One stderr line per cluster that cannot be used (half-made by an interrupted create)."""
    from .backends import broken

    for name in names:
        if why := broken(name, backend=backend):
            print(f"kindlab: warning: cluster {name!r} is broken: {why}; remove it: "
                  f"kindlab delete cluster --name {name}", file=sys.stderr)


def cmd_apply(args: argparse.Namespace) -> int:
    """Apply each object of the manifests; like kubectl, print what was made and what failed (exit 1 then)."""
    from . import objects

    items = objects.load_each(args.filename)     # read first: a file that cannot be read needs no cluster
    if not items:
        raise ManifestError(f"no objects passed to apply (from {args.filename})")
    if len(items) == 1 and isinstance(items[0], KindlabError):
        raise items[0]
    lab = _lab(args)
    failed = 0
    for item in items:
        try:
            print(_apply_one(lab, item), flush=True)
        except KindlabError as exc:
            failed += 1
            print(f"kindlab: error: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _apply_one(lab, item) -> str:
    """kubectl's line for one object; the object's own error (from reading it) or the lab's is raised."""
    if isinstance(item, KindlabError):
        raise item
    return lab.apply_object(item)


def cmd_exec(args: argparse.Namespace) -> int:
    from .errors import ExecError

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command or not command[0]:
        raise KindlabError("exec needs a command: kindlab exec NODE -- CMD [ARGS...]")
    lab = _lab(args)
    try:
        out = lab.exec(args.node, command)
    except ExecError as exc:
        if not exc.stdout and not exc.stderr:   # the command did not start: kindlab's own one line
            print(f"kindlab: error: {exc}", file=sys.stderr)
            return exc.returncode or 1
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
    """Doctor on a lab, or on any cluster through --kubeconfig; a lab with an API server (real Kubernetes, kind)
    is checked through its own kubeconfig too, by the same debug pods, so there is one doctor."""
    import yaml

    from .backends.kube import debug, remote
    from .doctor import doctor

    image = args.image or debug.IMAGE
    if args.kubeconfig:
        kubeconfig: Any = args.kubeconfig
        name, topology = None, None
    else:
        lab = _lab(args)
        if not lab.capabilities.kubeconfig:   # the model: no API server, its nodes are read directly
            if args.dry_run:
                print("# nothing to create: this cluster's nodes are read directly (it has no API server)")
                return 0
            with _deadline(args.timeout, "doctor"):
                return _print_findings(doctor(lab), args.output)
        kubeconfig, name, topology = yaml.safe_load(lab.kubeconfig()), lab.name, lab.topology
    with _deadline(args.timeout, "doctor"):    # reaching the API server is under the one deadline too
        target = remote.connect(kubeconfig, args.context, name=name, image=image, nodes=args.nodes,
                                topology=topology)
        if args.dry_run:
            print(yaml.safe_dump_all(debug.dry_run(target.node_names(), image), sort_keys=False), end="")
            return 0
        with target:
            findings = doctor(target)
    return _print_findings(findings, args.output)


def _deadline(seconds: float, what: str):
    """A context in which SIGALRM after `seconds` raises WaitTimeout (the `with` blocks around it still clean up)."""
    import contextlib

    from .errors import WaitTimeout

    @contextlib.contextmanager
    def guard():
        def expire(signum, frame):
            raise WaitTimeout(f"{what} did not finish in {seconds:g}s (--timeout)")
        old = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    return guard()


def _print_findings(findings, output: str | None) -> int:
    """The findings as a table (or JSON); exit 0 when every one is ok, 1 otherwise."""
    if output == "json":
        print(json.dumps({"findings": findings.to_dict(orient="records")}, indent=2, default=str))
    else:
        rows = [[r.node, r.check, "ok" if r.ok else "FAIL", r.message, "" if r.ok else r.fix]
                for r in findings.itertuples()]
        print(format_table(["NODE", "CHECK", "RESULT", "MESSAGE", "FIX"], rows))
    return 0 if bool(findings["ok"].all()) else 1


COMMANDS = {"build": cmd_build, "create": cmd_create, "delete": cmd_delete, "get": cmd_get, "apply": cmd_apply,
            "exec": cmd_exec, "cp": cmd_cp, "curl": cmd_curl, "doctor": cmd_doctor}


# -- kubectl-style tables -------------------------------------------------------------
def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """Columns padded as kubectl pads them: three spaces between columns."""
    cells = [header] + [["<none>" if v in (None, "") else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl's short age: 42s, 5m, 3h, 2d."""
    from .model.pods import epoch

    then = epoch(timestamp)
    if then is None:
        return "<unknown>"
    seconds = max(0, int((now or datetime.now(UTC)).timestamp() - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def pod_rows(items: list[dict], wide: bool = False) -> tuple[list[str], list[list[Any]]]:
    """kubectl get pods: NAME READY STATUS RESTARTS AGE (wide: IP NODE HOSTIP), from cluster.pod_summary."""
    from .cluster import pod_summary

    header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (["IP", "NODE", "HOSTIP"] if wide else [])
    rows = []
    for p in map(pod_summary, items):
        row = [p["name"], f"{p['ready_count']}/{p['containers']}", p["reason"] or p["phase"], p["restarts"],
               age(p["creationTimestamp"])]
        if wide:
            row += [p["podIP"], p["node"], p["hostIP"]]
        rows.append(row)
    return header, sorted(rows, key=lambda r: r[0])


def node_rows(items: list[dict], wide: bool = False) -> tuple[list[str], list[list[Any]]]:
    """kubectl get nodes: NAME STATUS ROLES AGE VERSION (wide: INTERNAL-IP POD-CIDR CONTAINER-RUNTIME), from
    cluster.node_summary."""
    from .cluster import node_summary

    header = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"] + (["INTERNAL-IP", "POD-CIDR", "CONTAINER-RUNTIME"]
                                                               if wide else [])
    rows = []
    for n in map(node_summary, items):
        row = [n["name"], "Ready" if n["ready"] else "NotReady", n["roles"], age(n["creationTimestamp"]),
               n["kubeletVersion"]]
        if wide:
            row += [n["ip"], n["podCIDR"], n["containerRuntimeVersion"]]
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
