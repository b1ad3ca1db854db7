"""An unreachable database is one clear sentence and its own exit code, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SALESFLOW = str(Path(sys.executable).with_name("salesflow"))
NOWHERE = "postgresql://postgres@127.0.0.1:1/nothing"  # port 1: nothing listens there


def test_unreachable_database_exits_6_with_one_sentence() -> None:
    done = subprocess.run([SALESFLOW, "list", "--db", NOWHERE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 6
    assert done.stderr.startswith("error: the database did not answer (")
    assert "nothing was changed" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_database_as_json() -> None:
    done = subprocess.run(
        [SALESFLOW, "timers", "--json", "--db", NOWHERE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 6
    assert json.loads(done.stdout)["error"]["code"] == "database_unavailable"
