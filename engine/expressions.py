"""Guard and ``set`` expressions, in CEL (the Common Expression Language).

CEL is not Turing-complete, has no side effects and runs in linear time; it is compiled once, when a
definition is validated, and evaluated on plain data. Nothing else in salesflow evaluates code.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import cel

from engine import celcheck

#: Names an expression may use.
VARIABLES = frozenset({"data", "input", "now", "state"})
#: Longest expression accepted; with the comprehension cost bound (engine.celcheck) it bounds the work.
MAX_EXPRESSION_LENGTH = 2000

_MACRO_BINDING = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_DATA_FIELD = re.compile(r"(?<![\w.])data\s*\.\s*([A-Za-z_]\w*)")
_BARE_FIELD = re.compile(r"^\s*data\s*\.\s*([A-Za-z_]\w*)\s*$")
_TEMPLATE = re.compile(r"^\s*\$\{(.*)\}\s*$", re.DOTALL)


class ExpressionError(ValueError):
    """An expression does not compile, uses an unknown name, or failed while evaluating."""


@dataclass(frozen=True)
class Expression:
    """A compiled CEL expression and its source text."""

    source: str
    program: Any = field(compare=False, repr=False)
    shape: celcheck.Shape = field(default_factory=celcheck.Shape, compare=False, repr=False)

    def evaluate(self, variables: dict[str, Any]) -> Any:
        """Evaluate on plain values; CEL errors, and data that would make the expression too
        costly (see :mod:`engine.celcheck`), become :class:`ExpressionError`."""
        try:
            celcheck.check_cost(self.shape, variables)
        except celcheck.CostError as exc:
            raise ExpressionError(f"expression '{self.source}' was not evaluated: {exc}") from None
        try:
            return self.program.execute(variables)
        except Exception as exc:  # the CEL binding raises plain RuntimeError/ValueError/TypeError
            raise ExpressionError(f"expression '{self.source}' failed: {_first_line(exc)}") from exc

    def data_fields(self) -> list[str]:
        """Top-level ``data`` fields the expression reads (``data.x`` -> ``x``)."""
        return sorted(set(_DATA_FIELD.findall(self.source)))

    def bare_data_field(self) -> str | None:
        """The field name when the whole expression is ``data.FIELD``, else None."""
        match = _BARE_FIELD.match(self.source)
        return match.group(1) if match else None


def compile_expression(source: str) -> Expression:
    """Compile ``source``; raise :class:`ExpressionError` with a message a process owner can act on."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expression is empty; write a CEL expression such as data.amount > 0")
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression is {len(source)} characters long; the limit is {MAX_EXPRESSION_LENGTH}"
        )
    try:
        program = cel.compile(source)
    except Exception as exc:
        raise ExpressionError(f"expression '{source}' does not compile: {_first_line(exc)}") from exc
    unknown = sorted(set(program.variables()) - VARIABLES - _macro_bindings(source))
    if unknown:
        allowed = ", ".join(sorted(VARIABLES))
        raise ExpressionError(
            f"expression '{source}' uses unknown variable '{unknown[0]}'; use one of {allowed}"
        )
    unknown_calls = celcheck.unknown_functions(source)
    if unknown_calls:
        raise ExpressionError(f"expression '{source}' calls {_unknown_function(*unknown_calls[0])}")
    shape = celcheck.shape_of(source)
    try:
        celcheck.check_shape(shape)
    except celcheck.CostError as exc:
        raise ExpressionError(f"expression '{source}': {exc}") from None
    return Expression(source=source, program=program, shape=shape)


def template_expression(value: Any) -> str | None:
    """The CEL text inside ``"${ ... }"``, or None when ``value`` is a literal."""
    if isinstance(value, str):
        match = _TEMPLATE.match(value)
        if match:
            return match.group(1).strip()
    return None


def to_json_value(value: Any) -> Any:
    """Turn a CEL result into a JSON-storable value (instants and dates become ISO text)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return value


def _unknown_function(name: str, method: bool) -> str:
    known = celcheck.MEMBER_FUNCTIONS if method else celcheck.GLOBAL_FUNCTIONS
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    what = f"method '.{name}()'" if method else f"function '{name}()'"
    return f"unknown {what}{hint}; available: {', '.join(sorted(known))}"


def _macro_bindings(source: str) -> set[str]:
    return set(_MACRO_BINDING.findall(source))


_CEL_SYNTAX = re.compile(r"<input>:(\d+):(\d+):\s*(.*?)(?:\s+expecting\s.*)?$")


def _first_line(exc: Exception) -> str:
    """Reduce the CEL library's multi-line error to one sentence with the column."""
    text = str(exc).strip()
    for line in text.splitlines():
        match = _CEL_SYNTAX.search(line)
        if match:
            detail = match.group(3).strip()
            detail = detail.replace("mismatched input '<EOF>'", "unexpected end of expression")
            if "Recursion limit" in detail:  # the parser's depth guard, shown as the library's debug text
                detail = "Syntax error: brackets or operators are nested too deeply"
            return f"{detail} at column {match.group(2)}"
    return text.splitlines()[0] if text else type(exc).__name__
