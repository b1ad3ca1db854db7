"""Workload 6, latency: how late timers fire with ``salesflow worker`` running.

Per repetition: a fresh database, the real worker (``salesflow worker --interval 1 --db URL``) as a
subprocess, then ``--rate`` timers per second spread evenly over a ``--window`` of seconds,
armed through the engine (``start_many`` of the ``benchmarks/processes/latency_probe.yaml``
process, whose one timer fires at ``data.due_at``). When the window is over and every timer has
fired, the delay of each is read from the timers table as ``fired_at - due_at`` (the worker
records it as ``lateness_seconds`` too). Repetitions alternate between the backends.

    python -m benchmarks.latency --db both --window 40 --rate 5 --reps 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from benchmarks import common

PROBE = Path(__file__).resolve().parent / "processes" / "latency_probe.yaml"
SALESFLOW = Path(sys.executable).with_name("salesflow")
LEAD = 8.0  # seconds between arming and the first due instant


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def one_window(backend: str, window: float, rate: float) -> dict[str, Any]:
    from engine import Engine

    with common.fresh_database(backend) as url, tempfile.TemporaryDirectory() as directory:
        with Engine(url) as engine:
            engine.deploy(PROBE)
        log_path = Path(directory) / "worker.log"
        env = {**os.environ, "SALESFLOW_LOG": "WARNING"}
        with log_path.open("w") as log_file:
            worker = subprocess.Popen(
                [str(SALESFLOW), "worker", "--interval", "1", "--db", url],
                stdout=log_file,
                stderr=log_file,
                env=env,
            )
            try:
                time.sleep(3)  # the worker is up and idle
                count = max(1, round(window * rate))
                first = datetime.now(UTC) + timedelta(seconds=LEAD)
                with Engine(url) as engine:
                    rows = [
                        (i, f"P{i:05d}", {"due_at": (first + timedelta(seconds=i / rate)).isoformat()})
                        for i in range(count)
                    ]
                    report = engine.start_many("latency_probe", rows)
                    if report.started != count:
                        raise RuntimeError(f"armed {report.started} of {count} timers: {report.rejected[:3]}")
                    armed_by = datetime.now(UTC)
                    if armed_by > first:
                        raise RuntimeError("arming took longer than the lead time; lower --rate")
                    deadline = time.time() + LEAD + window + 30
                    while time.time() < deadline and engine.timers(status="pending"):
                        time.sleep(1)
            finally:
                common.stop_worker(worker)
        delays, recorded = _delays(url)
        if len(delays) != count:
            raise RuntimeError(f"{len(delays)} of {count} timers fired:\n{log_path.read_text()[-2000:]}")
    return {
        "count": count,
        "p50": percentile(delays, 50),
        "p99": percentile(delays, 99),
        "max": max(delays),
        "delays": delays,
        "recorded_max": max(recorded),
    }


def _delays(url: str) -> tuple[list[float], list[float]]:
    import engine  # noqa: F401  (engine first: importing storage.tables first is a circular import)
    from storage.tables import timers

    db = common.raw_engine(url)
    try:
        with db.connect() as conn:
            rows = conn.execute(
                select(timers.c.due_at, timers.c.fired_at, timers.c.lateness_seconds).where(
                    timers.c.status == "fired"
                )
            ).all()
    finally:
        db.dispose()
    return [(r.fired_at - r.due_at).total_seconds() for r in rows], [r.lateness_seconds for r in rows]


def run(backends: list[str], window: float, rate: float, reps: int) -> str:
    results: dict[str, list[dict[str, Any]]] = {backend: [] for backend in backends}
    for rep in range(reps):
        order = backends if rep % 2 == 0 else list(reversed(backends))
        for backend in order:
            result = one_window(backend, window, rate)
            results[backend].append(result)
            common.log(
                f"latency {backend} rep {rep + 1}: p50 {result['p50'] * 1000:.0f} ms, "
                f"p99 {result['p99'] * 1000:.0f} ms, max {result['max'] * 1000:.0f} ms "
                f"over {result['count']} timers"
            )
    out = []
    for backend in backends:
        reps_ = results[backend]
        pooled = [d for r in reps_ for d in r["delays"]]
        p50s = common.Series("p50", [r["p50"] * 1000 for r in reps_])
        p99s = common.Series("p99", [r["p99"] * 1000 for r in reps_])
        table = common.markdown_table(
            ["timers", "p50 ms (median of reps)", "min-max", "p99 ms (median of reps)", "min-max",
             "p99 ms, all timers pooled", "max ms"],
            [[f"{len(pooled):,}", f"{p50s.median:.0f}", p50s.spread(), f"{p99s.median:.0f}", p99s.spread(),
              f"{percentile(pooled, 99) * 1000:.0f}", f"{max(pooled) * 1000:.0f}"]],
        )  # fmt: skip
        worst = max(p99s.median, percentile(pooled, 99) * 1000)
        targets = common.markdown_table(
            ["target", "measured", "result"],
            [["p99 <= 1 s", f"{worst:.0f} ms", common.verdict(worst <= 1000)]],
        )
        note = (
            f"{reps} repetitions (alternating backends), each a fresh database with "
            f"`salesflow worker --interval 1` running and {rate:g} timers per second due over {window:g} s; "
            "delay = `fired_at - due_at`."
        )
        out.append(common.section(f"Latency ({backend})", f"{note}\n\n{table}\n\n{targets}"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Workload 6: timer latency with the worker running")
    ap.add_argument("--db", choices=(*common.BACKENDS, "both"), default="both")
    ap.add_argument(
        "--window", type=float, default=40.0, help="seconds over which timers come due (default 40)"
    )
    ap.add_argument("--rate", type=float, default=5.0, help="timers due per second (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="windows per backend (default 3)")
    args = ap.parse_args(argv)
    print(run(common.backends(args.db), args.window, args.rate, args.reps))


if __name__ == "__main__":
    main()
