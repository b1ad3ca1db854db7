"""Workloads 4 and 5: an idle tick and the worker's memory, with 100,000 and 1,000,000 clients stored.

Set-up (not measured): two databases per backend, one with ``--small`` and one with ``--large``
bank-flow clients (instances, two history rows each, one pending ``call_overdue`` timer each, all
due later than the benchmark runs), bulk-loaded by ``benchmarks.populate`` and analyzed.

- Idle tick: ``Engine.tick()`` on the real clock with nothing due among all those pending timers,
  ``--ticks`` times per repetition (median per repetition), each a transaction as the worker runs it;
  also the worker's whole round (``tick`` then ``next_due`` for its alarm). The due-timer claim
  query the engine sent is captured and shown with ``EXPLAIN`` (SQLite: ``EXPLAIN QUERY PLAN``;
  PostgreSQL: ``EXPLAIN (ANALYZE, BUFFERS)``).
- Memory: the real ``salesflow worker --interval 1 --db URL`` as a subprocess; after it has ticked
  for ``--settle`` seconds its resident set size (psutil) and peak (VmHWM) are read.

Repetitions alternate between the two sizes.

    python -m benchmarks.scale --db sqlite --small 100000 --large 1000000 --reps 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import common, populate

SALESFLOW = Path(sys.executable).with_name("salesflow")


def idle_ticks(url: str, ticks: int) -> dict[str, Any]:
    """In a child: time ``ticks`` idle ticks and worker rounds; capture the claim query."""
    from sqlalchemy import event

    from engine import Engine

    statements: list[tuple[str, Any]] = []
    with Engine(url) as engine:
        for _ in range(5):  # warm: connection, statement cache, definition lookups
            engine.tick()
            engine.next_due()

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if "FROM timers" in statement and "JOIN instances" in statement:
                statements.append((statement, parameters))

        event.listen(engine.db, "before_cursor_execute", capture)
        engine.tick()
        event.remove(engine.db, "before_cursor_execute", capture)
        tick_ms, round_ms = [], []
        for _ in range(ticks):
            start = time.perf_counter()
            report = engine.tick()
            middle = time.perf_counter()
            engine.next_due()
            end = time.perf_counter()
            if report.fired:
                raise RuntimeError("a timer was due: the idle tick is not idle")
            tick_ms.append((middle - start) * 1000)
            round_ms.append((end - start) * 1000)
    statement, parameters = statements[0]
    return {
        "tick_ms": statistics.median(tick_ms),
        "round_ms": statistics.median(round_ms),
        "claim_sql": statement,
        "claim_params": _jsonable(parameters),
    }


def _jsonable(parameters: Any) -> Any:
    if isinstance(parameters, dict):
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in parameters.items()}
    return [v.isoformat() if isinstance(v, datetime) else v for v in parameters]


def explain(url: str, statement: str, parameters: Any) -> str:
    """The plan of the claim query exactly as the engine sent it."""
    db = common.raw_engine(url)
    try:
        raw = db.raw_connection()
        try:
            cur = raw.cursor()
            if db.dialect.name == "sqlite":
                cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                return "\n".join(f"{row[0]} {row[1]} {row[3]}" for row in cur.fetchall())
            params = {
                k: datetime.fromisoformat(v) if isinstance(v, str) else v for k, v in parameters.items()
            }
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params)
            plan = "\n".join(row[0] for row in cur.fetchall())
            raw.rollback()
            return plan
        finally:
            raw.close()
    finally:
        db.dispose()


def worker_memory(url: str, settle: float) -> dict[str, float]:
    """Start the real worker, let it tick, read its memory, stop it with SIGTERM."""
    import psutil

    env = {**os.environ, "SALESFLOW_LOG": "WARNING"}
    command = [str(SALESFLOW), "worker", "--interval", "1", "--db", url]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    try:
        time.sleep(settle)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited: {worker.stderr.read()[-2000:] if worker.stderr else ''}")
        process = psutil.Process(worker.pid)
        rss = process.memory_info().rss / 2**20
        peak = _vm_hwm(worker.pid)
    finally:
        common.stop_worker(worker)
    return {"rss_mb": rss, "peak_mb": peak}


def _vm_hwm(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(backend: str, n: int, stack: Any) -> str:
    url = stack.enter_context(common.fresh_database(backend))
    populate.deploy(url)
    later = datetime.now(UTC) + timedelta(days=1)  # nothing comes due while the benchmark runs
    start = time.perf_counter()
    populate.populate(url, n, lambda i: later + timedelta(seconds=i % 604_800))
    common.log(f"scale {backend}: {n:,} clients loaded in {time.perf_counter() - start:.0f}s")
    return url


def run(backends: list[str], sizes: tuple[int, int], reps: int, ticks: int, settle: float) -> str:
    import contextlib

    out = []
    for backend in backends:
        with contextlib.ExitStack() as stack:
            urls = {n: build(backend, n, stack) for n in sizes}
            idle = {n: common.Series(f"{n:,}") for n in sizes}
            memory = {n: common.Series(f"{n:,}") for n in sizes}
            plans: dict[int, str] = {}
            for rep, n in common.interleaved(reps, sizes):
                result = common.run_child("benchmarks.scale", "idle_ticks", url=urls[n], ticks=ticks)
                idle[n].add(result["tick_ms"], result["peak_rss_mb"], round_ms=result["round_ms"])
                if n not in plans:
                    plans[n] = explain(urls[n], result["claim_sql"], result["claim_params"])
                    plans[-n] = result["claim_sql"]
                mem = worker_memory(urls[n], settle)
                memory[n].add(mem["rss_mb"], peak=mem["peak_mb"])
                common.log(
                    f"scale {backend} rep {rep + 1} {n:,}: tick {result['tick_ms']:.2f} ms, "
                    f"worker RSS {mem['rss_mb']:.0f} MB"
                )
        out.append(_report(backend, sizes, reps, ticks, idle, memory, plans))
    return "\n".join(out)


def _report(
    backend: str,
    sizes: tuple[int, int],
    reps: int,
    ticks: int,
    idle: dict[int, common.Series],
    memory: dict[int, common.Series],
    plans: dict[int, str],
) -> str:
    small, large = sizes
    rows = []
    for n in sizes:
        rounds = common.Series("round", [e["round_ms"] for e in idle[n].extra])
        rows.append(
            [f"{n:,}", f"{idle[n].median:.2f}", idle[n].spread("{:.2f}"), f"{rounds.median:.2f}",
             f"{memory[n].median:.0f}", memory[n].spread("{:.0f}"),
             f"{statistics.median(e['peak'] for e in memory[n].extra):.0f}"]
        )  # fmt: skip
    table = common.markdown_table(
        ["pending timers (= clients)", "idle tick ms (median)", "min-max", "worker round ms",
         "worker RSS MB (median)", "min-max", "worker peak RSS MB"],
        rows,
    )  # fmt: skip
    tick_ratio = idle[large].median / idle[small].median
    mem_ratio = memory[large].median / memory[small].median
    worst_tick = max(idle[small].median, idle[large].median)
    worst_rss = max(memory[small].median, memory[large].median)
    targets = common.markdown_table(
        ["target", "measured", "result"],
        [
            ["idle tick <= 5 ms", f"{worst_tick:.2f} ms", common.verdict(worst_tick <= 5)],
            [f"idle tick the same at {large:,} as at {small:,}", f"{tick_ratio:.2f}x",
             common.verdict(tick_ratio <= 1.25)],
            ["worker RSS <= 150 MB", f"{worst_rss:.0f} MB", common.verdict(worst_rss <= 150)],
            [f"worker RSS within 10% between {small:,} and {large:,}", f"{mem_ratio:.2f}x",
             common.verdict(abs(mem_ratio - 1) <= 0.10)],
        ],
    )  # fmt: skip
    note = (
        f"{reps} repetitions alternating between the sizes; idle tick: median of {ticks} ticks per "
        "repetition (real clock, nothing due); worker: `salesflow worker --interval 1` measured after "
        "ticking idle."
    )
    explain_text = (
        f"The claim query as the engine sent it ({backend}):\n\n```sql\n{plans[-large].strip()}\n```\n\n"
        f"Its plan with {large:,} pending timers:\n\n```\n{plans[large]}\n```\n\n"
        f"and with {small:,}:\n\n```\n{plans[small]}\n```"
    )
    return common.section(
        f"Idle tick and worker memory ({backend})", f"{note}\n\n{table}\n\n{targets}\n\n{explain_text}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Workloads 4 and 5: idle tick and worker memory at scale")
    ap.add_argument("--db", choices=(*common.BACKENDS, "both"), default="both")
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ticks", type=int, default=200, help="idle ticks per repetition (default 200)")
    ap.add_argument("--settle", type=float, default=6.0, help="seconds the worker ticks before measuring")
    args = ap.parse_args(argv)
    print(run(common.backends(args.db), (args.small, args.large), args.reps, args.ticks, args.settle))


if __name__ == "__main__":
    main()
