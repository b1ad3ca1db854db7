"""P6, P8, P12 under load: staff events and worker processes on the same instances, and two
processes of several threads each starting the same clients at once.

Only the two answers a user may see come back: ``ConflictError`` (someone changed the instance at
the same moment; nothing applied) and ``EventRejected`` (e.g. the instance closed meanwhile);
never a deadlock, a serialization failure or any other database error. No update is lost: every
accepted ``poke`` is counted in the instance's data, every timer fired once.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from engine.errors import ConflictError, EventRejected
from engine.runtime import Engine
from tests.reliability import figures, harness


def test_staff_events_racing_worker_processes_reach_users_only_as_conflicts(
    database_url: str, backend_name: str, tmp_path: Path
) -> None:
    count = 150
    harness.prepare(database_url, count)  # 450 timer firings due, in instance order
    config = harness.RunConfig(
        url=database_url, instances=count, workers=2, kills=2, failpoint_crashes=0, log_dir=tmp_path
    )
    outcomes: Counter[str] = Counter()
    surprises: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def staff(n: int) -> None:
        rng = random.Random(n)
        with Engine(database_url) as engine:  # one pool per clerk
            operations = 0
            while not done.is_set() or operations < 100:
                operations += 1
                key = f"harness/C{rng.randint(1, count):06d}"
                event = "close" if rng.random() < 0.05 else "poke"
                try:
                    engine.fire(key, event, actor=f"clerk-{n}")
                    result = f"{event} applied"
                except ConflictError:
                    result = "conflict"
                except EventRejected:
                    result = "rejected"
                except Exception as exc:  # a deadlock or database error reaching the user
                    result = "surprise"
                    with lock:
                        surprises.append(f"{type(exc).__name__}: {exc}")
                with lock:
                    outcomes[result] += 1

    clerks = [threading.Thread(target=staff, args=(n,)) for n in range(4)]
    for clerk in clerks:
        clerk.start()
    try:
        run = harness.Controller(config).run()
    finally:
        done.set()
        for clerk in clerks:
            clerk.join(timeout=120)

    assert surprises == [], surprises
    report = harness.check(database_url, expect_instances=count, complete=False)
    assert report.ok, report.violations
    assert report.pokes == outcomes["poke applied"]  # no lost update
    assert report.outcomes["lost"] == outcomes["close applied"]
    assert run.unexpected_exits == []
    figures.record(
        "staff events vs workers",
        backend_name,
        staff_events=sum(outcomes.values()),
        applied=outcomes["poke applied"] + outcomes["close applied"],
        conflicts=outcomes["conflict"],
        rejected=outcomes["rejected"],
        timers_fired=report.timers_fired,
        kills=run.kills,
        deadlocks_seen_by_users=0,
        lost=0,
    )


def test_two_processes_of_threads_starting_the_same_clients_create_one_instance_each(
    database_url: str, backend_name: str
) -> None:
    harness.prepare(database_url, 0)
    keys, threads = 40, 4
    command = [sys.executable, "-m", "tests.reliability.starter", database_url]
    env = {**os.environ, "PYTHONPATH": str(harness.ROOT)}
    starters = [
        subprocess.Popen(
            [*command, "--threads", str(threads), "--keys", str(keys), "--seed", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=harness.ROOT,
        )
        for n in range(2)
    ]
    for starter in starters:  # both ready: imports done, connection pools built
        assert starter.stdout is not None and starter.stdout.readline().strip() == "ready"
    answers = []
    for starter in starters:
        stdout, stderr = starter.communicate("go\n", timeout=120)
        assert starter.returncode == 0, stderr
        answers.append(json.loads(stdout))

    assert [a["errors"] for a in answers] == [[], []]
    created = [key for a in answers for key in a["created_keys"]]
    assert sorted(created) == [f"K{k:04d}" for k in range(keys)]  # each key created exactly once
    assert sum(a.get("existing", 0) for a in answers) == 2 * threads * keys - keys
    with Engine(database_url) as engine:
        assert len(engine.list_instances(process="harness")) == keys
    figures.record(
        "concurrent starts (2 processes x 4 threads)",
        backend_name,
        starts=2 * threads * keys,
        instances=keys,
        duplicates=0,
    )
