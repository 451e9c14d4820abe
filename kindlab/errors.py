"""Errors a user can cause, each saying what was wrong, where, and what to do.

    KindlabError
    ├── ConfigError            a kind config that cannot be used
    ├── ManifestError          a pod or deployment manifest that cannot be used
    ├── IptablesParseError     iptables-save text that does not parse
    ├── NftParseError          `nft -j` output that does not parse (defined in kindlab.iptables.nftables)
    ├── EnvironmentProblem     missing privilege, tool or package on this machine
    │   └── BackendUnavailable the asked-for backend cannot run here
    ├── ClusterError           a cluster that is missing, clashing or unhealthy
    │   └── NotFound           an unknown node, pod or cluster
    ├── ExecError              a command in a node exited non-zero
    ├── CurlError              an HTTP request that got no answer
    │   ├── ConnectionRefused  nothing listens (curl's exit code 7)
    │   └── RequestTimeout     no answer in time (curl's exit code 28)
    └── WaitTimeout            a condition not reached in time
"""

from __future__ import annotations


class KindlabError(Exception):
    """Base of every error kindlab raises for something a user can fix."""

    exit_code = 1


class ConfigError(KindlabError):
    """A kind config that cannot be loaded: names the file and the field path."""


class ManifestError(KindlabError):
    """A manifest that cannot be loaded: names the file and the field path."""


class IptablesParseError(KindlabError):
    """iptables-save text that does not parse: names the line number and the line."""

    def __init__(self, message: str, lineno: int | None = None, line: str | None = None):
        super().__init__(message)
        self.lineno = lineno
        self.line = line


class EnvironmentProblem(KindlabError):
    """This machine lacks a privilege, a tool or a package: says what to install."""


class BackendUnavailable(EnvironmentProblem):
    """The asked-for backend cannot run on this machine."""


class ClusterError(KindlabError):
    """A cluster that is missing, clashes with another, or is unhealthy."""


class NotFound(ClusterError):
    """An unknown node, pod or cluster."""


class ExecError(KindlabError):
    """A command run in a node exited non-zero; carries its exit code and output."""

    def __init__(self, message: str, returncode: int = 1, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class CurlError(KindlabError):
    """An HTTP request that got no answer."""

    exit_code = 7


class ConnectionRefused(CurlError):
    """Nothing listens at the address: curl's exit code 7."""

    exit_code = 7


class RequestTimeout(CurlError):
    """No answer in time: curl's exit code 28."""

    exit_code = 28


class WaitTimeout(KindlabError):
    """A condition was not reached in time."""
