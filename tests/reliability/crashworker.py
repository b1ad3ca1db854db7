"""A worker that crashes inside a step: ``python -m tests.reliability.crashworker URL --after N --point P``.

It fires ``N`` due timers normally, then arms the failpoint ``P`` with ``crash`` and goes on: the
next step dies there with ``os._exit(137)``, exactly like ``kill -9`` at that line, leaving its
transaction open for the database to roll back. Exits 0 when nothing was left to fire.
"""

from __future__ import annotations

import argparse

from engine import failpoints
from engine.runtime import Engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--after", type=int, default=0, help="timers to fire before arming the crash")
    parser.add_argument("--point", choices=failpoints.POINTS, required=True)
    args = parser.parse_args(argv)
    with Engine(args.url) as engine:
        if args.after:
            engine.tick(limit=args.after)
        failpoints.arm(args.point, "crash")
        engine.tick(limit=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
