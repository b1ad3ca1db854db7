"""What salesflow can store the same way on SQLite and PostgreSQL, checked before anything is written.

PostgreSQL refuses text with NUL characters, JSON with NaN or Infinity and text with lone
surrogates, and a VARCHAR(200) key longer than 200 characters; SQLite stores all of them. Without
these checks the same bad input was a raw database error (a traceback, and a timer that could never
fire) on one backend and silently stored on the other. Now it is refused with a message, on both.
"""

from __future__ import annotations

import math
from typing import Any

#: Business keys, actors and idempotency keys (their columns are VARCHAR(200)).
MAX_TEXT_LENGTH = 200


def text_problem(value: str, limit: int = MAX_TEXT_LENGTH) -> str | None:
    """Why ``value`` cannot be stored as a key or name, or None."""
    if len(value) > limit:
        return f"is {len(value):,} characters long; the limit is {limit}"
    return _string_problem(value)


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as a JSON document on both backends, or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if item is None or isinstance(item, bool | int | str):
            problem = _string_problem(item) if isinstance(item, str) else None
        elif isinstance(item, float):
            problem = None if math.isfinite(item) else f"{item} is not a finite number"
        elif isinstance(item, dict):
            problem = None
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{_where(path)}key {key!r} is not text"
                key_problem = _string_problem(key)
                if key_problem:
                    return f"{_where(path)}key {key!r} {key_problem}"
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list | tuple):
            problem = None
            stack.extend((f"{path}[{n}]", child) for n, child in enumerate(item))
        else:
            problem = f"a {type(item).__name__} is not a JSON value"
        if problem:
            return f"{_where(path)}{problem}"
    return None


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (\\ud800-\\udfff), which is not text"
    return None


def _where(path: str) -> str:
    return f"field '{path}': " if path else ""
