"""Workload 1, lifecycle: the bank flow from start to sale, five steps per client.

For N clients, in weekly-batch order (every client through each step before the next step, as the
bank works): start; ``mailing_sent``; the clock moves a week and one tick fires the N one-week
``call_overdue`` timers; ``meeting_booked``; ``bought``. Every step is its own transaction with
its history row and timers. Three variants, interleaved, each in a fresh database and process:

- ``engine``: salesflow's Engine (``start``, ``fire``, ``tick``) on a ManualClock;
- ``limit``: the same writes by a minimal hand-written SQLAlchemy Core loop (``benchmarks.raw``);
- ``spiff``: SpiffWorkflow 3.x running the same flow as BPMN, serialized to JSON and stored in
  the same database after each step (``benchmarks.spiff``).

    python -m benchmarks.lifecycle --db sqlite --n 2000 --reps 3
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from benchmarks import common

VARIANTS = ("engine", "limit", "spiff")
LABELS = {
    "engine": "salesflow Engine",
    "limit": "limit: raw SQLAlchemy Core loop",
    "spiff": "SpiffWorkflow 3 + JSON in the database",
}
PHASES = ("start", "mailing_sent", "tick", "meeting_booked", "bought")
WEEK = timedelta(days=7, minutes=1)
MAILING = {"batch": "2026-W10", "mailed_on": "2026-03-02"}


def _client(i: int) -> tuple[str, dict[str, Any]]:
    return f"C{i:07d}", {"client_name": f"Client {i}", "segment": "affluent", "batch": "2026-W10"}


class _Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()
        self._cpu = time.process_time()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._start
        self._start = now

    def result(self, n: int) -> dict[str, Any]:
        cpu = time.process_time() - self._cpu
        return {"n": n, "elapsed": sum(self.seconds.values()), "cpu": cpu, "phases": self.seconds}


# -- variants (each runs in its own child process) -----------------------------------------------
def engine_run(url: str, n: int) -> dict[str, Any]:
    from engine import Engine, ManualClock

    clock = ManualClock(common.T0)
    with Engine(url, clock) as engine:
        engine.deploy(common.BANK_YAML)
        engine.definition("private_banking")  # parsed once per process, like SpiffWorkflow's BPMN below
        phases = _Phases()
        ids = [engine.start("private_banking", *_client(i), actor="import").instance.id for i in range(n)]
        phases("start")
        for instance_id in ids:
            engine.fire(instance_id, "mailing_sent", MAILING, actor="back-office")
        phases("mailing_sent")
        clock.advance(WEEK)
        fired = engine.tick()
        phases("tick")
        meeting = {"meeting_at": (clock.now() + timedelta(days=3)).isoformat(), "advisor": "A. Kowalska"}
        for instance_id in ids:
            engine.fire(instance_id, "meeting_booked", meeting, actor="tm-1", roles=["telemarketer"])
        phases("meeting_booked")
        for instance_id in ids:
            engine.fire(
                instance_id, "bought", {"product": "private banking"}, actor="adv-1", roles=["advisor"]
            )
        phases("bought")
    if len(fired.fired) != n:
        raise RuntimeError(f"tick fired {len(fired.fired)} timers, expected {n}")
    return phases.result(n)


def limit_run(url: str, n: int) -> dict[str, Any]:
    from benchmarks import raw

    db = common.raw_engine(url)
    now = common.T0
    phases = _Phases()
    ids = []
    for i in range(n):
        key, data = _client(i)
        with db.begin() as conn:
            ids.append(raw.start(conn, key, data, now))
    phases("start")
    call_due = [(0, "call_overdue", now + timedelta(days=7))]
    for instance_id in ids:
        with db.begin() as conn:
            raw.event(
                conn,
                instance_id,
                "mailing_sent",
                MAILING,
                {"call_attempts": 0},
                raw.AWAITING_CALL,
                call_due,
                now,
            )
    phases("mailing_sent")
    now = now + WEEK
    fired = 0
    while True:
        with db.begin() as conn:
            if not raw.fire_next_due(conn, now, now):
                break
        fired += 1
    phases("tick")
    meeting_at = now + timedelta(days=3)
    meeting = {"meeting_at": meeting_at.isoformat(), "advisor": "A. Kowalska"}
    meeting_timers = [
        (0, "remind_client", meeting_at - timedelta(days=1)),
        (1, "outcome_due", meeting_at + timedelta(hours=2)),
    ]
    for instance_id in ids:
        with db.begin() as conn:
            raw.event(
                conn, instance_id, "meeting_booked", meeting, {}, raw.MEETING_BOOKED, meeting_timers, now
            )
    phases("meeting_booked")
    for instance_id in ids:
        with db.begin() as conn:
            raw.event(conn, instance_id, "bought", {"product": "private banking"}, {}, raw.BOUGHT, [], now)
    phases("bought")
    db.dispose()
    if fired != n:
        raise RuntimeError(f"raw loop fired {fired} timers, expected {n}")
    return phases.result(n)


def spiff_run(url: str, n: int) -> dict[str, Any]:
    from benchmarks import spiff

    clock = spiff.use_manual_clock(common.T0)
    db = common.raw_engine(url)
    spiff.metadata.create_all(db)
    runner = spiff.SpiffRunner()
    phases = _Phases()
    ids = []
    for i in range(n):
        key, data = _client(i)
        with db.begin() as conn:
            ids.append(runner.start(conn, key, data))
    phases("start")
    for workflow_id in ids:
        with db.begin() as conn:
            runner.complete(conn, workflow_id, "mailing", {**MAILING, "call_attempts": 0})
    phases("mailing_sent")
    clock.current = clock.current + WEEK
    with db.connect() as conn:  # no due-timer index: every active workflow must be looked at
        waiting = list(
            conn.execute(select(spiff.workflows.c.id).where(spiff.workflows.c.status == "active")).scalars()
        )
    for workflow_id in waiting:
        with db.begin() as conn:
            runner.refresh(conn, workflow_id)
    phases("tick")
    meeting = {
        "outcome": "meeting_booked",
        "meeting_at": (clock.current + timedelta(days=3)).isoformat(),
        "advisor": "A. Kowalska",
    }
    for workflow_id in ids:
        with db.begin() as conn:
            runner.complete(conn, workflow_id, "call_overdue", meeting)
    phases("meeting_booked")
    for workflow_id in ids:
        with db.begin() as conn:
            runner.complete(conn, workflow_id, "meeting", {"outcome": "bought", "product": "private banking"})
    phases("bought")
    db.dispose()
    return phases.result(n)


# -- checks: every variant did the whole flow ----------------------------------------------------
def verify(url: str, variant: str, n: int) -> dict[str, Any]:
    db = common.raw_engine(url)
    try:
        with db.connect() as conn:
            if variant == "spiff":
                from benchmarks import spiff

                done = conn.execute(
                    select(func.count()).where(spiff.workflows.c.status == "done")
                ).scalar_one()
                size = conn.execute(select(func.avg(func.length(spiff.workflows.c.serialization)))).scalar()
                if done != n:
                    raise RuntimeError(f"spiff: {done} of {n} workflows completed")
                return {"json_bytes": round(float(size))}
            from storage.tables import history, instances, timers

            won = conn.execute(select(func.count()).where(instances.c.outcome == "won")).scalar_one()
            steps = conn.execute(select(func.count()).select_from(history)).scalar_one()
            by_status = dict(
                conn.execute(select(timers.c.status, func.count()).group_by(timers.c.status)).all()
            )
    finally:
        db.dispose()
    expected_timers = {"fired": n, "cancelled": 3 * n}
    if won != n or steps != 5 * n or by_status != expected_timers:
        raise RuntimeError(f"{variant}: won={won} history={steps} timers={by_status} for n={n}")
    return {"history_rows": steps, "timers": by_status}


# -- the driver ----------------------------------------------------------------------------------
def run(backends: list[str], n: int, reps: int) -> str:
    out = []
    for backend in backends:
        series = {variant: common.Series(variant) for variant in VARIANTS}
        for rep, variant in common.interleaved(reps, VARIANTS):
            with common.fresh_database(backend) as url:
                result = common.run_child("benchmarks.lifecycle", f"{variant}_run", url=url, n=n)
                checked = verify(url, variant, n)
            rate = n / result["elapsed"]
            series[variant].add(
                rate, result["peak_rss_mb"], phases=result["phases"], cpu=result["cpu"], **checked
            )
            common.log(
                f"lifecycle {backend} rep {rep + 1} {variant}: {rate:,.0f} lifecycles/s, "
                f"{result['cpu'] / n * 1e3:.2f} ms CPU per lifecycle"
            )
        out.append(_report(backend, n, reps, series))
    return "\n".join(out)


def _report(backend: str, n: int, reps: int, series: dict[str, common.Series]) -> str:
    engine, limit, spiff = series["engine"], series["limit"], series["spiff"]
    rows = []
    for variant in VARIANTS:
        s = series[variant]
        ratio = "1.00x" if variant == "engine" else f"{engine.median / s.median:.2f}x"
        cpu = statistics.median(e["cpu"] for e in s.extra) / n * 1000
        rows.append(
            [
                LABELS[variant],
                f"{s.median:,.0f}",
                s.spread(),
                f"{1000 / s.median:.2f}",
                f"{cpu:.2f}",
                s.rss(),
                ratio,
            ]
        )
    table = common.markdown_table(
        [
            "variant",
            "lifecycles/s (median)",
            "min-max",
            "ms/lifecycle",
            "CPU ms/lifecycle",
            "peak RSS MB",
            "engine is",
        ],
        rows,
    )
    phase_rows = []
    for variant in VARIANTS:
        per_step = {p: sorted(e["phases"][p] for e in series[variant].extra) for p in PHASES}
        phase_rows.append(
            [LABELS[variant], *(f"{per_step[p][len(per_step[p]) // 2] / n * 1e6:,.0f}" for p in PHASES)]
        )
    phases = common.markdown_table(["us per step (median)", *PHASES], phase_rows)
    vs_limit = engine.median / limit.median
    vs_spiff = engine.median / spiff.median
    targets = common.markdown_table(
        ["target", "measured (per-rep range)", "result"],
        [
            ["engine >= 0.7x the limit", common.ratio_cell(engine, limit), common.verdict(vs_limit >= 0.7)],
            ["engine >= 7x SpiffWorkflow", common.ratio_cell(engine, spiff), common.verdict(vs_spiff >= 7)],
        ],
    )
    json_size = spiff.extra[0].get("json_bytes") if spiff.extra else None
    note = (
        f"{n:,} clients x 5 steps, {reps} interleaved repetitions; each variant wrote "
        f"{5 * n:,} history rows and {4 * n:,} timers (engine and limit, checked)"
        + (f"; SpiffWorkflow stored ~{json_size:,} bytes of JSON per workflow." if json_size else ".")
    )
    return common.section(f"Lifecycle ({backend})", f"{note}\n\n{table}\n\n{phases}\n\n{targets}")


def main(argv: list[str] | None = None) -> None:
    args = common.parser("Workload 1: the bank-flow lifecycle", n=2000).parse_args(argv)
    print(run(common.backends(args.db), args.n, args.reps))


if __name__ == "__main__":
    main()
