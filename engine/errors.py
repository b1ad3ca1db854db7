"""One error root for salesflow; every subclass says what went wrong and what to do.

Each error carries an ``exit_code`` used by the CLI (1 invalid definition, 2 usage, 3 not found,
4 event rejected, 5 conflict) and a short ``code`` used in JSON output.
"""

from __future__ import annotations

from dataclasses import dataclass


class SalesflowError(Exception):
    """Root of every error salesflow raises on purpose."""

    exit_code = 2
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Problem:
    """One finding about a definition, located in its source file."""

    file: str
    line: int
    column: int
    path: str
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        label = "" if self.severity == "error" else "warning: "
        return (
            f"{where}: {self.path}: {label}{self.message}"
            if self.path
            else (f"{where}: {label}{self.message}")
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "severity": self.severity,
        }


class DefinitionError(SalesflowError):
    """A process definition is invalid; ``problems`` lists every error found, with its line."""

    exit_code = 1
    code = "invalid_definition"

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        self.problems = problems
        self.warnings = warnings or []
        super().__init__("\n".join(str(p) for p in problems))


class UsageError(SalesflowError):
    """The caller asked for something malformed (bad JSON, bad time, bad option)."""

    exit_code = 2
    code = "usage"


class NotFoundError(SalesflowError):
    """An instance, process or timer does not exist."""

    exit_code = 3
    code = "not_found"


class EventRejected(SalesflowError):
    """An event was refused; nothing changed. The message says why and what is allowed."""

    exit_code = 4
    code = "rejected"


class ConflictError(SalesflowError):
    """Someone else changed the same thing at the same time, or a deploy clashes; retry or bump."""

    exit_code = 5
    code = "conflict"


class DatabaseUnavailable(SalesflowError):
    """The database could not be reached or answered with an error; nothing was changed."""

    exit_code = 6
    code = "database_unavailable"
