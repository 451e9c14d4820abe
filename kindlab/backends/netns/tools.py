"""Running the machine's tools (ip, nsenter, unshare, mount, curl, ...): one place that turns failures into errors.

A missing tool becomes EnvironmentProblem naming the Debian package; a tool that fails becomes
ClusterError quoting what was being done and the tool's own words.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ...errors import ClusterError, EnvironmentProblem
from .names import STD_PATH

PACKAGES = {
    "ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux", "pivot_root": "util-linux",
    "mount": "mount", "umount": "mount",
    "iptables": "iptables", "iptables-save": "iptables", "curl": "curl", "bash": "bash", "sleep": "coreutils",
}
ENV = {"PATH": STD_PATH, "LANG": "C.UTF-8"}


class TimedOut(ClusterError):
    """A command that did not finish in time; what it had printed is kept."""

    def __init__(self, message: str, stdout: bytes | None, stderr: bytes | None):
        super().__init__(message)
        self.stdout, self.stderr = stdout or b"", stderr or b""


def which(tool: str) -> str:
    """The absolute path of `tool`; EnvironmentProblem saying what to install if it is missing."""
    found = shutil.which(tool, path=STD_PATH)
    if not found:
        package = PACKAGES.get(tool, tool)
        raise EnvironmentProblem(f"the netns backend needs `{tool}`, which is not installed: "
                                 f"apt-get install {package}")
    return found


def run(argv: Sequence[str | Path], what: str, *, input: bytes | str | None = None, timeout: float = 30,
        check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing its output: the backend's one edge to the machine's tools.

    TimedOut when it does not finish in `timeout` s; ClusterError naming `what` when it fails and `check`
    is set; EnvironmentProblem when the tool is not installed.
    """
    args = [str(a) for a in argv]
    if isinstance(input, str):
        input = input.encode()
    try:
        done = subprocess.run(args, input=input, capture_output=True, timeout=timeout, env=env or ENV, cwd="/")
    except FileNotFoundError:
        which(args[0])
        raise
    except subprocess.TimeoutExpired as exc:
        raise TimedOut(f"{what}: `{short(args)}` did not finish in {timeout:g}s", exc.stdout, exc.stderr) from None
    if check and done.returncode != 0:
        raise ClusterError(f"{what}: `{short(args)}` failed (exit {done.returncode}): {tail(done.stderr)}")
    return done


def tail(output: bytes | str, lines: int = 3) -> str:
    """The last lines of a tool's output, as one line."""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no message)"


def short(args: Sequence[str], limit: int = 160) -> str:
    """A command line for an error message, shortened."""
    line = " ".join(args)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def ip_batch(lines: list[str], what: str, netns: str | None = None) -> None:
    """Run `ip -batch` (in `netns` when given): many changes for one process."""
    if not lines:
        return
    argv = [which("ip"), *(["-n", netns] if netns else []), "-batch", "-"]
    run(argv, what, input="\n".join(lines) + "\n")


def nsenter(*, net: Path | str | None = None, mnt: Path | str | None = None,
            uts: Path | str | None = None) -> list[str]:
    """`nsenter` entering the given namespace files, ending with `--`."""
    argv = [which("nsenter")]
    if mnt:
        argv.append(f"--mount={mnt}")
    if uts:
        argv.append(f"--uts={uts}")
    if net:
        argv.append(f"--net={net}")
    return [*argv, "--"]
