"""``salesflow validate`` through the real command: exit codes, ``ok`` lines, located errors, JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_invalid_definitions import UNREACHABLE  # one copy of the warning sample

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = sorted((ROOT / "processes").glob("*.yaml"))
CORPUS = Path(__file__).resolve().parent / "corpus" / "invalid"
BAD_CASE = CORPUS / "20_unknown_target_transition.yaml"
BAD_ERROR = "9:13: states.to_call.on.book.to: unknown state 'meetng' (did you mean 'meeting'?)"


def salesflow_command() -> str:
    """The installed ``salesflow`` script next to this interpreter (the project's venv)."""
    found = shutil.which("salesflow", path=str(Path(sys.executable).parent))
    assert found is not None, f"salesflow is not installed next to {sys.executable}"
    return found


def salesflow(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [salesflow_command(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_validate_the_shipped_processes_folder() -> None:
    done = salesflow("validate", "processes/")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"processes/{p.name}: ok (0 warnings)" for p in PROCESSES]
    assert done.stderr == ""


def test_validate_named_files() -> None:
    first, second = PROCESSES[:2]

    done = salesflow("validate", first, second)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{first}: ok (0 warnings)", f"{second}: ok (0 warnings)"]


def test_a_folder_with_one_bad_file_exits_1_and_locates_the_error(tmp_path: Path) -> None:
    shutil.copy(PROCESSES[0], tmp_path / "a_good.yaml")
    shutil.copy(BAD_CASE, tmp_path / "b_bad.yaml")

    done = salesflow("validate", tmp_path)

    assert done.returncode == 1
    assert done.stdout.splitlines() == [f"{tmp_path / 'a_good.yaml'}: ok (0 warnings)"]
    assert done.stderr.splitlines() == [f"{tmp_path / 'b_bad.yaml'}:{BAD_ERROR}"]


def test_every_error_of_a_file_is_printed_in_line_order(tmp_path: Path) -> None:
    bad = tmp_path / "several.yaml"
    bad.write_text(
        "process: several\nversion: 1\ntimezone: Mars/Olympus\ninitial: strat\nstates:\n"
        "  start:\n    on:\n      won: clsoed\n  closed:\n    final: true\n",
        encoding="utf-8",
    )

    done = salesflow("validate", bad)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{bad}:3:11: timezone: unknown time zone 'Mars/Olympus'; "
        "use an IANA name such as Europe/Warsaw or UTC",
        f"{bad}:4:10: initial: unknown initial state 'strat' (did you mean 'start'?)",
        f"{bad}:8:12: states.start.on.won: unknown state 'clsoed' (did you mean 'closed'?)",
    ]


def test_json_output_lists_file_validity_errors_and_warnings(tmp_path: Path) -> None:
    shutil.copy(BAD_CASE, tmp_path / "a_bad.yaml")
    (tmp_path / "b_warn.yaml").write_text(UNREACHABLE, encoding="utf-8")

    done = salesflow("validate", tmp_path, "--json")

    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert [(r["file"], r["valid"]) for r in report] == [
        (str(tmp_path / "a_bad.yaml"), False),
        (str(tmp_path / "b_warn.yaml"), True),
    ]
    assert report[0]["warnings"] == []
    assert report[0]["errors"] == [
        {
            "file": str(tmp_path / "a_bad.yaml"),
            "line": 9,
            "column": 13,
            "path": "states.to_call.on.book.to",
            "message": "unknown state 'meetng' (did you mean 'meeting'?)",
            "severity": "error",
        }
    ]
    assert report[1]["errors"] == []
    assert report[1]["warnings"] == [
        {
            "file": str(tmp_path / "b_warn.yaml"),
            "line": 8,
            "column": 3,
            "path": "states.forgotten",
            "message": "state 'forgotten' cannot be reached from 'new'",
            "severity": "warning",
        }
    ]


def test_json_output_for_valid_files_exits_0() -> None:
    done = salesflow("validate", "processes", "--json")

    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert [r["file"] for r in report] == [f"processes/{p.name}" for p in PROCESSES]
    assert all(r["valid"] and r["errors"] == [] for r in report)


def test_a_warning_only_file_exits_0_and_prints_the_warning(tmp_path: Path) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text(UNREACHABLE, encoding="utf-8")

    done = salesflow("validate", path)

    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"{path}: ok (1 warning)"]
    assert done.stderr.splitlines() == [
        f"{path}:8:3: states.forgotten: warning: state 'forgotten' cannot be reached from 'new'"
    ]


def test_a_missing_path_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    done = salesflow("validate", missing)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: {missing} does not exist; give a process file or a folder of them"
    ]


def test_a_missing_path_among_good_ones_still_exits_2(tmp_path: Path) -> None:
    done = salesflow("validate", PROCESSES[0], tmp_path / "nope.yaml")

    assert done.returncode == 2
    assert done.stdout == ""


def test_an_empty_folder_exits_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a process\n", encoding="utf-8")

    done = salesflow("validate", tmp_path)

    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: folder {tmp_path} holds no .yaml or .yml files"]


def test_an_empty_folder_with_json_gives_a_json_error(tmp_path: Path) -> None:
    done = salesflow("validate", tmp_path, "--json")

    assert done.returncode == 2
    assert json.loads(done.stdout) == {
        "error": {"code": "usage", "message": f"folder {tmp_path} holds no .yaml or .yml files"}
    }


def test_no_path_at_all_is_a_usage_error() -> None:
    done = salesflow("validate")

    assert done.returncode == 2
    assert "Missing argument" in done.stderr


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_both_yaml_suffixes_are_found_in_folders(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"process{suffix}"
    shutil.copy(PROCESSES[0], path)

    done = salesflow("validate", tmp_path)

    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"{path}: ok (0 warnings)"]
