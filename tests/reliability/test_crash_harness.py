"""P1, P3, P12: worker processes tick one database full of due timers while the controller kills
them with SIGKILL and failpoints crash them inside the step; afterwards every timer fired exactly
once, nothing was half-applied, and the history folds back to every instance's state.

Short runs, sized for CI; ``scripts/crash_harness.py`` runs the same harness for as long as you like.
Set ``SALESFLOW_HARNESS_SEED`` to replay a run's random choices.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from engine import failpoints
from tests.reliability import figures, harness


def run_harness(
    url: str, backend: str, tmp_path: Path, area: str = "crash harness", **overrides: object
) -> harness.RunFigures:
    seed = int(os.environ.get("SALESFLOW_HARNESS_SEED") or random.randrange(1_000_000))
    config = harness.RunConfig(url=url, instances=0, seed=seed, log_dir=tmp_path / "logs")
    for name, value in overrides.items():
        setattr(config, name, value)
    harness.prepare(url, config.instances)
    run = harness.Controller(config).run()
    report = harness.check(url, expect_instances=config.instances)
    context = f"seed {seed}, logs in {config.log_dir}: {run.as_dict()}"
    assert report.ok, f"{report.violations} ({context})"
    assert run.unexpected_exits == [], context
    assert report.timers_fired == harness.FIRES_PER_INSTANCE * config.instances, context
    assert report.timers_cancelled == config.instances, context  # every a_expired, never fired
    assert report.outcomes == {"won": config.instances}, context
    figures.record(
        area,
        backend,
        runs=1,
        timers_fired=report.timers_fired,
        timers_cancelled=report.timers_cancelled,
        kills=run.kills,
        failpoint_crashes=sum(run.failpoint_crashes.values()),
        terminated_sessions=run.terminated_sessions,
        restarts=run.restarts,
        lost=0,
        duplicated=0,
        seconds=round(run.seconds, 1),
    )
    return run


def test_workers_killed_and_crashed_at_failpoints_fire_every_timer_once(
    database_url: str, backend_name: str, tmp_path: Path
) -> None:
    sqlite = backend_name == "sqlite"
    run = run_harness(
        database_url,
        backend_name,
        tmp_path,
        instances=700,  # 2,100 timer firings (and 700 timers that must end cancelled)
        workers=2 if sqlite else 3,  # SQLite: two workers on one file, beside the crashers
        kills=10,
        failpoint_crashes=4,  # one crasher per failpoint, on top of the kills
    )
    assert run.kills == 10
    assert sorted(run.failpoint_crashes.elements()) == sorted(failpoints.POINTS), run.as_dict()
