"""How the CLI shows things: rich tables for people, stable JSON for machines. Nothing else prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.errors import DefinitionError, SalesflowError

# Piped output (files, CI logs, tests) gets wide tables instead of rich's 80-column default.
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A readable table (plain text when output is not a terminal)."""
    grid = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    stdout.print(grid)


def say(message: str) -> None:
    stdout.print(message, highlight=False, markup=False)


def warn(message: str) -> None:
    stderr.print(message, highlight=False, markup=False)


def report_error(error: SalesflowError, as_json: bool) -> None:
    """One clear message on stderr (or a JSON error object on stdout with --json)."""
    if as_json:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if isinstance(error, DefinitionError):
            body["problems"] = [p.as_dict() for p in error.problems]
        emit_json({"error": body})
        return
    stderr.print(f"error: {error.message}", highlight=False, markup=False)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""
