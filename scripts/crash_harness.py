#!/usr/bin/env python3
"""Long crash-harness runs: worker processes tick one database full of due timers while this
controller kills them (kill -9), failpoints crash them inside the step and, on PostgreSQL, their
sessions are terminated or the server restarted; then a checker proves every timer fired exactly
once, nothing was half-applied and every history folds back to its instance.

The same harness runs briefly in the test suite (tests/reliability/test_crash_harness.py); this
script is for long runs, whose figures go in docs/reliability.md. Examples:

    .venv/bin/python scripts/crash_harness.py --db postgresql://postgres@127.0.0.1/test \\
        --timers 20000 --workers 4 --kills 100 --failpoint-crashes 20
    .venv/bin/python scripts/crash_harness.py --db sqlite:////tmp/harness.db --workers 2 \\
        --timers 20000 --kills 100 --failpoint-crashes 20
    .venv/bin/python scripts/crash_harness.py --db postgresql://postgres@127.0.0.1/test \\
        --timers 6000 --kills 10 --terminations 30 --restarts 2       # as root, local cluster

PostgreSQL runs use a fresh schema (dropped afterwards unless --keep); SQLite runs a fresh file.
With --duration, rounds of --timers more timers (and --kills more kills...) repeat until that many
seconds have passed; the checker runs after every round over everything so far. Exit code 0 when
nothing was lost, doubled or half-applied, 1 otherwise. Prints one JSON report at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage import database  # noqa: E402
from tests.reliability import harness  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--db", required=True, help="sqlite:///FILE or postgresql://... (made fresh)")
    parser.add_argument("--timers", type=int, default=20_000, help="timer firings per round (3 per instance)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes at any moment")
    parser.add_argument("--kills", type=int, default=100, help="kill -9 of a random worker, per round")
    parser.add_argument("--failpoint-crashes", type=int, default=20, help="crashes inside a step, per round")
    parser.add_argument("--terminations", type=int, default=0, help="pg_terminate_backend rounds, per round")
    parser.add_argument("--restarts", type=int, default=0, help="PostgreSQL stop/start, per round (root)")
    parser.add_argument("--duration", type=float, default=0, help="repeat rounds until N seconds passed")
    parser.add_argument("--interval", type=float, default=0.2, help="the workers' poll interval, seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-dir", type=Path, default=None, help="worker logs (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema / SQLite file")
    return parser.parse_args(argv)


def fresh_database(url: str) -> tuple[str, Any]:
    """A URL to an empty database for the run, and how to remove it afterwards."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return url, lambda: [Path(f"{path}{s}").unlink(missing_ok=True) for s in ("", "-wal", "-shm")]
    schema = f"harness_{uuid.uuid4().hex[:10]}"
    admin = database.create_db_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        harness.ensure_postgresql_running()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()

    scoped = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False), drop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url, remove = fresh_database(args.db)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="salesflow-harness-"))
    per_round = math.ceil(args.timers / harness.FIRES_PER_INSTANCE)
    began = time.monotonic()
    rounds: list[dict[str, Any]] = []
    report = None
    try:
        while True:
            number = len(rounds) + 1
            harness.prepare(url, per_round, prefix=f"R{number}-")
            config = harness.RunConfig(
                url=url,
                instances=per_round,
                workers=args.workers,
                kills=args.kills,
                failpoint_crashes=args.failpoint_crashes,
                terminations=args.terminations,
                restarts=args.restarts,
                interval=args.interval,
                timeout=max(600.0, per_round * 0.5),
                log_dir=log_dir / f"round-{number}",
                seed=None if args.seed is None else args.seed + number,
                progress=lambda line, n=number: print(f"[round {n}] {line}", file=sys.stderr, flush=True),
            )
            try:
                figures = harness.Controller(config).run()
            finally:
                if args.restarts:
                    harness.ensure_postgresql_running()
            report = harness.check(url, expect_instances=per_round * number)
            rounds.append(figures.as_dict())
            print(f"[round {number}] {json.dumps(figures.as_dict())}", file=sys.stderr, flush=True)
            if not report.ok or time.monotonic() - began >= args.duration:
                break
    finally:
        if not args.keep:
            remove()
    assert report is not None
    summary = _summary(args, rounds, report, time.monotonic() - began, log_dir)
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


def _summary(
    args: argparse.Namespace,
    rounds: list[dict[str, Any]],
    report: harness.CheckReport,
    seconds: float,
    logs: Path,
) -> dict[str, Any]:
    counted = ("kills", "failpoint_crashes", "terminated_sessions")
    total = {key: sum(r[key] for r in rounds) for key in counted}
    by_point: dict[str, int] = {}
    for r in rounds:
        for point, n in r["failpoint_crashes_by_point"].items():
            by_point[point] = by_point.get(point, 0) + n
    unexpected = [e for r in rounds for e in r["unexpected_exits"]]
    expected = harness.FIRES_PER_INSTANCE * report.instances
    return {
        "ok": report.ok and not unexpected and report.timers_fired == expected,
        "backend": rounds[0]["backend"],
        "rounds": len(rounds),
        "seconds": round(seconds, 1),
        "workers": args.workers,
        "instances": report.instances,
        "timers_fired": report.timers_fired,
        "timers_expected": expected,
        "timers_cancelled": report.timers_cancelled,
        "timers_pending": report.timers_pending,
        "lost": max(0, expected - report.timers_fired),
        "duplicated": max(0, report.timers_fired - expected),
        "history_rows": report.history_rows,
        "kills": total["kills"],
        "failpoint_crashes": total["failpoint_crashes"],
        "failpoint_crashes_by_point": by_point,
        "terminated_sessions": total["terminated_sessions"],
        "restarts": sum(r["restarts"] for r in rounds),
        "processes_started": sum(r["processes_started"] for r in rounds),
        "unexpected_exits": unexpected,
        "violations": report.violations,
        "logs": str(logs),
    }


if __name__ == "__main__":
    raise SystemExit(main())
