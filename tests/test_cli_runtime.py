"""The real ``salesflow`` command line, run in subprocesses against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine import failpoints
from engine.runtime import Engine

FIXTURES = Path(__file__).parent / "fixtures"
SALESFLOW = str(Path(sys.executable).with_name("salesflow"))

SHOW_KEYS = {
    "id",
    "process",
    "version",
    "key",
    "state",
    "status",
    "queue",
    "stage",
    "outcome",
    "data",
    "created_at",
    "updated_at",
}
HISTORY_KEYS = {"seq", "at", "recorded_at", "actor", "source", "event", "from", "to", "input"}
TIMER_KEYS = {"id", "instance", "name", "due_at", "status"}


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without SALESFLOW_* settings, a wide terminal, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESFLOW_")}
    return {**env, "COLUMNS": "200", **extra}


class Cli:
    """Runs ``salesflow ... --db URL`` in a fresh process and keeps what it printed."""

    def __init__(self, url: str, cwd: Path) -> None:
        self.url = url
        self.cwd = cwd
        self.env = environment()

    def __call__(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        [done] = self.all((args, expect))
        return done

    def all(self, *calls: tuple[tuple[str, ...], int]) -> list[subprocess.CompletedProcess[str]]:
        """Run independent commands at the same time; each ``(args, expected exit code)``."""
        running = [
            (
                args,
                expect,
                subprocess.Popen(
                    [SALESFLOW, *args, "--db", self.url],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=self.cwd,
                    env=self.env,
                ),
            )
            for args, expect in calls
        ]
        results = []
        for _, _, process in running:  # wait for every one before judging any
            stdout, stderr = process.communicate(timeout=60)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        for (args, expect, _), done in zip(running, results, strict=True):
            assert done.returncode == expect, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return results

    def json(self, *args: str, expect: int = 0) -> Any:
        return json.loads(self(*args, "--json", expect=expect).stdout)

    def start(self, process: str, key: str, data: str, at: str) -> int:
        out = self("start", process, "--key", key, "--data", data, "--at", at, "--as", "anna").stdout
        match = re.search(rf"started instance (\d+) \({process}/{key}\) in state \w+", out)
        assert match, out
        return int(match.group(1))


@pytest.fixture
def cli(migrated_url: str, tmp_path: Path) -> Cli:
    """The CLI on a migrated database with offer_loop and ping deployed."""
    run = Cli(migrated_url, tmp_path)
    run("deploy", str(FIXTURES / "offer_loop.yaml"), str(FIXTURES / "ping.yaml"))
    return run


def test_deploy_reports_new_and_unchanged_versions(migrated_url: str, tmp_path: Path) -> None:
    cli = Cli(migrated_url, tmp_path)

    first = cli("deploy", str(FIXTURES / "offer_loop.yaml"), str(FIXTURES / "ping.yaml"))
    again = cli.json("deploy", str(FIXTURES / "offer_loop.yaml"))

    assert first.stdout.splitlines() == ["offer_loop version 1: deployed", "ping version 1: deployed"]
    assert again == [{"process": "offer_loop", "version": 1, "deployed": False}]


def test_start_prints_the_id_and_a_second_start_says_already_active(cli: Cli) -> None:
    instance = cli.start("offer_loop", "c1", '{"name": "Acme"}', "2026-03-02T08:00:00Z")

    again = cli("start", "offer_loop", "--key", "c1", "--data", '{"name": "Other"}')
    as_json = cli.json("start", "offer_loop", "--key", "c1")

    assert (
        f"instance {instance} (offer_loop/c1) is already active, in state new; nothing started"
        in again.stdout
    )
    assert (as_json["id"], as_json["created"], as_json["data"]) == (instance, False, {"name": "Acme"})
    assert [r["id"] for r in cli.json("list")] == [instance]


def test_fire_show_history_timers_and_tick_through_the_cli(cli: Cli) -> None:
    instance = cli.start("offer_loop", "c1", '{"name": "Acme"}', "2026-03-02T08:00:00Z")

    fired = cli(
        "fire",
        str(instance),
        "make_offer",
        "--input",
        '{"amount": 500}',
        "--role",
        "sales_rep",
        "--as",
        "anna",
        "--idempotency-key",
        "req-1",
        "--at",
        "2026-03-02T10:00:00+01:00",
    )
    retried = cli("fire", "offer_loop/c1", "make_offer", "--idempotency-key", "req-1")

    assert f"instance {instance}: make_offer: new -> offer_sent" in fired.stdout
    assert "already applied (same idempotency key)" in retried.stdout

    shown, history, timers = (
        json.loads(done.stdout)
        for done in cli.all(
            (("show", "offer_loop/c1", "--json"), 0),
            (("history", str(instance), "--json"), 0),
            (("timers", "--json"), 0),
        )
    )
    assert set(shown) == SHOW_KEYS
    assert (shown["id"], shown["process"], shown["version"], shown["key"]) == (
        instance,
        "offer_loop",
        1,
        "c1",
    )
    assert (shown["state"], shown["status"], shown["queue"], shown["stage"]) == (
        "offer_sent",
        "active",
        "follow_up",
        "offer",
    )
    assert (shown["outcome"], shown["data"]) == (None, {"name": "Acme", "amount": 500, "attempts": 1})

    assert all(set(row) >= HISTORY_KEYS for row in history)
    assert [(r["seq"], r["event"], r["from"], r["to"]) for r in history] == [
        (1, "start", None, "new"),
        (2, "make_offer", "new", "offer_sent"),
    ]
    assert (history[1]["at"], history[1]["actor"], history[1]["source"]) == (
        "2026-03-02T09:00:00+00:00",
        "anna",
        "staff",
    )
    assert history[1]["input"] == {"amount": 500}

    [timer] = timers
    assert set(timer) >= TIMER_KEYS
    assert (timer["instance"], timer["name"], timer["status"]) == (instance, "recontact", "pending")
    assert timer["due_at"] == "2026-03-16T09:00:00+00:00"  # 2 weeks later, 10:00 in Warsaw

    early = cli.json("tick", "--until", "2026-03-16T08:59:59Z")
    on_time = cli.json("tick", "--until", "2026-03-16T09:00:00Z")

    assert early["fired"] == []
    [tick] = on_time["fired"]
    assert (tick["timer"], tick["instance"], tick["name"], tick["outcome"]) == (
        timer["id"],
        instance,
        "recontact",
        "fired",
    )
    assert (tick["from"], tick["to"], tick["due_at"]) == ("offer_sent", "recontact", timer["due_at"])
    assert [r["id"] for r in cli.json("list", "--state", "recontact")] == [instance]
    assert cli.json("history", str(instance))[-1]["at"] == timer["due_at"]


def test_relative_times_are_read_relative_to_now(cli: Cli) -> None:
    cli("start", "ping", "--key", "p1")  # now; its timer is due an hour later

    soon, later, early_tick = cli.all(
        (("timers", "--due-before", "+30m", "--json"), 0),
        (("timers", "--due-before", "+2h", "--json"), 0),
        (("tick", "--until", "+30m", "--json"), 0),
    )
    tick = cli.json("tick", "--until", "+2h")

    assert json.loads(soon.stdout) == []
    assert [t["name"] for t in json.loads(later.stdout)] == ["expire"]
    assert json.loads(early_tick.stdout)["fired"] == []
    assert [(f["name"], f["to"]) for f in tick["fired"]] == [("expire", "expired")]


def test_errors_exit_with_their_code_and_say_what_to_do(cli: Cli, tmp_path: Path) -> None:
    instance = cli.start("offer_loop", "c1", '{"name": "Acme"}', "2026-03-02T08:00:00Z")
    changed = tmp_path / "offer_loop.yaml"
    changed.write_text(
        (FIXTURES / "offer_loop.yaml").read_text(encoding="utf-8").replace("delay: 2w", "delay: 3w"),
        encoding="utf-8",
    )

    unknown, not_allowed, no_role, bad_json, not_object, bad_time, backwards, conflict = cli.all(
        (("fire", "999", "make_offer"), 3),
        (("fire", str(instance), "approve"), 4),
        (("fire", str(instance), "make_offer", "--input", '{"amount": 5}'), 4),
        (("fire", str(instance), "make_offer", "--input", "{amount: 5}"), 2),
        (("fire", str(instance), "make_offer", "--input", "[5]"), 2),
        (("fire", str(instance), "make_offer", "--at", "next tuesday"), 2),
        (("fire", str(instance), "make_offer", "--at", "2026-03-01T00:00:00Z"), 2),
        (("deploy", str(changed)), 5),
    )

    assert "error: instance 999 does not exist; see salesflow list" in unknown.stderr
    assert (
        "event 'approve' is not allowed in state 'new'; allowed: make_offer, disqualify" in not_allowed.stderr
    )
    assert "event 'make_offer' needs role sales_rep" in no_role.stderr
    assert "--input is not valid JSON" in bad_json.stderr
    assert "--input must be a JSON object" in not_object.stderr
    assert "cannot read time 'next tuesday'" in bad_time.stderr
    assert "history never goes backwards" in backwards.stderr
    assert "already deployed with different content; set 'version: 2'" in conflict.stderr
    assert [r["event"] for r in cli.json("history", str(instance))] == ["start"]  # nothing changed


JSON_ERRORS = [
    (("fire", "999", "make_offer"), 3, "not_found", "instance 999 does not exist"),
    (("fire", "offer_loop/c1", "approve"), 4, "rejected", "allowed: make_offer, disqualify"),
    (("fire", "offer_loop/c1", "x", "--input", "{"), 2, "usage", "--input is not valid JSON"),
    (("show", "offer_loop/nobody"), 3, "not_found", "no instance of process 'offer_loop' with key 'nobody'"),
    (("deploy", str(FIXTURES / "no_such_file.yaml")), 2, "usage", "no_such_file.yaml"),
]


def test_json_errors_are_an_error_object_with_code_and_message(cli: Cli) -> None:
    cli.start("offer_loop", "c1", '{"name": "Acme"}', "2026-03-02T08:00:00Z")

    answers = cli.all(*(((*args, "--json"), exit_code) for args, exit_code, _, _ in JSON_ERRORS))

    for done, (args, _, code, fragment) in zip(answers, JSON_ERRORS, strict=True):
        answer = json.loads(done.stdout)
        assert set(answer) == {"error"}, args
        assert set(answer["error"]) == {"code", "message"}, args
        assert answer["error"]["code"] == code, args
        assert fragment in answer["error"]["message"], args
        assert done.stderr == "", args


def test_bulk_start_from_csv_starts_the_good_rows_and_reports_the_others(cli: Cli, tmp_path: Path) -> None:
    csv_file = tmp_path / "clients.csv"
    csv_file.write_text(
        "client,name,employees\n"  # line 1: header
        "k1,Alpha,10\n"  # 2
        "k2,Beta,20\n"  # 3
        "k1,Alpha again,30\n"  # 4: duplicate key
        "k3,Delta,abc\n"  # 5: not a whole number
        "k4,Epsilon,5,extra\n"  # 6: one cell too many
        ",No key,3\n"  # 7: empty key
        "k5,Zeta,\n",  # 8: empty cell = not given
        encoding="utf-8",
    )

    first = cli("start", "ping", "--csv", str(csv_file), "--key-column", "client", expect=4)
    second = cli.json("start", "ping", "--csv", str(csv_file), "--key-column", "client", expect=4)

    lines = first.stdout.splitlines()
    assert lines == [
        "started: 3",
        "already active: 1",
        "  row 4: key 'k1' already has an active instance",
        "rejected: 3",
        "  row 5: column 'employees': 'abc' is not a whole number",
        "  row 6: the row has 1 more cells than the header has columns",
        "  row 7: the key column is empty",
    ]
    assert second["started"] == 0
    assert [(r["row"], r["key"]) for r in second["already_active"]] == [
        (2, "k1"),
        (3, "k2"),
        (4, "k1"),
        (8, "k5"),
    ]
    assert [r["row"] for r in second["rejected"]] == [5, 6, 7]
    started = cli.json("list", "--process", "ping")
    assert [(r["key"], r["data"]) for r in started] == [
        ("k1", {"name": "Alpha", "employees": 10}),
        ("k2", {"name": "Beta", "employees": 20}),
        ("k5", {"name": "Zeta"}),
    ]
    assert len(cli.json("timers")) == 3


def test_bulk_start_of_a_clean_file_exits_zero(cli: Cli, tmp_path: Path) -> None:
    csv_file = tmp_path / "clients.csv"
    csv_file.write_text(
        "client,employees\n" + "".join(f"c{n},{n}\n" for n in range(1, 251)), encoding="utf-8"
    )

    summary = cli.json(
        "start", "ping", "--csv", str(csv_file), "--key-column", "client", "--at", "2026-03-02"
    )

    assert summary == {"started": 250, "already_active": [], "rejected": []}
    assert len(cli.json("list", "--process", "ping")) == 250
    assert {t["due_at"] for t in cli.json("timers")} == {"2026-03-02T01:00:00+00:00"}


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgresql_needs_db_upgrade_first(database_url: str, tmp_path: Path) -> None:
    cli = Cli(database_url, tmp_path)

    refused = cli("list", expect=2)
    upgraded = cli("db", "upgrade")
    again = cli("db", "upgrade")

    assert "is not initialised (or is out of date); run: salesflow db upgrade --db" in refused.stderr
    assert "database upgraded" in upgraded.stdout
    assert "database already up to date" in again.stdout
    assert cli.json("list") == []


def test_a_command_killed_inside_a_step_leaves_every_instance_wholly_old(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    engine.deploy(FIXTURES / "offer_loop.yaml")
    engine.deploy(FIXTURES / "ping.yaml")
    leads = {
        point: engine.start("offer_loop", point, {"name": "Acme"}).instance.id for point in failpoints.POINTS
    }
    ping = engine.start("ping", "p1").instance.id
    before = {ref: _snapshot(engine, ref) for ref in [*leads.values(), ping]}
    commands = [
        (point, ["fire", str(instance), "make_offer", "--input", '{"amount": 5}', "--role", "sales_rep"])
        for point, instance in leads.items()
    ]
    commands.append(("after_timers", ["tick", "--until", "2026-03-03T00:00:00Z"]))

    running = []
    for point, args in commands:
        env = environment(SALESFLOW_FAILPOINTS=f"{point}=crash")
        command = [SALESFLOW, *args, "--db", engine.url]
        running.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
    outputs = [process.communicate(timeout=60) for process in running]

    exit_codes = [process.returncode for process in running]
    assert exit_codes == [137] * len(commands), outputs  # each one died like kill -9, mid-step
    assert {ref: _snapshot(engine, ref) for ref in before} == before
    for instance in leads.values():  # nothing is stuck: the same steps now go through
        engine.fire(instance, "make_offer", {"amount": 5}, roles=["sales_rep"])
    [fired] = engine.tick(until=datetime(2026, 3, 3, tzinfo=UTC)).fired
    assert (fired.instance_id, fired.outcome) == (ping, "fired")


def _snapshot(engine: Engine, ref: int) -> tuple[Any, ...]:
    return engine.get(ref), engine.history(ref), engine.timers(instance=ref, status=None)
