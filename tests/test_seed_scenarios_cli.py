"""The seed scenarios end to end through the real ``salesflow`` command, one subprocess per command.

Each test gets a fresh database (SQLite, and PostgreSQL when configured), upgrades it with
``salesflow db upgrade``, deploys the shipped process and plays the scenario. Time moves only with
``--at`` and ``tick --until``. Commands that touch different instances (several telemarketers at
work at once) run concurrently, to keep the suite fast; each command is still its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SALESFLOW = Path(sys.executable).with_name("salesflow")


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        assert self.code == 0, f"salesflow {' '.join(self.args)} exited {self.code}: {self.stderr}"
        return json.loads(self.stdout)


class Cli:
    """Runs ``salesflow ... --db URL`` in subprocesses."""

    def __init__(self, database_url: str) -> None:
        self.db = database_url
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("SALESFLOW_DATABASE_URL", "SALESFLOW_LOG")
        }

    def __call__(self, *args: str) -> Result:
        done = subprocess.run(
            [str(SALESFLOW), *args, "--db", self.db],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=self.env,
            timeout=120,
        )
        return Result(args, done.returncode, done.stdout, done.stderr)

    def json(self, *args: str) -> Any:
        return self(*args, "--json").json

    def all(self, *commands: tuple[str, ...]) -> list[Result]:
        """Independent commands, run at the same time; results in the order given."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda command: self(*command), commands))

    def all_json(self, *commands: tuple[str, ...]) -> list[Any]:
        return [result.json for result in self.all(*((*command, "--json") for command in commands))]


@pytest.fixture
def cli(database_url: str) -> Cli:
    """The CLI on a fresh database, upgraded by ``salesflow db upgrade`` as an operator would."""
    run = Cli(database_url)
    upgraded = run("db", "upgrade")
    assert (upgraded.code, upgraded.stdout.strip()) == (0, "database upgraded"), upgraded.stderr
    return run


def instant(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, text
    return parsed


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def fire(
    ref: str, event: str, at: str, *, role: str | None = None, actor: str, input: dict[str, Any] | None = None
) -> tuple[str, ...]:
    """The arguments of ``salesflow fire``."""
    args = ("fire", ref, event, "--as", actor, "--at", at)
    args += ("--role", role) if role else ()
    return args + (("--input", json.dumps(input, ensure_ascii=False)) if input is not None else ())


def deploy(cli: Cli, process: str) -> None:
    assert cli.json("deploy", f"processes/{process}.yaml") == [
        {"process": process, "version": 1, "deployed": True}
    ]


def rows(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(h["event"], h["source"], h["actor"], h["from"], h["to"]) for h in history]


def fired(tick: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (f["instance"], f["name"], f["outcome"], f["from"], f["to"], instant(f["due_at"]))
        for f in tick["fired"]
    ]


# ---------------------------------------------------------------- the bank (seed 000)


def test_bank_weekly_batch_mailing_call_and_advisor_meeting(cli: Cli, tmp_path: Path) -> None:
    deploy(cli, "private_banking")
    batch = tmp_path / "batch_2026_w10.csv"
    batch.write_text(
        "client_no,client_name,segment,batch\n"
        "C001,Jan Kowalski,affluent,2026-W10\n"
        "C002,Anna Nowak,affluent,2026-W10\n"
        "C003,Piotr Wiśniewski,affluent,2026-W10\n"
        "C004,Maria Zielińska,affluent,2026-W10\n",
        encoding="utf-8",
    )
    imported = cli.json(
        "start", "private_banking", "--csv", str(batch), "--key-column", "client_no",
        "--as", "crm_import", "--at", "2026-02-27T12:00:00+01:00",
    )  # fmt: skip
    assert imported == {"started": 4, "already_active": [], "rejected": []}
    keys = [f"private_banking/C00{n}" for n in range(1, 5)]

    # Monday: the weekly batch is posted.
    monday = "2026-03-02T09:00:00+01:00"
    mailed = cli.all_json(
        *(
            fire(key, "mailing_sent", monday, actor="back_office", input={"mailed_on": "2026-03-02"})
            for key in keys
        )
    )
    assert [(m["key"], m["state"], m["queue"], m["data"]["call_attempts"]) for m in mailed] == [
        (f"C00{n}", "awaiting_call", "telemarketing", 0) for n in range(1, 5)
    ]

    # Tuesday: the telemarketer reaches three clients and books advisor meetings; C002 is not called.
    def book(ref: str, at: str, meeting_at: str, advisor: str) -> tuple[str, ...]:
        meeting = {"meeting_at": meeting_at, "advisor": advisor}
        return (*fire(ref, "meeting_booked", at, role="telemarketer", actor="ola", input=meeting), "--json")

    booked = cli.all(
        book(keys[0], "2026-03-03T10:00:00+01:00", "2026-03-05T10:00:00+01:00", "Marek Lis"),
        book(keys[2], "2026-03-03T10:20:00+01:00", "2026-03-05T14:00:00+01:00", "Marek Lis"),
        book(keys[3], "2026-03-03T10:40:00+01:00", "2026-03-06T10:00:00+01:00", "Ewa Król"),
    )
    assert [(b.json["state"], b.json["queue"]) for b in booked] == [
        ("meeting_booked", "advisor_meetings")
    ] * 3
    assert booked[0].json["data"]["meeting_at"] == "2026-03-05T10:00:00+01:00"

    # Up to the first meeting's hour: the day-before reminders fire; nobody's call is overdue yet.
    # Meanwhile the telemarketer tries to record C001's sale: only an advisor may.
    meeting_hour = "2026-03-05T10:00:00+01:00"
    sale = {"product": "private_banking_gold"}
    ticked, wrong_role = cli.all(
        ("tick", "--until", meeting_hour, "--json"),
        fire(keys[0], "bought", meeting_hour, role="telemarketer", actor="ola", input=sale),
    )
    assert wrong_role.code == 4
    assert wrong_role.stderr == "error: event 'bought' needs role advisor; the caller has: telemarketer\n"
    reminder = ("remind_client", "fired", "meeting_booked", "meeting_booked")
    assert fired(ticked.json) == [
        (mailed[0]["id"], *reminder, utc(2026, 3, 4, 9, 0)),
        (mailed[2]["id"], *reminder, utc(2026, 3, 4, 13, 0)),
        (mailed[3]["id"], *reminder, utc(2026, 3, 5, 9, 0)),
    ]

    # The meetings: C001 buys at the booked hour, C003 will buy within 12 months, C004 refuses.
    bought, later, refused = cli.all_json(
        fire(keys[0], "bought", meeting_hour, role="advisor", actor="Marek Lis", input=sale),
        fire(keys[2], "buy_within_12_months", "2026-03-05T15:00:00+01:00", role="advisor", actor="Marek Lis",
             input={"note": "after selling his flat"}),
        fire(keys[3], "refused", "2026-03-06T11:00:00+01:00", role="advisor", actor="Ewa Król",
             input={"reason": "stays with her bank"}),
    )  # fmt: skip
    assert (bought["state"], bought["status"], bought["outcome"]) == ("bought", "closed", "won")
    assert bought["data"]["product"] == "private_banking_gold"
    assert (later["state"], later["status"], later["queue"]) == ("follow_up", "active", "follow_up_12_months")
    assert (refused["state"], refused["status"], refused["outcome"]) == ("refused", "closed", "lost")

    # The 7-day mark of the letter (Monday 9 March, 09:00 in Warsaw): only C002's call is overdue.
    overdue_at = utc(2026, 3, 9, 8, 0)
    tick = cli.json("tick", "--until", "2026-03-09T09:00:00+01:00")
    assert fired(tick) == [
        (mailed[1]["id"], "call_overdue", "fired", "awaiting_call", "call_overdue", overdue_at)
    ]

    shown, history_won, history_overdue, overdue_list, closed_list, pending = cli.all_json(
        ("show", keys[1]),
        ("history", keys[0]),
        ("history", keys[1]),
        ("list", "--state", "call_overdue"),
        ("list", "--closed", "--process", "private_banking"),
        ("timers",),
    )
    assert (shown["key"], shown["state"], shown["queue"], shown["status"]) == (
        "C002", "call_overdue", "telemarketing_overdue", "active",
    )  # fmt: skip
    assert shown["data"] == {
        "client_name": "Anna Nowak",
        "segment": "affluent",
        "batch": "2026-W10",
        "mailed_on": "2026-03-02",
        "call_attempts": 0,
    }
    assert rows(history_won) == [
        ("start", "import", "crm_import", None, "mailing"),
        ("mailing_sent", "staff", "back_office", "mailing", "awaiting_call"),
        ("meeting_booked", "staff", "ola", "awaiting_call", "meeting_booked"),
        ("remind_client", "timer", "timer", "meeting_booked", "meeting_booked"),
        ("bought", "staff", "Marek Lis", "meeting_booked", "bought"),
    ]
    assert [instant(h["at"]) for h in history_won] == [
        utc(2026, 2, 27, 11, 0),
        utc(2026, 3, 2, 8, 0),
        utc(2026, 3, 3, 9, 0),
        utc(2026, 3, 4, 9, 0),  # the reminder row is dated at its due instant
        utc(2026, 3, 5, 9, 0),
    ]
    assert history_won[2]["input"] == {"meeting_at": "2026-03-05T10:00:00+01:00", "advisor": "Marek Lis"}
    assert rows(history_overdue) == [
        ("start", "import", "crm_import", None, "mailing"),
        ("mailing_sent", "staff", "back_office", "mailing", "awaiting_call"),
        ("call_overdue", "timer", "timer", "awaiting_call", "call_overdue"),
    ]
    assert instant(history_overdue[-1]["at"]) == overdue_at
    assert [i["key"] for i in overdue_list] == ["C002"]
    assert [(i["key"], i["state"], i["outcome"]) for i in closed_list] == [
        ("C001", "bought", "won"),
        ("C004", "refused", "lost"),
    ]
    # What is still planned: C002 given up three weeks after going overdue (09:00 Warsaw, now
    # summer time), C003 called again 11 months after the meeting (15:00 Warsaw).
    assert [(t["instance"], t["name"], t["state"], instant(t["due_at"])) for t in pending] == [
        (mailed[1]["id"], "given_up", "call_overdue", utc(2026, 3, 30, 7, 0)),
        (mailed[2]["id"], "follow_up_due", "follow_up", utc(2027, 2, 5, 14, 0)),
    ]


# ---------------------------------------------------------------- cross-selling (seed 004)


def test_cross_sell_rejection_returns_in_two_weeks_with_another_product(cli: Cli) -> None:
    deploy(cli, "cross_sell")
    products = ["loan_protection", "life", "unemployment", "accident", "home"]
    anna, bela = "cross_sell/HU-1001", "cross_sell/HU-1002"
    started = cli.all_json(
        ("start", "cross_sell", "--key", "HU-1001", "--as", "eva", "--at", "2026-03-16T09:00:00+01:00",
         "--data", json.dumps({"client_name": "Kovács Anna", "products": products})),
        ("start", "cross_sell", "--key", "HU-1002", "--as", "eva", "--at", "2026-03-16T09:00:00+01:00",
         "--data", json.dumps({"client_name": "Szabó Béla", "products": ["home", "life"]})),
    )  # fmt: skip
    assert [(s["state"], s["queue"], s["created"]) for s in started] == [
        ("to_offer", "adviser_offers", True)
    ] * 2

    offered = cli.all_json(
        fire(anna, "offer_made", "2026-03-16T10:00:00+01:00", role="adviser", actor="eva",
             input={"product": "loan_protection"}),
        fire(bela, "offer_made", "2026-03-16T10:30:00+01:00", role="adviser", actor="eva",
             input={"product": "home", "variant": "premium"}),
    )  # fmt: skip
    assert [(o["state"], o["data"]["offered"], o["data"]["rounds"]) for o in offered] == [
        ("offered", ["loan_protection"], 1),
        ("offered", ["home"], 1),
    ]
    rejected, accepted = cli.all_json(
        fire(anna, "rejected", "2026-03-17T10:00:00+01:00", role="adviser", actor="eva",
             input={"reason": "too expensive"}),
        fire(bela, "accepted", "2026-03-17T11:00:00+01:00", role="adviser", actor="eva"),
    )  # fmt: skip
    assert (rejected["state"], rejected["queue"], rejected["data"]["suggested_product"]) == (
        "waiting",
        None,
        "life",
    )
    assert (accepted["state"], accepted["queue"], accepted["stage"]) == (
        "contract_preparation", "back_office_contracts", "contract",
    )  # fmt: skip

    # Two weeks later at 10:00 in Budapest (summer time since 29 March): the case is back.
    recontact = utc(2026, 3, 31, 8, 0)
    assert fired(cli.json("tick", "--until", "2026-03-31T12:00:00+02:00")) == [
        (rejected["id"], "recontact", "fired", "waiting", "to_offer", recontact)
    ]

    # The same product again is refused; the case is untouched. The contract goes out meanwhile.
    noon = "2026-03-31T12:00:00+02:00"
    again, sent, shown, history = cli.all(
        fire(anna, "offer_made", noon, role="adviser", actor="eva", input={"product": "loan_protection"}),
        (*fire(bela, "contract_sent", noon, role="back_office", actor="zsofi",
               input={"contract_number": "HOME-2026-0042"}), "--json"),
        ("show", anna, "--json"),
        ("history", anna, "--json"),
    )  # fmt: skip
    assert again.code == 4
    assert again.stdout == ""
    assert again.stderr == (
        "error: event 'offer_made' was refused: "
        "this product was already offered to the client; offer another one\n"
    )
    assert (shown.json["state"], shown.json["queue"], shown.json["data"]["suggested_product"]) == (
        "to_offer", "adviser_offers", "life",
    )  # fmt: skip
    assert (shown.json["data"]["offered"], shown.json["data"]["rounds"]) == (["loan_protection"], 1)
    assert (sent.json["state"], sent.json["queue"], sent.json["data"]["contract_number"]) == (
        "contract_sent", "awaiting_signature", "HOME-2026-0042",
    )  # fmt: skip

    # The history before the new offer: the refused offer left no trace; the timer row is dated
    # at its due instant.
    assert rows(history.json) == [
        ("start", "staff", "eva", None, "to_offer"),
        ("offer_made", "staff", "eva", "to_offer", "offered"),
        ("rejected", "staff", "eva", "offered", "waiting"),
        ("recontact", "timer", "timer", "waiting", "to_offer"),
    ]
    assert instant(history.json[3]["at"]) == recontact
    assert history.json[2]["input"] == {"reason": "too expensive"}

    other, signed = cli.all_json(
        fire(anna, "offer_made", "2026-03-31T12:05:00+02:00", role="adviser", actor="eva",
             input={"product": "life"}),
        fire(bela, "signed", "2026-04-02T16:00:00+02:00", role="back_office", actor="zsofi",
             input={"signed_on": "2026-04-02"}),
    )  # fmt: skip
    assert (other["state"], other["data"]["offered"], other["data"]["rounds"]) == (
        "offered", ["loan_protection", "life"], 2,
    )  # fmt: skip
    assert (signed["state"], signed["status"], signed["outcome"], signed["data"]["signed_on"]) == (
        "signed", "closed", "won", "2026-04-02",
    )  # fmt: skip


# ---------------------------------------------------------------- contract renewal (seed 004)


def test_renewal_comes_due_30_days_before_contract_end(cli: Cli) -> None:
    deploy(cli, "contract_renewal")
    data = {
        "client_name": "Nagy Péter",
        "contract_number": "KGFB-2291",
        "product": "motor_insurance",
        "contract_end": "2026-12-31",
    }
    started = cli.json(
        "start", "contract_renewal", "--key", "KGFB-2291", "--data", json.dumps(data), "--as", "eva",
        "--at", "2026-09-01T10:00:00+02:00",
    )  # fmt: skip
    assert (started["state"], started["stage"], started["queue"], started["data"]) == (
        "active_contract", "in_force", None, data,
    )  # fmt: skip

    # 1 December 2026 at 00:00 in Budapest (CET, +01:00).
    due = utc(2026, 11, 30, 23, 0)
    pending, early = cli.all_json(("timers",), ("tick", "--until", "2026-11-30T22:59:59Z"))
    assert [(t["instance"], t["name"], instant(t["due_at"])) for t in pending] == [
        (started["id"], "renewal_window_opens", due)
    ]
    assert early["fired"] == []
    assert instant(early["until"]) == utc(2026, 11, 30, 22, 59, 59)

    tick = cli.json("tick", "--until", "2026-12-01T00:00:00+01:00")

    assert fired(tick) == [
        (started["id"], "renewal_window_opens", "fired", "active_contract", "renewal_due", due)
    ]
    shown, history, pending = cli.all_json(
        ("show", "contract_renewal/KGFB-2291"), ("history", "contract_renewal/KGFB-2291"), ("timers",)
    )
    assert (shown["state"], shown["queue"], shown["stage"], shown["data"]["offers"]) == (
        "renewal_due", "adviser_renewals", "renewal_contact", 0,
    )  # fmt: skip
    assert rows(history)[-1] == ("renewal_window_opens", "timer", "timer", "active_contract", "renewal_due")
    assert instant(history[-1]["at"]) == due
    # The contract has expired when 1 January starts in Budapest, unless renewed.
    assert [(t["name"], instant(t["due_at"])) for t in pending] == [
        ("contract_ended", utc(2026, 12, 31, 23, 0))
    ]
