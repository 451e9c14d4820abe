"""The backends, as they register themselves: each package under `kindlab/backends/` that is a backend calls
`register` in its `__init__`; `all_backends` imports every such package once, then answers from the registry."""

from __future__ import annotations

import importlib
import os
import pkgutil

from ..errors import KindlabError
from .contract import Backend

_REGISTERED: dict[str, Backend] = {}
_DISCOVERED = False
ENV = "KINDLAB_BACKEND"


def register(backend: Backend) -> Backend:
    """Add a backend (its package's `__init__` calls this); a second one of the same name is a bug."""
    if not isinstance(backend, Backend):
        raise TypeError(f"{backend!r} does not meet kindlab.backends.contract.Backend")
    if _REGISTERED.get(backend.name, backend) is not backend:
        raise ValueError(f"a backend named {backend.name!r} is registered already")
    _REGISTERED[backend.name] = backend
    return backend


def all_backends() -> list[Backend]:
    """Every backend, in auto-detection order."""
    global _DISCOVERED
    if not _DISCOVERED:
        from . import __path__ as folder

        for found in pkgutil.iter_modules(folder):
            if found.ispkg:
                importlib.import_module(f"{__package__}.{found.name}")
        _DISCOVERED = True
    return sorted(_REGISTERED.values(), key=lambda b: (b.order, b.name))


def names() -> tuple[str, ...]:
    """The backends' names, in auto-detection order."""
    return tuple(b.name for b in all_backends())


def kubernetes_choices() -> tuple[str, ...]:
    """Every Kubernetes some backend can run ("real", "model")."""
    return tuple(dict.fromkeys(k for b in all_backends() for k in b.kubernetes))


def cni_choices() -> tuple[str, ...]:
    """Every primary CNI plugin some backend can install."""
    return tuple(dict.fromkeys(c for b in all_backends() for c in b.cnis))


def builder(what: str) -> Backend:
    """The backend that makes `what` (`kindlab build WHAT`)."""
    for backend in all_backends():
        if what in backend.builds:
            return backend
    raise KindlabError(f"nothing builds {what!r}; kindlab builds: {', '.join(build_choices()) or 'nothing'}")


def build_choices() -> tuple[str, ...]:
    """What `kindlab build` can make."""
    return tuple(w for b in all_backends() for w in b.builds)


def select(name: str | None = None) -> Backend:
    """The backend `name`, else $KINDLAB_BACKEND, else the first one available here."""
    choice = name or os.environ.get(ENV) or ""
    known = {b.name: b for b in all_backends()}
    if choice:
        if choice not in known:
            raise KindlabError(f"unknown backend {choice!r}; choose one of {', '.join(known)} "
                               f"(backend= or {ENV})")
        return known[choice]
    for backend in known.values():
        if backend.available():
            return backend
    raise KindlabError(f"no backend can run here (tried {', '.join(known)}); see README.md for what each needs")
