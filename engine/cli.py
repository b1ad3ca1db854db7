"""The ``salesflow`` command line: parses options, calls the Engine, formats the answer.

Exit codes: 0 ok, 1 invalid definition, 2 usage, 3 not found, 4 event rejected, 5 conflict,
6 database unavailable.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.exc import OperationalError

from engine import cli_output as out
from engine import diagram as diagrams
from engine import loader
from engine.clock import SystemClock
from engine.errors import DatabaseUnavailable, SalesflowError, UsageError
from engine.runtime import DEFAULT_DATABASE_URL, Engine
from engine.timeparse import parse_instant

T = TypeVar("T")

app = typer.Typer(
    help="salesflow: sales processes as YAML state machines, with durable instances and timers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database administration.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DbOption = Annotated[
    str | None,
    typer.Option("--db", help=f"Database URL (env SALESFLOW_DATABASE_URL; default {DEFAULT_DATABASE_URL})."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="Logical time of the step (ISO 8601, or +2w relative to now)."),
]


def main() -> None:
    """Console entry point."""
    logging.basicConfig(level=os.environ.get("SALESFLOW_LOG", "WARNING"), format="%(asctime)s %(message)s")
    app()


def _run(as_json: bool, work: Callable[[], T]) -> T:
    """Run a command; our errors become one message and their exit code."""
    try:
        return work()
    except SalesflowError as error:
        out.report_error(error, as_json)
        raise typer.Exit(error.exit_code) from None
    except OperationalError as error:  # server down, unreachable, or a lock that never came
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        unavailable = DatabaseUnavailable(f"the database did not answer ({reason}); nothing was changed")
        out.report_error(unavailable, as_json)
        raise typer.Exit(unavailable.exit_code) from None


def _with_engine(db: str | None, as_json: bool, action: Callable[[Engine], T]) -> T:
    """Open the database, run ``action`` on the engine, close it; errors as for :func:`_run`."""

    def work() -> T:
        with _engine(db) as engine:
            return action(engine)

    return _run(as_json, work)


def _engine(db: str | None) -> Engine:
    return Engine(db or os.environ.get("SALESFLOW_DATABASE_URL") or DEFAULT_DATABASE_URL)


def _time(text: str | None) -> Any:
    return parse_instant(text, SystemClock().now()) if text else None


def _json_arg(text: str | None, what: str) -> dict[str, Any] | None:
    """JSON given inline or as ``@file``; must be an object."""
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {what} file {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise UsageError(f'{what} must be a JSON object such as {{"name": "value"}}')
    return value


# -- definitions ---------------------------------------------------------------------------------
@app.command()
def validate(
    paths: Annotated[list[str], typer.Argument(help="Process files or folders.")],
    as_json: JsonOption = False,
) -> None:
    """Check process definitions; exit 1 if any has errors (warnings are printed, not fatal)."""
    results = _run(as_json, lambda: [loader.check_file(p) for p in loader.expand_paths(paths)])
    if as_json:
        out.emit_json(
            [
                {
                    "file": r.source_name,
                    "valid": r.ok,
                    "errors": [p.as_dict() for p in r.errors],
                    "warnings": [p.as_dict() for p in r.warnings],
                }
                for r in results
            ]
        )
    else:
        for result in results:
            for problem in result.errors + result.warnings:
                out.warn(str(problem))
            if result.ok:
                count = len(result.warnings)
                out.say(f"{result.source_name}: ok ({count} warning{'' if count == 1 else 's'})")
    if any(not r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def diagram(
    path: Annotated[str, typer.Argument(help="A process file.")],
    fmt: Annotated[str, typer.Option("--format", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Print the process as a Mermaid stateDiagram-v2 (or Graphviz with --format dot)."""

    def work() -> str:
        if fmt not in ("mermaid", "dot"):
            raise UsageError(f"unknown format '{fmt}'; use mermaid or dot")
        definition = loader.load_file(path)
        return diagrams.mermaid(definition) if fmt == "mermaid" else diagrams.dot(definition)

    out.say(_run(False, work))


@app.command()
def deploy(
    paths: Annotated[list[str], typer.Argument(help="Process files or folders.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store definition versions; identical content again is a no-op."""

    def work() -> list[dict[str, Any]]:
        files = loader.expand_paths(paths)
        definitions = [loader.load_file(f) for f in files]  # all valid before any is stored
        with _engine(db) as engine:
            results = [engine.deploy(d) for d in definitions]
        return [{"process": r.process, "version": r.version, "deployed": r.created} for r in results]

    results = _run(as_json, work)
    if as_json:
        out.emit_json(results)
        return
    for r in results:
        verb = "deployed" if r["deployed"] else "unchanged (already deployed)"
        out.say(f"{r['process']} version {r['version']}: {verb}")


# -- instances -----------------------------------------------------------------------------------
@app.command()
def start(
    process: Annotated[str, typer.Argument(help="Process id.")],
    key: Annotated[str | None, typer.Option("--key", help="Business key, e.g. the client number.")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Data as JSON, or @file.json.")] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Start one instance per CSV row.")] = None,
    key_column: Annotated[
        str | None, typer.Option("--key-column", help="CSV column holding the key.")
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Definition version (default latest).")
    ] = None,
    at: AtOption = None,
    actor: Annotated[str | None, typer.Option("--as", help="Who is doing this.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start an instance for a key (or one per CSV row with --csv and --key-column)."""
    if csv_file is not None:
        from engine import bulk

        _run(
            as_json,
            lambda: bulk.start_from_csv(
                _engine(db), process, csv_file, key_column, version, _time(at), actor, as_json
            ),
        )
        return
    if key is None:
        _run(
            as_json,
            lambda: (_ for _ in ()).throw(UsageError("give --key KEY (or --csv FILE --key-column COL)")),
        )

    def work() -> Any:
        with _engine(db) as engine:
            return engine.start(
                process, key, _json_arg(data, "--data"), version=version, at=_time(at), actor=actor
            )

    result = _run(as_json, work)
    if as_json:
        out.emit_json({**result.instance.as_dict(), "created": result.created})
    elif result.created:
        out.say(f"started instance {result.instance.id} ({process}/{key}) in state {result.instance.state}")
    else:
        out.say(
            f"instance {result.instance.id} ({process}/{key}) is already active, in state "
            f"{result.instance.state}; nothing started"
        )


@app.command()
def fire(
    instance: Annotated[str, typer.Argument(help="Instance id, or PROCESS/KEY.")],
    event: Annotated[str, typer.Argument(help="Event name.")],
    input: Annotated[str | None, typer.Option("--input", help="Event input as JSON, or @file.json.")] = None,
    actor: Annotated[str | None, typer.Option("--as", help="Who is doing this.")] = None,
    role: Annotated[
        list[str] | None, typer.Option("--role", help="A role the caller has (repeatable).")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Retry-safe key.")] = None,
    at: AtOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send an event to an instance."""

    def work() -> Any:
        with _engine(db) as engine:
            return engine.fire(
                instance,
                event,
                _json_arg(input, "--input"),
                actor=actor,
                roles=role or (),
                idempotency_key=idempotency_key,
                at=_time(at),
            )

    result = _run(as_json, work)
    if as_json:
        out.emit_json(
            {**result.instance.as_dict(), "history": result.entry.as_dict(), "replayed": result.replayed}
        )
        return
    entry = result.entry
    prefix = "already applied (same idempotency key): " if result.replayed else ""
    out.say(f"{prefix}instance {result.instance.id}: {entry.event}: {entry.from_state} -> {entry.to_state}")


@app.command()
def show(
    instance: Annotated[str, typer.Argument()], db: DbOption = None, as_json: JsonOption = False
) -> None:
    """Show one instance."""

    record, allowed, pending = _with_engine(
        db,
        as_json,
        lambda engine: (
            engine.get(instance),
            engine.allowed_events(instance),
            engine.timers(instance=instance),
        ),
    )
    if as_json:
        out.emit_json(record.as_dict())
        return
    rows = [(k, v) for k, v in record.as_dict().items() if k != "data"]
    rows.append(("data", json.dumps(record.data, ensure_ascii=False)))
    rows.append(("allowed events", ", ".join(allowed) or "-"))
    rows.append(("pending timers", ", ".join(f"{t.name} at {out.when(t.due_at)}" for t in pending) or "-"))
    out.table(f"instance {record.id}", ["field", "value"], rows)


@app.command()
def history(
    instance: Annotated[str, typer.Argument()], db: DbOption = None, as_json: JsonOption = False
) -> None:
    """Show an instance's history, oldest first."""

    entries = _with_engine(db, as_json, lambda engine: engine.history(instance))
    if as_json:
        out.emit_json([e.as_dict() for e in entries])
        return
    out.table(
        f"history of {instance}",
        ["seq", "at", "source", "actor", "event", "from", "to", "input / note"],
        [
            (
                e.seq,
                out.when(e.at),
                e.source,
                e.actor,
                e.event,
                e.from_state,
                e.to_state,
                e.note or (json.dumps(e.input, ensure_ascii=False) if e.input else ""),
            )
            for e in entries
        ],
    )


@app.command("list")
def list_(
    process: Annotated[str | None, typer.Option("--process")] = None,
    state: Annotated[str | None, typer.Option("--state")] = None,
    queue: Annotated[str | None, typer.Option("--queue")] = None,
    key: Annotated[str | None, typer.Option("--key")] = None,
    closed: Annotated[bool, typer.Option("--closed", help="Closed instances instead of active.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List instances (active unless --closed)."""

    records = _with_engine(
        db,
        as_json,
        lambda engine: engine.list_instances(
            process=process, state=state, queue=queue, key=key, closed=closed
        ),
    )
    if as_json:
        out.emit_json([r.as_dict() for r in records])
        return
    out.table(
        None,
        ["id", "process", "key", "state", "queue", "stage", "outcome", "updated"],
        [
            (
                r.id,
                f"{r.process} v{r.version}",
                r.key,
                r.state,
                r.queue,
                r.stage,
                r.outcome,
                out.when(r.updated_at),
            )
            for r in records
        ],
    )


@app.command()
def timers(
    due_before: Annotated[
        str | None, typer.Option("--due-before", help="Only timers due by this time.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List pending timers in due order."""

    records = _with_engine(db, as_json, lambda engine: engine.timers(due_before=_time(due_before)))
    if as_json:
        out.emit_json([t.as_dict() for t in records])
        return
    out.table(
        None,
        ["id", "instance", "state", "name", "due at", "status"],
        [(t.id, t.instance_id, t.state, t.name, out.when(t.due_at), t.status) for t in records],
    )


# -- time ----------------------------------------------------------------------------------------
@app.command()
def tick(
    until: Annotated[
        str | None, typer.Option("--until", help="Fire timers due by this time (default now).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fire every pending timer due by --until, in due order."""

    report = _with_engine(db, as_json, lambda engine: engine.tick(_time(until)))
    if as_json:
        out.emit_json(
            {
                "until": report.until,
                "fired": [
                    {
                        "timer": f.timer.id,
                        "instance": f.instance_id,
                        "name": f.timer.name,
                        "due_at": f.timer.due_at,
                        "outcome": f.outcome,
                        "from": f.from_state,
                        "to": f.to_state,
                        "lateness_seconds": f.lateness_seconds,
                    }
                    for f in report.fired
                ],
            }
        )
        return
    for f in report.fired:
        out.say(
            f"{out.when(f.timer.due_at)}  instance {f.instance_id}: {f.timer.name} {f.outcome}: "
            f"{f.from_state} -> {f.to_state}"
        )
    out.say(f"{len(report.fired)} timers handled up to {out.when(report.until)}")


@app.command()
def worker(
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls.")] = 5.0,
    db: DbOption = None,
) -> None:
    """Run the timer worker until SIGINT/SIGTERM (any number may run against one database)."""
    from engine import worker as worker_module

    logging.getLogger().setLevel(logging.INFO)
    # Their per-run chatter would drown the timer lines; "skipped: maximum number of running
    # instances reached" only means a long tick is still running, which is expected.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _run(False, lambda: worker_module.run(worker_module.connect(lambda: _engine(db)), interval))


@app.command()
def demo(
    db: Annotated[
        str, typer.Option("--db", help="Where the demo keeps its data.")
    ] = "sqlite:///salesflow-demo.db",
    clients: Annotated[int, typer.Option("--clients", help="How many sample clients.")] = 40,
) -> None:
    """Deploy private_banking, enroll sample clients and play a few weeks forward."""
    from engine import demo as demo_module

    _run(False, lambda: demo_module.run(db, clients))


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or upgrade the database schema (needed once for PostgreSQL)."""
    from storage import database

    def work() -> bool:
        engine = database.create_db_engine(
            db or os.environ.get("SALESFLOW_DATABASE_URL") or DEFAULT_DATABASE_URL
        )
        try:
            return database.migrate(engine)
        finally:
            engine.dispose()

    changed = _run(False, work)
    out.say("database upgraded" if changed else "database already up to date")
