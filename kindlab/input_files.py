"""Reading what a user hands kindlab (configs, manifests), bounded: regular files only, a size limit, YAML
whose aliases, nesting and duplicate keys are checked, and values shown short in messages.

A FIFO, a device (/dev/zero) or a file larger than MAX_BYTES is refused before it is read; an alias bomb,
a nesting deeper than MAX_DEPTH and a repeated mapping key are refused while the YAML is composed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import KindlabError

MAX_BYTES = 3 * 1024 * 1024     # the API server's own limit on a request body (3 MiB)
MAX_DEPTH = 100                 # nesting of YAML collections (a Deployment is about 12 deep)
MAX_NODES = 100_000             # YAML values once every alias is expanded
SHOWN = 60                      # characters of a value quoted in a message


def shown(value: Any) -> str:
    """`repr(value)`, cut to SHOWN characters: a message quotes a value, never a whole document."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


def read_text(path: Path, error: type[KindlabError], what: str) -> str:
    """The UTF-8 text of the regular file `path` (at most MAX_BYTES); `error` naming the file otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)   # a FIFO opens at once, unread
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file; pass the path of one") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: not a regular file (a {_file_type(info.st_mode)}); a {what} is a YAML file")
        if info.st_size > MAX_BYTES:
            raise error(f"{path}: {info.st_size} bytes, more than the {MAX_BYTES}-byte limit for a {what}")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise error(f"{path}: more than the {MAX_BYTES}-byte limit for a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); a {what} is a YAML file") from None


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses alias bombs, deep nesting and duplicate keys."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_document(self) -> Any:
        self._sizes = {}
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        alias = self.check_event(yaml.AliasEvent)
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.YAMLError(_Problem(f"nested more than {MAX_DEPTH} levels deep", mark))
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias and id(node) not in self._sizes:
            raise yaml.YAMLError(_Problem("an alias refers to the value that holds it", mark))
        if not alias:
            children: list[Any] = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 1) for c in children)
        if self._sizes[id(node)] > MAX_NODES:
            raise yaml.YAMLError(_Problem(f"its aliases expand to more than {MAX_NODES} values", mark))
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue       # an unhashable key: the base constructor says so
                if duplicate:
                    raise yaml.YAMLError(_Problem(f"duplicate key {shown(key)}", key_node.start_mark))
        return super().construct_mapping(node, deep=deep)


class _Problem:
    """What went wrong and where, as PyYAML's own errors carry it."""

    def __init__(self, problem: str, mark: Any):
        self.problem = problem
        self.problem_mark = mark

    def __str__(self) -> str:
        return self.problem


def load_all(text: str, source: str, error: type[KindlabError]) -> list[Any]:
    """Every YAML document of `text` (empty ones dropped), loaded with BoundedLoader; `error` naming `source`
    and the line otherwise."""
    try:
        return [d for d in yaml.load_all(text, Loader=BoundedLoader) if d is not None]  # BoundedLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise error(f"{source}: {yaml_problem(exc)}") from None
    except RecursionError:
        raise error(f"{source}: not valid YAML: nested too deeply") from None


def load_one(text: str, source: str, error: type[KindlabError]) -> Any:
    """The one YAML document of `text` (None when empty), as `load_all` reads it."""
    docs = load_all(text, source, error)
    if len(docs) > 1:
        raise error(f"{source}: holds {len(docs)} YAML documents; expected one")
    return docs[0] if docs else None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: where in the text (line, or byte for a character YAML refuses) and what is wrong."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], _Problem) else exc
    if isinstance(inner, yaml.reader.ReaderError):
        char = inner.character
        code = char if isinstance(char, int) else ord(char)
        return f"character {inner.position}: not valid YAML: U+{code:04X} is not allowed in YAML text"
    mark = getattr(inner, "problem_mark", None)
    at = f"line {mark.line + 1}: " if mark else ""
    problem = getattr(inner, "problem", None) or str(inner)
    return f"{at}not valid YAML: {' '.join(str(problem).split())}"
