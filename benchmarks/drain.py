"""Workload 3, timer drain: N due timers fired by tick, against a raw claim-and-update loop.

Set-up (not measured): N bank-flow clients in ``awaiting_call``, each with its one-week
``call_overdue`` timer already due (bulk-loaded by ``benchmarks.populate``). Firing one moves the
client to ``call_overdue`` and arms the three-week ``given_up`` timer, in one transaction.

- ``engine``: one process calls ``Engine.tick()`` on the real clock (as ``salesflow worker``
  does) until nothing is due;
- ``raw``: the same claim (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and the same writes by a
  hand-written SQLAlchemy Core loop (``benchmarks.raw.fire_next_due``), one transaction per timer;
- ``engine x2`` (PostgreSQL only): two worker processes calling ``Engine.tick()`` side by side
  on the same timers (SKIP LOCKED shares them out); throughput from the first start to the last end.

    python -m benchmarks.drain --db postgres --n 100000 --reps 3
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from benchmarks import common, populate

LABELS = {
    "engine": "salesflow tick, 1 process",
    "raw": "raw claim-and-update loop",
    "engine x2": "salesflow tick, 2 worker processes",
}


def engine_worker(url: str, start_at: float) -> dict[str, Any]:
    from engine import Engine

    with Engine(url) as engine:  # the real clock, as a worker runs
        engine.next_due()  # connect before the start line
        _wait_until(start_at)
        start, cpu = time.time(), time.process_time()
        fired = 0
        while True:  # the worker's loop: tick in batches until a batch comes back short
            batch = len(engine.tick(limit=200).fired)
            fired += batch
            if batch < 200:
                break
        return {"start": start, "end": time.time(), "fired": fired, "cpu": time.process_time() - cpu}


def raw_worker(url: str, start_at: float) -> dict[str, Any]:
    from benchmarks import raw

    db = common.raw_engine(url)
    with db.connect():
        pass
    _wait_until(start_at)
    start, cpu = time.time(), time.process_time()
    fired = 0
    while True:
        now = datetime.now(UTC)
        with db.begin() as conn:
            if not raw.fire_next_due(conn, now, now):
                break
        fired += 1
    end = time.time()
    db.dispose()
    return {"start": start, "end": end, "fired": fired, "cpu": time.process_time() - cpu}


def _wait_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.time()))


def measure(url: str, variant: str, n: int) -> dict[str, Any]:
    """Run the variant's process(es) from a common start line; throughput over the whole span."""
    workers = 2 if variant == "engine x2" else 1
    function = "raw_worker" if variant == "raw" else "engine_worker"
    start_at = time.time() + 5.0  # after the children have imported and connected
    results: list[dict[str, Any]] = []

    def one() -> None:
        results.append(common.run_child("benchmarks.drain", function, url=url, start_at=start_at))

    threads = [threading.Thread(target=one) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(results) != workers:
        raise RuntimeError(f"{variant}: a worker failed")
    fired = sum(r["fired"] for r in results)
    if fired != n or min(r["start"] for r in results) < start_at - 0.05:
        raise RuntimeError(f"{variant}: fired {fired} of {n} (or started before the line)")
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "rate": n / span,
        "rss": max(r["peak_rss_mb"] for r in results),
        "cpu": sum(r["cpu"] for r in results),
        "split": [r["fired"] for r in results],
    }


def verify(url: str, n: int) -> None:
    import engine  # noqa: F401  (engine first: importing storage.tables first is a circular import)
    from storage.tables import history, timers

    db = common.raw_engine(url)
    try:
        with db.connect() as conn:
            by_status = dict(
                conn.execute(select(timers.c.status, func.count()).group_by(timers.c.status)).all()
            )
            steps = conn.execute(select(func.count()).where(history.c.event == "call_overdue")).scalar_one()
    finally:
        db.dispose()
    if by_status != {"fired": n, "pending": n} or steps != n:
        raise RuntimeError(f"after the drain: timers {by_status}, {steps} call_overdue steps, n={n}")


def run(backends: list[str], n: int, reps: int) -> str:
    out = []
    for backend in backends:
        variants = ("engine", "raw", "engine x2") if backend == "postgres" else ("engine", "raw")
        series = {variant: common.Series(variant) for variant in variants}
        for rep, variant in common.interleaved(reps, variants):
            with common.fresh_database(backend) as url:
                populate.deploy(url)
                due = datetime.now(UTC) - timedelta(days=1)
                populate.populate(url, n, lambda i, due=due: due + timedelta(milliseconds=i))
                result = measure(url, variant, n)
                verify(url, n)
            series[variant].add(result["rate"], result["rss"], cpu=result["cpu"], split=result["split"])
            common.log(
                f"drain {backend} rep {rep + 1} {variant}: {result['rate']:,.0f} timers/s {result['split']}"
            )
        out.append(_report(backend, n, reps, series))
    return "\n".join(out)


def _report(backend: str, n: int, reps: int, series: dict[str, common.Series]) -> str:
    rows = []
    for variant, s in series.items():
        cpu = sorted(e["cpu"] for e in s.extra)[len(s.extra) // 2]
        rows.append(
            [LABELS[variant], f"{s.median:,.0f}", s.spread(), f"{n / s.median:.1f}", f"{cpu:.1f}", s.rss()]
        )
    table = common.markdown_table(
        ["variant", "timers/s (median)", "min-max", "seconds", "client CPU s", "peak RSS MB"], rows
    )
    engine, raw = series["engine"], series["raw"]
    targets = [
        [
            "engine >= 0.5x the raw loop",
            common.ratio_cell(engine, raw),
            common.verdict(engine.median >= 0.5 * raw.median),
        ]
    ]
    if "engine x2" in series:
        two = series["engine x2"]
        splits = ", ".join("/".join(str(x) for x in e["split"]) for e in two.extra)
        targets.append(
            [
                "2 workers >= 1.6x 1 worker",
                common.ratio_cell(two, engine),
                common.verdict(two.median >= 1.6 * engine.median),
            ]
        )
    table2 = common.markdown_table(["target", "measured (per-rep range)", "result"], targets)
    note = f"{n:,} due timers, {reps} interleaved repetitions, a fresh database each."
    if "engine x2" in series:
        note += f" Timers fired by each of the two workers: {splits}."
    return common.section(f"Timer drain ({backend})", f"{note}\n\n{table}\n\n{table2}")


def main(argv: list[str] | None = None) -> None:
    args = common.parser("Workload 3: timer drain", n=100_000).parse_args(argv)
    print(run(common.backends(args.db), args.n, args.reps))


if __name__ == "__main__":
    main()
