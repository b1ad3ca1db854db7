"""Workload 2, bulk enrollment: N clients from a CSV file into the bank flow.

- ``engine``: the path ``salesflow start private_banking --csv FILE --key-column client_no``
  takes (``engine.bulk.read_rows`` converts the cells by the data schema, ``Engine.start_many``
  validates each row, skips keys that are already active and writes instances and history in
  transactions of 1,000 rows);
- ``raw``: the same CSV read with ``csv.DictReader`` and the same instance and history rows
  written by batched SQLAlchemy Core inserts of 1,000 rows per transaction, with nothing checked.

    python -m benchmarks.bulk --db sqlite --n 100000 --reps 3
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from benchmarks import common, raw

VARIANTS = ("engine", "raw")
LABELS = {"engine": "salesflow start_many (CSV path)", "raw": "raw batched Core insert"}
CHUNK = 1000


def write_csv(path: Path, n: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["client_no", "client_name", "segment", "batch"])
        for i in range(n):
            writer.writerow(
                [f"C{i:07d}", f"Client {i}", ("affluent", "private", "premium")[i % 3], "2026-W10"]
            )


def engine_run(url: str, csv_path: str, n: int) -> dict[str, Any]:
    from engine import Engine, ManualClock, bulk
    from engine.runtime import BulkReport

    with Engine(url, ManualClock(common.T0)) as engine:
        engine.deploy(common.BANK_YAML)
        definition = engine.definition("private_banking")
        start, cpu = time.perf_counter(), time.process_time()
        report = BulkReport()
        rows = bulk.read_rows(Path(csv_path), "client_no", dict(definition.data_schema or {}), report)
        engine.start_many("private_banking", rows, version=definition.version, actor="import", report=report)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if report.started != n or report.rejected or report.already_active:
        raise RuntimeError(f"engine started {report.started} of {n}: {report.rejected[:3]}")
    return {"elapsed": elapsed, "cpu": cpu}


def raw_run(url: str, csv_path: str, n: int) -> dict[str, Any]:
    import engine  # noqa: F401  (engine first: importing storage.tables first is a circular import)
    from storage.tables import history, instances

    db = common.raw_engine(url)
    insert_instances = insert(instances).returning(instances.c.id, sort_by_parameter_order=True)
    insert_history = insert(history)
    now = common.T0
    start, cpu = time.perf_counter(), time.process_time()
    started = 0
    with Path(csv_path).open(newline="", encoding="utf-8") as handle:
        chunk: list[dict[str, Any]] = []
        for record in csv.DictReader(handle):
            key = record.pop("client_no")
            chunk.append(raw.new_instance_row(key, record, now))
            if len(chunk) == CHUNK:
                started += _write(db, insert_instances, insert_history, chunk, now)
                chunk = []
        if chunk:
            started += _write(db, insert_instances, insert_history, chunk, now)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    db.dispose()
    if started != n:
        raise RuntimeError(f"raw inserted {started} of {n}")
    return {"elapsed": elapsed, "cpu": cpu}


def _write(db: Any, insert_instances: Any, insert_history: Any, chunk: list[dict[str, Any]], now: Any) -> int:
    with db.begin() as conn:
        ids = list(conn.execute(insert_instances, chunk).scalars())
        conn.execute(
            insert_history,
            [
                {
                    "instance_id": instance_id,
                    "seq": 1,
                    "at": now,
                    "recorded_at": now,
                    "actor": "import",
                    "source": "import",
                    "event": "start",
                    "from_state": None,
                    "to_state": "mailing",
                    "input": None,
                    "data_changes": row["data"],
                    "definition_version": 1,
                    "note": None,
                    "idempotency_key": None,
                }
                for instance_id, row in zip(ids, chunk, strict=True)
            ],
        )
    return len(chunk)


def verify(url: str, n: int) -> None:
    import engine  # noqa: F401
    from storage.tables import history, instances

    db = common.raw_engine(url)
    try:
        with db.connect() as conn:
            count = conn.execute(select(func.count()).select_from(instances)).scalar_one()
            steps = conn.execute(select(func.count()).select_from(history)).scalar_one()
    finally:
        db.dispose()
    if count != n or steps != n:
        raise RuntimeError(f"{count} instances and {steps} history rows for {n} clients")


def run(backends: list[str], n: int, reps: int) -> str:
    out = []
    with tempfile.TemporaryDirectory(prefix="salesflow-bench-csv-") as directory:
        csv_path = Path(directory) / "clients.csv"
        write_csv(csv_path, n)
        for backend in backends:
            series = {variant: common.Series(variant) for variant in VARIANTS}
            for rep, variant in common.interleaved(reps, VARIANTS):
                with common.fresh_database(backend) as url:
                    result = common.run_child(
                        "benchmarks.bulk", f"{variant}_run", url=url, csv_path=str(csv_path), n=n
                    )
                    verify(url, n)
                rate = n / result["elapsed"]
                series[variant].add(rate, result["peak_rss_mb"], cpu=result["cpu"])
                common.log(f"bulk {backend} rep {rep + 1} {variant}: {rate:,.0f} clients/s")
            out.append(_report(backend, n, reps, series))
    return "\n".join(out)


def _report(backend: str, n: int, reps: int, series: dict[str, common.Series]) -> str:
    engine, raw = series["engine"], series["raw"]
    rows = []
    for variant in VARIANTS:
        s = series[variant]
        cpu = sorted(e["cpu"] for e in s.extra)[len(s.extra) // 2]
        rows.append(
            [LABELS[variant], f"{s.median:,.0f}", s.spread(), f"{n / s.median:.1f}", f"{cpu:.1f}", s.rss()]
        )
    table = common.markdown_table(
        ["variant", "clients/s (median)", "min-max", "seconds", "CPU seconds", "peak RSS MB"], rows
    )
    ratio = engine.median / raw.median
    targets = common.markdown_table(
        ["target", "measured (per-rep range)", "result"],
        [
            [
                "engine >= 0.5x the raw batched insert",
                common.ratio_cell(engine, raw),
                common.verdict(ratio >= 0.5),
            ]
        ],
    )
    note = f"{n:,} clients from one CSV file, {reps} interleaved repetitions, a fresh database each."
    return common.section(f"Bulk enrollment ({backend})", f"{note}\n\n{table}\n\n{targets}")


def main(argv: list[str] | None = None) -> None:
    args = common.parser("Workload 2: bulk enrollment from CSV", n=100_000).parse_args(argv)
    print(run(common.backends(args.db), args.n, args.reps))


if __name__ == "__main__":
    main()
