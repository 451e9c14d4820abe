"""Execute every notebook of the book with nbclient, one test per notebook, on a short back-off.

Environment: KINDLAB_TEST_BACKOFF (default 0.5 s), KINDLAB_TEST_CLUSTER (default kind),
KINDLAB_TEST_CONFIG (default the notebooks' own ../kind/config) and KINDLAB_TEST_KUBERNETES (default
model: the book's own build, `make book`, runs them on real Kubernetes).

A cell is inserted after each notebook's `parameters` cell (as papermill does) to set BACKOFF; a failing
cell fails the test with that cell's source and the error. The `kind` lab is deleted at the end of the
session whatever happened, so nothing is left behind.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CLUSTER = os.environ.get("KINDLAB_TEST_CLUSTER", "kind")
BACKOFF = float(os.environ.get("KINDLAB_TEST_BACKOFF", "0.5"))
CONFIG = os.environ.get("KINDLAB_TEST_CONFIG")  # e.g. a copy of kind/ elsewhere, to run beside another lab
KUBERNETES = os.environ.get("KINDLAB_TEST_KUBERNETES", "model")   # `make book` runs them on real
CELL_TIMEOUT = 600
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def inject_parameters(nb: nbformat.NotebookNode, **values: object) -> int:
    """Insert a cell setting `values` right after the cell tagged `parameters`; returns its index."""
    index = next((i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if index is None:
        raise AssertionError("the notebook has no cell tagged 'parameters'")
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)
    return index + 1


def failing_cell(nb: nbformat.NotebookNode) -> tuple[int, str, str] | None:
    """(index, source, error) of the first cell whose outputs hold an error."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return i, cell.source, f"{out.get('ename')}: {out.get('evalue')}"
    return None


@pytest.fixture(scope="session")
def lab_cleanup():
    """Delete the notebooks' cluster at the end of the session, even when a notebook failed."""
    yield
    from kindlab import backends

    try:
        backends.delete(CLUSTER)
    except Exception as exc:  # report, never mask the tests' own outcome
        print(f"cleanup: could not delete cluster {CLUSTER!r}: {exc}")


def _skip_unless_runnable() -> None:
    from kindlab import backends

    if backends.select_backend() == "netns" and os.geteuid() != 0:
        pytest.skip("the netns lab needs root")


# -- hygiene: fast checks on the stored notebooks ---------------------------------------------
def test_notebooks_exist_and_are_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])}
    stored = {f"notebooks/{p.stem}" for p in NOTEBOOKS}
    assert len(NOTEBOOKS) == 12   # the walkthrough's nine steps, the three ways and the appendix
    assert stored <= files, stored - files


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged parameters"
    for name in ("BACKEND", "CLUSTER", "BACKOFF", "CONFIG"):
        assert f"{name} = " in code[0].source, name
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"code cells {dirty} have stored outputs; clear them before committing"
    # what the reader sees: the parameters folded away, and no assert in a cell whose code is shown
    assert "hide-cell" in code[0].metadata.get("tags", []) or "remove-cell" in code[0].metadata.get("tags", [])
    hidden = {"remove-input", "remove-cell", "hide-input", "hide-cell"}
    shown = [i for i, c in enumerate(code) if not hidden & set(c.metadata.get("tags", []))
             and re.search(r"^\s*assert\b", c.source, re.M)]
    assert not shown, f"code cells {shown} show assert lines; move them into a cell tagged remove-input"


# -- execution ----------------------------------------------------------------------------------
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, lab_cleanup):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    _skip_unless_runnable()
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, BACKOFF=BACKOFF, CLUSTER=CLUSTER, KUBERNETES=KUBERNETES,
                      **({"CONFIG": CONFIG} if CONFIG else {}))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    failure = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as exc:
        failure = exc
    if failure is not None:
        where = failing_cell(nb)
        detail = ANSI.sub("", str(failure))
        if where is None:
            pytest.fail(f"{path.name}: {type(failure).__name__}: {detail}", pytrace=False)
        index, source, error = where
        pytest.fail(f"{path.name}: cell {index} failed\n--- cell source ---\n{source}\n--- error ---\n{error}\n"
                    f"--- traceback ---\n{detail}", pytrace=False)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
