"""Safe, strict YAML reading that remembers where every value came from.

Built on PyYAML's event stream (an iterative parser, so deep nesting cannot overflow the stack):
- a byte cap, a nesting-depth cap and a node-count cap stop bombs before they cost anything;
- anchors and aliases are refused (a 300-byte alias bomb expands to millions of nodes);
- duplicate keys are refused (PyYAML would silently keep the last one);
- scalars follow the YAML 1.2 core schema, so ``on``, ``yes``, ``no`` stay strings, ``14:30`` stays
  a string, and dates stay text; only ``true``/``false``, ``null``, and plain numbers convert;
- tags other than the standard str/int/float/bool/null/map/seq are refused (no object construction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_NODES = 50_000  # real processes have a few thousand; parsing is ~60,000 values per second

Path = tuple[Any, ...]

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|(?:0|[1-9][0-9]*)(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_STANDARD = "tag:yaml.org,2002:"
_DUPLICATE = object()  # marks the value of a duplicate key, which is reported and dropped


class YamlProblem(Exception):
    """The text is not acceptable YAML; carries the 1-based line and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


@dataclass
class Located:
    """A parsed document and the source position (line, column; 1-based) of each value and key."""

    value: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    problems: list[YamlProblem] = field(default_factory=list)

    def position(self, path: Path, prefer_key: bool = False) -> tuple[int, int]:
        """Where ``path`` is written; falls back to the nearest enclosing value."""
        path = tuple(path)
        while True:
            table = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            for positions in table:
                if path in positions:
                    return positions[path]
            if not path:
                return (1, 1)
            path = path[:-1]


def load_located(text: str) -> Located:
    """Parse one YAML document; raise :class:`YamlProblem` on the first fatal problem.

    Duplicate keys are not fatal: they are collected in ``problems`` so all are reported at once.
    """
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise YamlProblem(
            f"file is {size:,} bytes; the limit is {MAX_BYTES:,}: split the process or trim it", 1, 1
        )
    builder = _Builder()
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            builder.feed(event)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlProblem(f"YAML syntax error: {_syntax_message(exc)}", line, col) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"YAML error: {exc}", 1, 1) from None
    return builder.result()


# PyYAML's wording, for whoever edits a process file: what is wrong and where it started.
_OPENED = {
    "while parsing a flow sequence": "in the [ ] list opened at",
    "while parsing a flow mapping": "in the { } mapping opened at",
    "while scanning a quoted scalar": "the quote opened at {where} is never closed",
    "while scanning a double-quoted scalar": "in the quoted text opened at",
    "while scanning a single-quoted scalar": "in the quoted text opened at",
}


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or exc.context or "not valid YAML"
    if problem.startswith("found character '\\t'"):
        return "tab character found; indent with spaces, never tabs"
    if problem.endswith("that cannot start any token"):
        character = problem.removeprefix("found ").removesuffix(" that cannot start any token")
        problem = f"{character} cannot start a value; put the value in quotes"
    elif problem == "found unexpected end of stream":
        problem = "the file ends unexpectedly"
    elif problem.startswith("expected <block end>"):
        problem = "this line is not indented like the lines above it; line it up with its neighbours"
    elif problem == "mapping values are not allowed here":
        problem = (
            "unexpected ':' here; is a ':' missing on the line above, is this line indented too far, "
            "or does a value containing ': ' need quotes?"
        )
    opened = _OPENED.get(exc.context or "")
    start, end = exc.context_mark, exc.problem_mark
    if opened and start is not None and (end is None or start.line != end.line):
        where = f"line {start.line + 1}, column {start.column + 1}"
        problem += f" ({opened.format(where=where)})" if "{where}" in opened else f" ({opened} {where})"
    return problem


def _where(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


class _Builder:
    """Turns the event stream into plain values, recording positions on the way."""

    def __init__(self) -> None:
        self.located = Located(value=None)
        self.stack: list[dict[str, Any]] = []
        self.documents = 0
        self.nodes = 0

    def result(self) -> Located:
        return self.located

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise YamlProblem(
                    "more than one YAML document ('---'); put one process per file",
                    *_where(event.start_mark),
                )
        elif isinstance(event, yaml.AliasEvent):
            raise YamlProblem(
                f"alias '*{event.anchor}' is not allowed; write the value out in full",
                *_where(event.start_mark),
            )
        elif isinstance(event, yaml.ScalarEvent):
            self._check_node(event)
            self._add(_scalar(event), event)
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            self._check_node(event)
            self._open(event)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            frame = self.stack.pop()
            self._add(frame["value"], None, frame)

    def _check_node(self, event: yaml.NodeEvent) -> None:
        if event.anchor is not None:
            raise YamlProblem(
                f"anchor '&{event.anchor}' is not allowed; write each value out in full",
                *_where(event.start_mark),
            )
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and not _standard_tag(tag):
            shown = "!!" + tag[len(_STANDARD) :] if tag.startswith(_STANDARD) else tag
            raise YamlProblem(f"tag '{shown}' is not allowed; write plain values", *_where(event.start_mark))
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise YamlProblem(
                f"document has more than {MAX_NODES:,} values; the file is too large to be a process",
                *_where(event.start_mark),
            )

    def _open(self, event: yaml.CollectionStartEvent) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise YamlProblem(
                f"nesting is deeper than {MAX_DEPTH} levels; flatten the structure",
                *_where(event.start_mark),
            )
        is_map = isinstance(event, yaml.MappingStartEvent)
        path = self._child_path(event)
        self.stack.append(
            {"value": {} if is_map else [], "path": path, "key": None, "mark": event.start_mark}
        )

    def _child_path(self, event: yaml.NodeEvent) -> Path:
        if not self.stack:
            return ()
        parent = self.stack[-1]
        if isinstance(parent["value"], dict):
            if parent["key"] is None:
                raise YamlProblem(
                    "a mapping key must be a plain value, not a list or mapping",
                    *_where(event.start_mark),
                )
            return (*parent["path"], parent["key"])
        return (*parent["path"], len(parent["value"]))

    def _add(self, value: Any, event: yaml.Event | None, frame: dict[str, Any] | None = None) -> None:
        mark = frame["mark"] if frame else event.start_mark
        path = frame["path"] if frame is not None else self._scalar_path() if self.stack else ()
        if not self.stack:
            self.located.value = value
            self.located.values[()] = _where(mark)
            return
        parent = self.stack[-1]
        if isinstance(parent["value"], list):
            parent["value"].append(value)
            self.located.values[path] = _where(mark)
        elif parent["key"] is None:
            self._take_key(parent, value, mark)
        else:
            if parent["key"] is not _DUPLICATE:
                parent["value"][parent["key"]] = value
                self.located.values[path] = _where(mark)
            parent["key"] = None

    def _scalar_path(self) -> Path:
        parent = self.stack[-1]
        if isinstance(parent["value"], list):
            return (*parent["path"], len(parent["value"]))
        if parent["key"] is None:
            return parent["path"]
        return (*parent["path"], parent["key"])

    def _take_key(self, parent: dict[str, Any], key: Any, mark: Any) -> None:
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise YamlProblem("a mapping key must be a plain value", *_where(mark))
        key = str(key) if not isinstance(key, str) else key
        path = (*parent["path"], key)
        if key in parent["value"]:
            first = self.located.keys.get(path, (0, 0))[0]
            self.located.problems.append(
                YamlProblem(
                    f"duplicate key '{key}' (first written at line {first}); keep only one",
                    *_where(mark),
                )
            )
            parent["key"] = _DUPLICATE  # keep parsing to report every duplicate; drop the value
            return
        self.located.keys[path] = _where(mark)
        parent["key"] = key


def _standard_tag(tag: str) -> bool:
    return tag.startswith(_STANDARD) and tag[len(_STANDARD) :] in {
        "str",
        "int",
        "float",
        "bool",
        "null",
        "map",
        "seq",
    }


def _scalar(event: yaml.ScalarEvent) -> Any:
    """Resolve a scalar by the YAML 1.2 core schema (explicit standard tags honoured)."""
    text = event.value
    tag = event.tag
    if tag and tag.startswith(_STANDARD):
        return _explicit(tag[len(_STANDARD) :], text, event)
    plain = event.style is None and tag in (None,) and event.implicit[0]
    if not plain:
        return text
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        try:
            return int(text.replace("_", ""))
        except ValueError:  # more digits than Python converts (4,300): a crash, not a definition error
            raise YamlProblem(
                f"number with {len(text):,} digits is too long; put it in quotes if it is text",
                *_where(event.start_mark),
            ) from None
    if _HEX.match(text):
        return int(text, 16)
    if _FLOAT.match(text) and any(c.isdigit() for c in text):
        return float(text)
    return text


def _explicit(kind: str, text: str, event: yaml.ScalarEvent) -> Any:
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            return _BOOL[text]
        if kind == "null":
            return None
    except (ValueError, KeyError):
        raise YamlProblem(f"'{text}' is not a valid !!{kind}", *_where(event.start_mark)) from None
    return text
