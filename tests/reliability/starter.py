"""Start the same clients from many threads: ``python -m tests.reliability.starter URL --threads N
--keys K --seed S``. Prints ``ready``, waits for a line on stdin (so several processes begin
together), then every thread starts every key (in its own shuffled order) and the process prints
one JSON line: how many starts created an instance, found one already active, or failed (and why).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
from collections import Counter

from engine.runtime import Engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    engines = [Engine(args.url) for _ in range(args.threads)]  # one pool per thread: separate users
    outcome: Counter[str] = Counter()
    created: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(args.threads)

    def run(n: int) -> None:
        keys = [f"K{k:04d}" for k in range(args.keys)]
        random.Random(args.seed * 1000 + n).shuffle(keys)
        barrier.wait()
        for key in keys:
            try:
                result = engines[n].start("harness", key, {})
                with lock:
                    outcome["created" if result.created else "existing"] += 1
                    if result.created:
                        created.append(key)
            except Exception as exc:  # reported, and the test fails on any
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    print("ready", flush=True)
    sys.stdin.readline()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.close()
    print(json.dumps({**outcome, "created_keys": created, "errors": errors[:20]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
