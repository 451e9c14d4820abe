"""The Kubernetes client's and its transport's exceptions as kindlab errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from ...errors import ClusterError, KindlabError, NotFound

API_HINT = "is the cluster running? (`kindlab get clusters`, `kind get clusters`)"
F = TypeVar("F", bound=Callable[..., Any])


def kubernetes_error(exc: Exception, where: str, config_hint: str = "") -> KindlabError | None:
    """The kindlab error for a Kubernetes client or urllib3 exception; None for anything else."""
    try:
        import urllib3.exceptions
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        return None
    if isinstance(exc, ConfigException):
        return ClusterError(f"{where}: no usable kubeconfig: {exc}" + (f"; {config_hint}" if config_hint else ""))
    if isinstance(exc, ApiException):
        message = api_message(exc)
        if exc.status == 404:
            return NotFound(f"{where}: {message}")
        return ClusterError(f"{where}: the API server answered {exc.status} {exc.reason}: {message}")
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return ClusterError(f"{where}: cannot reach the Kubernetes API server ({exc}); {API_HINT}")
    return None


def api_message(exc: Any) -> str:
    """The `message` of a Kubernetes Status body, else the HTTP reason."""
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason or exc.status)


def api_errors(method: F) -> F:
    """A Cluster method whose Kubernetes client and transport exceptions become kindlab errors naming the
    cluster (`self.name`); kindlab errors and programming errors pass unchanged."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            raise_as_kindlab(exc, f"cluster {self.name!r}")
            raise
    return wrapper  # type: ignore[return-value]


def raise_as_kindlab(exc: Exception, where: str) -> None:
    """Raise the kindlab error for a Kubernetes client or transport exception; return for any other one
    (a kindlab error, a programming error), which the caller re-raises unchanged."""
    if isinstance(exc, KindlabError):
        return
    mapped = kubernetes_error(exc, where)
    if mapped is not None:
        raise mapped from None
