"""Bulk start from a CSV file: one instance per row, columns converted by the data schema's types.

A bad row is rejected with its line number and reason; it never stops or half-applies the others.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine import cli_output as out
from engine.errors import UsageError
from engine.runtime import BulkReport, Engine

_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


class CellError(ValueError):
    """A CSV cell that cannot become the type the data schema declares."""


def convert_cell(text: str, schema: dict[str, Any] | None) -> Any:
    """Convert one cell by its JSON Schema type (the first listed type when several are)."""
    kind = (schema or {}).get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    value = text.strip()
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            number = (
                float(value.replace(",", ".")) if value.count(",") == 1 and "." not in value else float(value)
            )
            return int(number) if number.is_integer() and "." not in value else number
        if kind == "boolean":
            return _boolean(value)
        if kind in ("array", "object"):
            return json.loads(value)
    except (ValueError, json.JSONDecodeError):
        raise CellError(f"'{text}' is not {_WORDS.get(kind, kind)}") from None
    return text


_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "array": "a JSON list",
    "object": "a JSON object",
}


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise CellError(f"'{value}' is not true or false (write yes/no, true/false or 1/0)")


def read_rows(
    path: Path, key_column: str, schema: dict[str, Any] | None, report: BulkReport
) -> list[tuple[int, str, dict[str, Any]]]:
    """Parse the whole file; rows that cannot be converted go to ``report.rejected``."""
    properties = (schema or {}).get("properties", {})
    rows = []
    for line, record in _records(path, key_column):
        if None in record:  # DictReader files surplus cells under None
            extra = len(record[None])  # type: ignore[index]
            report.rejected.append((line, f"the row has {extra} more cells than the header has columns"))
            continue
        data: dict[str, Any] = {}
        try:
            for column, cell in record.items():
                if column == key_column and column not in properties:
                    continue
                if cell is None or cell.strip() == "":
                    continue  # an empty cell means "not given"
                try:
                    data[column] = convert_cell(cell, properties.get(column))
                except CellError as exc:
                    raise CellError(f"column '{column}': {exc}") from None
        except CellError as exc:
            report.rejected.append((line, str(exc)))
            continue
        rows.append((line, (record.get(key_column) or "").strip(), data))
    return rows


def _records(path: Path, key_column: str) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read CSV file {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []  # reads the first line: it may already be undecodable
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"CSV file {path} cannot be read: {exc}; save it as UTF-8 text") from None
        if key_column not in header:
            raise UsageError(
                f"CSV file {path} has no column '{key_column}'; "
                f"its columns are: {', '.join(header) or 'none'}"
            )
        try:
            for record in reader:
                yield reader.line_num, record
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"CSV file {path} is malformed near line {reader.line_num}: {exc}") from None


def start_from_csv(
    engine: Engine,
    process: str,
    path: Path,
    key_column: str | None,
    version: int | None,
    at: datetime | None,
    actor: str | None,
    as_json: bool,
) -> BulkReport:
    """The ``salesflow start --csv`` command: progress bar, then a summary."""
    if not key_column:
        raise UsageError("--csv needs --key-column COL: the column holding each row's business key")
    with engine:
        definition = engine.definition(process, version)
        report = BulkReport()
        rows = read_rows(path, key_column, dict(definition.data_schema or {}), report)
        with _progress(as_json) as progress:
            task = progress.add_task("starting", total=len(rows))
            engine.start_many(
                process,
                rows,
                version=definition.version,
                at=at,
                actor=actor,
                progress=lambda n: progress.advance(task, n),
                report=report,
            )
    _summarise(report, as_json)
    if report.rejected:
        raise typer.Exit(4)
    return report


def _progress(as_json: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=out.stderr,
        disable=as_json,
        transient=False,
    )


def _summarise(report: BulkReport, as_json: bool) -> None:
    report.rejected.sort()
    report.already_active.sort()  # duplicates within a chunk are found before the chunk's active keys
    if as_json:
        out.emit_json(
            {
                "started": report.started,
                "already_active": [{"row": n, "key": k} for n, k in report.already_active],
                "rejected": [{"row": n, "reason": r} for n, r in report.rejected],
            }
        )
        return
    out.say(f"started: {report.started}")
    out.say(f"already active: {len(report.already_active)}")
    for number, key in report.already_active[:20]:
        out.say(f"  row {number}: key '{key}' already has an active instance")
    out.say(f"rejected: {len(report.rejected)}")
    for number, reason in report.rejected:
        out.say(f"  row {number}: {reason}")
