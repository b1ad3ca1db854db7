"""Static checks on CEL source: known functions only, and a cost bound so a guard cannot run
(practically) for ever.

Functions: the CEL library compiles a call to any name (``open``, ``__import__``, ``eval``)
and fails only when the expression runs, on a timer at 3 a.m. So every call is
checked against the functions the library defines, when the definition is validated.

Cost:
CEL has no loops, but its comprehension macros (``all``, ``exists``, ``exists_one``, ``map``,
``filter``) iterate over lists and maps, and nesting them multiplies: ``l.map(a, l.map(b, ...))``
over a 1,000-item list is a million steps, and in the CEL library salesflow uses each ``map`` and
``filter`` also copies its result list on every step (a 30,000-item ``map`` takes 30 s; two nested
over 1,000 items took 78 s). The length limit alone does not bound that, because the work depends
on the data the expression meets. So:

- at compile time: comprehensions may be nested at most :data:`MAX_NESTING` deep;
- before each evaluation: a worst-case step count is estimated from the expression's shape and the
  largest list or map in its variables, and the evaluation is refused (a clear error, nothing
  changed) when it exceeds :data:`MAX_COST` (about a second of work at worst).

The estimate is deliberately coarse and errs high: collections of ``R`` items, where ``R`` is the
largest collection in the data or input (or the largest list or map literal in the expression)
times one plus the number of ``+`` in a bracketed range (``(a + b).map(...)``: concatenation
lengthens a list), iterated ``depth`` deep, plus one more factor when ``map``/``filter`` copy their
results.
Expressions without comprehensions are linear in their length and are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: Deepest nesting of comprehension macros accepted.
MAX_NESTING = 2
#: Most estimated steps one evaluation may take (measured: 10**6 steps cost 0.03-0.7 s).
MAX_COST = 1_000_000

MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_COPYING = frozenset({"map", "filter"})  # these build a result list, copied on every step

_TOKEN = re.compile(
    r"""(?P<space>\s+|//[^\n]*)
      | (?P<string>[rRbB]{0,2}(?:'''|\"\"\"|'|\"|`))
      | (?P<name>[A-Za-z_]\w*)
      | (?P<number>\d[\w.]*)
      | (?P<punct>.)""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Shape:
    """What the cost of an expression depends on, read from its source text."""

    depth: int = 0  # deepest nesting of comprehension macros
    copying: bool = False  # whether a map/filter appears in a comprehension
    literal_items: int = 0  # most elements in one list or map literal
    concatenations: int = 0  # '+' operators

    def cost(self, largest_collection: int) -> int:
        """Worst-case steps when the largest list or map in the variables has that many items."""
        if self.depth == 0:
            return 0
        items = max(largest_collection, self.literal_items, 1) * (self.concatenations + 1)
        return items ** (self.depth + (1 if self.copying else 0))


class CostError(ValueError):
    """The expression is, or would be on this data, too costly to evaluate."""


#: Functions the CEL library defines (checked by tests/reliability/test_hostile_input.py).
GLOBAL_FUNCTIONS = frozenset(
    {"size", "int", "uint", "double", "string", "bytes", "timestamp", "duration", "dyn", "type", "has"}
)
MEMBER_FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches",
        "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
        "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    }
) | MACROS  # fmt: skip


def unknown_functions(source: str) -> list[tuple[str, bool]]:
    """Calls in ``source`` to functions the library does not define: (name, is a method call)."""
    unknown = []
    previous: list[str] = []
    for kind, text in _tokens(source):
        if text == "(" and kind == "punct" and previous and _IDENTIFIER.match(previous[-1]):
            name, method = previous[-1], len(previous) == 2 and previous[0] == "."
            known = MEMBER_FUNCTIONS if method else GLOBAL_FUNCTIONS
            if name not in known and (name, method) not in unknown:
                unknown.append((name, method))
        previous = [*previous[-1:], text]
    return unknown


_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")


def shape_of(source: str) -> Shape:
    """Scan ``source`` (strings and comments skipped) for comprehension nesting, list literal sizes
    and concatenations in the lists comprehensions range over (``(a + b).map(...)``)."""
    depth = deepest = concatenations = literal_items = 0
    copying = False
    frames: list[list[Any]] = []  # [opening, is_macro, commas, has_content, '+' inside]
    closed_pluses = 0  # '+' inside the bracket that closed last
    previous: list[str] = []  # the last three significant tokens
    for kind, text in _tokens(source):
        punct = text if kind == "punct" else ""
        if frames and punct not in (")", "]", "}", ","):
            frames[-1][3] = True  # the innermost bracket holds something
        if punct and punct in "([{":
            is_macro = punct == "(" and previous[-2:-1] == ["."] and previous[-1] in MACROS
            if is_macro:
                depth += 1
                deepest = max(deepest, depth)
                copying = copying or previous[-1] in _COPYING
                if previous[-3:-2] in ([")"], ["]"]):  # the range is a bracketed expression
                    concatenations = max(concatenations, closed_pluses)
            frames.append([punct, is_macro, 0, False, 0])
        elif punct and punct in ")]}" and frames:
            opening, is_macro, commas, has_content, closed_pluses = frames.pop()
            if is_macro:
                depth -= 1
            elif opening in "[{" and has_content:
                literal_items = max(literal_items, commas + 1)
        elif punct == "," and frames:
            frames[-1][2] += 1
        elif punct == "+":
            for frame in frames:
                frame[4] += 1
        previous = [*previous[-2:], text]
    return Shape(deepest, copying and deepest > 0, literal_items, concatenations)


def check_shape(shape: Shape) -> None:
    """Compile-time limits: nesting, and a cost already too high on the literals alone."""
    if shape.depth > MAX_NESTING:
        raise CostError(
            f"comprehensions (all/exists/exists_one/map/filter) are nested {shape.depth} deep; "
            f"the limit is {MAX_NESTING}: split the condition or keep a precomputed field in data"
        )
    cost = shape.cost(0)
    if cost > MAX_COST:
        raise CostError(_too_costly(cost, shape, 0))


def check_cost(shape: Shape, variables: Mapping[str, Any]) -> None:
    """Before evaluating: refuse when this data would make the expression too costly."""
    if shape.depth == 0:
        return
    largest = largest_collection(variables.values())
    cost = shape.cost(largest)
    if cost > MAX_COST:
        raise CostError(_too_costly(cost, shape, largest))


def largest_collection(values: Any) -> int:
    """The most items any list or map nested anywhere in ``values`` has (iteratively, no recursion)."""
    largest = 0
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            largest = max(largest, len(value))
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            largest = max(largest, len(value))
            stack.extend(value)
    return largest


def _too_costly(cost: int, shape: Shape, largest: int) -> str:
    where = f"over lists of up to {largest:,} items " if largest else ""
    return (
        f"too costly: comprehensions nested {shape.depth} deep {where}would take about {cost:.3g} "
        f"steps (the limit is {MAX_COST:,}); keep lists shorter or avoid nesting map/filter"
    )


def _tokens(source: str) -> Iterator[tuple[str, str]]:
    """(kind, text) for each significant token; string literals come out as ('string', '')."""
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        assert match is not None  # the pattern's last branch matches any character
        kind = match.lastgroup or "punct"
        position = match.end()
        if kind == "space":
            continue
        if kind == "string":
            position = _end_of_string(source, position, match.group())
            yield "string", ""
            continue
        yield kind, match.group()


def _end_of_string(source: str, position: int, opener: str) -> int:
    """Where the string literal opened by ``opener`` (prefix and quote) ends."""
    quote = opener.lstrip("rRbB")
    raw = "r" in opener.lower()
    while position < len(source):
        if not raw and source[position] == "\\":
            position += 2
            continue
        if source.startswith(quote, position):
            return position + len(quote)
        position += 1
    return position
