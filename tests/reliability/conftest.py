"""Fixtures and the figures summary for the reliability suite."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import figures

FIGURES_FILE_VAR = "SALESFLOW_RELIABILITY_FIGURES"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    rows = figures.as_rows()
    if not rows:
        return
    terminalreporter.section("reliability figures")
    for row in rows:
        values = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("area", "backend"))
        terminalreporter.write_line(f"{row['area']} [{row['backend']}]: {values}")
    target = os.environ.get(FIGURES_FILE_VAR)
    if target:
        Path(target).write_text(json.dumps(rows, indent=2, default=str) + "\n", encoding="utf-8")


@pytest.fixture
def backend_name(database_url: str) -> str:
    """'sqlite' or 'postgresql', for the figures."""
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"
