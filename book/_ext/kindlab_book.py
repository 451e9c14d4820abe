"""Sphinx tweaks for the kindlab book: a style sheet, and no script twice.

`book/_static/kindlab.css` wraps long code lines in cells. Jupyter Book registers a few inline
scripts twice (sphinx-thebe's configuration, loaded even with thebe off, and sphinx-togglebutton's
selector), once with filename None and once with ''; the repeated `const THEBE_JS_URL` was a
SyntaxError on every page. The page hook drops repeated scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def script_key(script: Any) -> tuple:
    """What makes two script entries the same script: file (None and '' alike) and attributes (body included)."""
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", str(script)) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    seen: set[tuple] = set()
    unique = []
    for script in context.get("script_files", []):
        key = script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    """Register the style sheet and the page hook."""
    app.config.html_static_path.append(str(Path(__file__).resolve().parents[1] / "_static"))
    app.add_css_file("kindlab.css")
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
