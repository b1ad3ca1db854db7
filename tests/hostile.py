"""Hostile process files, checked in a child process: ``python tests/hostile.py CASE``.

Builds the input for CASE in memory, validates it with ``engine.loader.check_text`` under an
alarm (5 seconds unless ``DEADLINES`` says otherwise; SIGALRM ends the process if validation takes
longer, so a hang shows up as a non-zero return code, not as a stuck test run), and prints:
``{"bytes": N, "definition": false, "errors": ["LINE:COL: PATH: message", ...]}``.
A crash (stack overflow, MemoryError) also shows up as a non-zero return code.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
from collections.abc import Callable

from engine.loader import check_text

DEADLINE_SECONDS = 5
# 50,000 values go through PyYAML's pure-Python scanner (about 1 s) before the count cap stops them.
DEADLINES = {"many_items": 10}
MINIMAL_TAIL = "initial: new\nstates:\n  new:\n    on:\n      won: done\n  done:\n    final: true\n"


def billion_laughs() -> str:
    """The classic alias bomb: 9 levels of 9 references expand to 9**9 (387 million) strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    for previous, name in itertools.pairwise(names):
        refs = ",".join([f"*{previous}"] * 9)
        lines.append(f"{name}: &{name} [{refs}]")
    return "\n".join(lines) + "\n"


def nested_lists(depth: int) -> Callable[[], str]:
    return lambda: "process: deep\ndata: " + "[" * depth + "]" * depth + "\n"


def nested_flow_mappings(depth: int) -> Callable[[], str]:
    return lambda: "process: deep\ndata: " + "{a: " * depth + "1" + "}" * depth + "\n"


def nested_block_mappings(depth: int) -> Callable[[], str]:
    return lambda: "process: deep\ndata:\n" + "".join("  " * (i + 1) + "a:\n" for i in range(depth))


def two_megabytes() -> str:
    head = "process: big\nversion: 1\ndescription: "
    return head + "x" * (2 * 1024 * 1024 - len(head) - 1) + "\n"


def many_items() -> str:
    return "process: many\nversion: 1\ndata: [" + "0," * 300_000 + "0]\n"


def long_expression() -> str:
    condition = "data.amount + " * 713 + "data.amount > 1000"  # 14 * 713 + 18 = 10,000 characters
    return (
        "process: long\nversion: 1\ninitial: new\nstates:\n  new:\n    on:\n      won:\n"
        f'        to: done\n        when: "{condition}"\n  done:\n    final: true\n'
    )


def deep_expression() -> str:
    condition = "(" * 900 + "true" + ")" * 900
    return (
        "process: deep\nversion: 1\ninitial: new\nstates:\n  new:\n    on:\n      won:\n"
        f'        to: done\n        when: "{condition}"\n  done:\n    final: true\n'
    )


CASES: dict[str, Callable[[], str]] = {
    "billion_laughs": billion_laughs,
    "lists_100": nested_lists(100),
    "lists_50000": nested_lists(50_000),
    "flow_mappings_100": nested_flow_mappings(100),
    "flow_mappings_50000": nested_flow_mappings(50_000),
    "block_mappings_100": nested_block_mappings(100),
    "two_megabytes": two_megabytes,
    "many_items": many_items,
    "long_expression": long_expression,
    "deep_expression": deep_expression,
}


def main(case: str) -> None:
    text = CASES[case]()
    signal.alarm(DEADLINES.get(case, DEADLINE_SECONDS))  # default action of SIGALRM: end the process
    result = check_text(text, "hostile.yaml")
    signal.alarm(0)
    errors = [str(p).removeprefix("hostile.yaml:") for p in result.errors]
    report = {"bytes": len(text.encode("utf-8")), "definition": result.definition is not None}
    print(json.dumps({**report, "errors": errors}))


if __name__ == "__main__":
    main(sys.argv[1])
