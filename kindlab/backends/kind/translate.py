"""The one translator of Docker's exceptions (the SDK's and its HTTP transport's) into kindlab errors.

The kind backend's entry points run inside `translate_errors` (directly, or through the `edge` method
decorator): Docker's exceptions are translated here, the Kubernetes client's by the kube package's one
translator (kube.errors.kubernetes_error), so callers only ever see `KindlabError`s for things a user can
fix. Exceptions neither knows (programming errors) pass unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ContextDecorator
from typing import Any, Literal, TypeVar

from ...errors import BackendUnavailable, ClusterError, KindlabError, NotFound
from ..kube.errors import api_message, kubernetes_error

__all__ = ["api_message", "edge", "to_kindlab_error", "translate_errors"]

F = TypeVar("F", bound=Callable[..., Any])

DOCKER_HINT = "is Docker running? (`docker info` must answer)"


class translate_errors(ContextDecorator):
    """Context manager (and decorator) that re-raises foreign exceptions as kindlab errors."""

    def __init__(self, where: str = "kind backend"):
        self.where = where

    def __enter__(self) -> translate_errors:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc is None or isinstance(exc, KindlabError) or not isinstance(exc, Exception):
            return False
        mapped = to_kindlab_error(exc, self.where)
        if mapped is None:
            return False
        raise mapped from exc


def edge(method: F) -> F:
    """Decorate a cluster method so that its errors name the cluster and are translated."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with translate_errors(f"kind cluster {self.name!r}"):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def to_kindlab_error(exc: Exception, where: str) -> KindlabError | None:
    """The kindlab error for a Docker, Kubernetes or urllib3 exception; None for anything else."""
    for translate in (_docker_error, _kubernetes_error, _transport_error):
        mapped = translate(exc, where)
        if mapped is not None:
            return mapped
    return None


def _docker_error(exc: Exception, where: str) -> KindlabError | None:
    try:
        from docker import errors
    except ImportError:
        return None
    if isinstance(exc, errors.NotFound):
        return NotFound(f"{where}: {exc.explanation or exc} (no such node container or path)")
    if isinstance(exc, errors.APIError):
        return ClusterError(f"{where}: Docker refused: {exc.explanation or exc}")
    if isinstance(exc, errors.DockerException):
        return BackendUnavailable(f"{where}: cannot talk to Docker: {exc}; {DOCKER_HINT}")
    return None


def _kubernetes_error(exc: Exception, where: str) -> KindlabError | None:
    return kubernetes_error(exc, where, config_hint="`kind export kubeconfig --name NAME` writes it")


def _transport_error(exc: Exception, where: str) -> KindlabError | None:
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with docker
        return None
    if isinstance(exc, requests.exceptions.ConnectionError):
        return BackendUnavailable(f"{where}: cannot reach the Docker daemon ({exc}); {DOCKER_HINT}")
    return None
