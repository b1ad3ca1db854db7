"""Run every benchmark on SQLite and PostgreSQL and write one Markdown report.

    python -m benchmarks                      # all six workloads, about 20-25 minutes on 2 cores
    python -m benchmarks --only lifecycle,bulk
    python -m benchmarks --out /tmp/report.md --drain-n 100000
    python -m benchmarks --cleanup            # drop benchmark schemas left by interrupted runs

The report (default ``benchmarks/results/latest.md``) starts with the machine, the versions and the
exact command, then one section per workload; ``benchmarks/RESULTS.md`` is written from it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from benchmarks import bulk, common, drain, latency, lifecycle, scale

WORKLOADS = ("lifecycle", "bulk", "drain", "scale", "latency")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.md"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=(*common.BACKENDS, "both"), default="both")
    ap.add_argument(
        "--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {', '.join(WORKLOADS)}"
    )
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--lifecycle-n", type=int, default=1000, help="clients in the lifecycle (default 1,000)")
    ap.add_argument("--bulk-n", type=int, default=100_000, help="clients in the CSV (default 100,000)")
    ap.add_argument("--drain-n", type=int, default=10_000, help="due timers to drain (default 10,000)")
    ap.add_argument(
        "--small", type=int, default=100_000, help="clients stored, smaller size (default 100,000)"
    )
    ap.add_argument(
        "--large", type=int, default=1_000_000, help="clients stored, larger size (default 1,000,000)"
    )
    ap.add_argument(
        "--window", type=float, default=40.0, help="latency: seconds of due timers per repetition"
    )
    ap.add_argument("--rate", type=float, default=5.0, help="latency: timers due per second")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report file (default {DEFAULT_OUT})")
    ap.add_argument("--cleanup", action="store_true", help="only drop leftover benchmark schemas, then exit")
    args = ap.parse_args(argv)

    if args.cleanup or "postgres" in common.backends(args.db):
        dropped = common.drop_stale_schemas()
        if dropped:
            common.log(f"dropped {dropped} leftover benchmark schemas")
        if args.cleanup:
            return
    chosen = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    backends = common.backends(args.db)
    started = time.time()
    command = shlex.join(["python", "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])])
    header = [
        "# salesflow benchmark report",
        "",
        common.environment(),
        f"- command: `{command}`",
        "",
    ]
    sections: list[str] = []
    runners = {
        "lifecycle": lambda: lifecycle.run(backends, args.lifecycle_n, args.reps),
        "bulk": lambda: bulk.run(backends, args.bulk_n, args.reps),
        "drain": lambda: drain.run(backends, args.drain_n, args.reps),
        "scale": lambda: scale.run(backends, (args.small, args.large), args.reps, 200, 6.0),
        "latency": lambda: latency.run(backends, args.window, args.rate, args.reps),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for workload in WORKLOADS:
        if workload not in chosen:
            continue
        begun = time.time()
        sections.append(runners[workload]())
        sections[-1] += f"\n_{workload}: {time.time() - begun:.0f} s_\n"
        args.out.write_text("\n".join([*header, *sections]))  # partial results survive an interruption
        print(sections[-1], flush=True)
    footer = f"\nTotal: {(time.time() - started) / 60:.1f} minutes.\n"
    args.out.write_text("\n".join([*header, *sections, footer]))
    common.log(f"report written to {args.out}{footer.rstrip()}")


if __name__ == "__main__":
    main()
