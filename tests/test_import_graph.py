"""The package's modules import each other without circles, and analysis never imports a backend."""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kindlab"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every kindlab module `path` imports: at the top, inside a function, or for type checking only."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("kindlab")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if not base.startswith("kindlab"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                out.add(candidate if candidate in MODULES else base)
    return {m for m in out if m in MODULES and m != name}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports(path) for name, path in MODULES.items()}


def cycles() -> list[list[str]]:
    """Import circles between modules (a package importing its own submodules does not count)."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(GRAPH[node]):
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == "open":
                loop = stack[stack.index(dep):] + [dep]
                if not all(b.startswith(a + ".") or a.startswith(b + ".") for a, b in pairwise(loop)):
                    found.append(loop)
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    return found


def test_no_import_circles():
    assert cycles() == []


@pytest.mark.parametrize("module", ["kindlab.model", "kindlab.model.cni", "kindlab.model.pods",
                                    "kindlab.model.kubelet", "kindlab.model.backoff"])
def test_the_model_imports_no_backend_and_no_cluster(module):
    assert not {m for m in GRAPH[module] if m.startswith("kindlab.backends") or m == "kindlab.cluster"}


@pytest.mark.parametrize("module", ["kindlab.heal", "kindlab.doctor", "kindlab.walkthrough", "kindlab.plots",
                                    "kindlab.scenario"])
def test_analysis_does_not_ask_which_backend_it_is_on(module):
    text = MODULES[module].read_text()
    assert "backend ==" not in text and "getattr(lab" not in text
    assert not {m for m in GRAPH[module] if m.startswith("kindlab.backends.")}


BACKEND_PACKAGES = sorted({m.split(".")[2] for m in MODULES if m.startswith("kindlab.backends.") and
                           MODULES[m].name == "__init__.py" and m.count(".") == 2})
SHARED = {"kube", "oci"}   # the API half of every real API server; images made on the machine


@pytest.mark.parametrize("package", [p for p in BACKEND_PACKAGES if p not in SHARED])
def test_backends_do_not_import_each_other(package):
    others = {f"kindlab.backends.{p}" for p in BACKEND_PACKAGES if p not in SHARED | {package}}
    for name, deps in GRAPH.items():
        if name.startswith(f"kindlab.backends.{package}"):
            assert not {d for d in deps if any(d == o or d.startswith(o + ".") for o in others)}, name


def test_the_cli_reaches_no_backends_internals():
    inside = {d for d in GRAPH["kindlab.cli"] if d.startswith("kindlab.backends.")}
    assert {d for d in inside if not d.startswith(("kindlab.backends.registry", "kindlab.backends.kube"))} == set()


def notebook_imports(path: Path) -> set[str]:
    import json

    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    tree = ast.parse("\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("kindlab")}


@pytest.mark.parametrize("notebook", sorted((PACKAGE.parent / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_use_only_the_public_api(notebook):
    assert not {m for m in notebook_imports(notebook) if m.startswith("kindlab.backends")}
