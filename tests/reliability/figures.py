"""The figures a reliability run produces (timers fired, kills, crashes, conflicts, inputs tried).

Tests call :func:`record`; the package's conftest prints the totals at the end of the run and, when
``SALESFLOW_RELIABILITY_FIGURES`` names a file, writes them there as JSON (for docs/reliability.md).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

#: (test area, backend) -> figure name -> total
FIGURES: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)


def record(area: str, backend: str, **values: Any) -> None:
    """Add numbers to the figures of ``area`` on ``backend`` (numbers add up; other values replace)."""
    bucket = FIGURES[(area, backend)]
    for name, value in values.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            bucket[name] = round(bucket.get(name, 0) + value, 3)
        else:
            bucket[name] = value


def as_rows() -> list[dict[str, Any]]:
    ordered = sorted(FIGURES.items())
    return [{"area": area, "backend": backend, **values} for (area, backend), values in ordered]
