"""A fast "certainly valid" check for the small JSON Schema subset process definitions use.

jsonschema validates a ten-field data document in about 100 us, more than the database needs to
store a step; the engine validates the whole document after every event. :func:`compile_check`
turns a schema into plain Python closures that answer True only when the instance is valid by
JSON Schema 2020-12 semantics; False means "not sure", and the caller then runs jsonschema, which
gives the verdict and the error message. So validation is never weaker: a document the fast check
accepts is one jsonschema accepts (tests/test_fastschema.py checks this against jsonschema).

Supported: ``type``, ``properties``, ``required``, ``additionalProperties`` (boolean or schema),
``items`` (a schema), ``enum``, ``const``, ``minimum``/``maximum`` and their exclusive forms,
``minLength``/``maxLength``, ``minItems``/``maxItems``, ``pattern``, ``format`` (the same format
checker jsonschema uses) and annotations. A schema using anything else gets no fast check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

ANNOTATIONS = frozenset(
    {"description", "title", "examples", "default", "$comment", "deprecated", "readOnly", "writeOnly"}
)
# Exact types only: anything else (subclasses, tuples, Decimal, ...) is left to jsonschema.
_PLAIN = frozenset({str, int, float, bool, type(None), dict, list})
_NUMBER = (int, float)
_TYPES: dict[str, Check] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,  # 1.0 is an integer to jsonschema: it decides that case
    "number": lambda v: type(v) in _NUMBER,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
}


class Unsupported(Exception):
    """The schema uses a keyword this module does not handle."""


def compile_check(schema: Any, format_checker: Any) -> Check | None:
    """A check that returns True only for instances valid against ``schema``; None when the schema
    uses something unsupported (then every instance goes to jsonschema)."""
    try:
        return _compile(schema, format_checker)
    except (Unsupported, re.error, TypeError, KeyError):
        return None


def _compile(schema: Any, format_checker: Any) -> Check:
    if schema is True:
        return lambda v: True
    if schema is False or not isinstance(schema, Mapping):
        raise Unsupported(schema)
    checks: list[Check] = []
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS:
            continue
        build = _KEYWORDS.get(keyword)
        if build is None:
            raise Unsupported(keyword)
        checks.append(build(value, schema, format_checker))

    def check(instance: Any) -> bool:
        if type(instance) not in _PLAIN:
            return False
        for c in checks:  # noqa: SIM110  (a loop, not all(genexpr): this runs for every field, every step)
            if not c(instance):
                return False
        return True

    return check


def _type(value: Any, _schema: Any, _fc: Any) -> Check:
    names = [value] if isinstance(value, str) else list(value)
    tests = [_TYPES[name] for name in names]
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(t(v) for t in tests)


def _properties(value: Any, _schema: Any, fc: Any) -> Check:
    subs = {name: _compile(sub, fc) for name, sub in value.items()}

    def check(v: Any) -> bool:
        if type(v) is not dict:
            return True
        for name, item in v.items():
            sub = subs.get(name)
            if sub is not None and not sub(item):
                return False
        return True

    return check


def _required(value: Any, _schema: Any, _fc: Any) -> Check:
    names = tuple(value)
    return lambda v: type(v) is not dict or all(k in v for k in names)


def _additional(value: Any, schema: Any, fc: Any) -> Check:
    if "patternProperties" in schema:
        raise Unsupported("patternProperties")
    declared = frozenset(schema.get("properties", {}))
    if value is True:
        return lambda v: True
    if value is False:
        return lambda v: type(v) is not dict or declared.issuperset(v)
    sub = _compile(value, fc)
    return lambda v: type(v) is not dict or all(sub(x) for k, x in v.items() if k not in declared)


def _items(value: Any, schema: Any, fc: Any) -> Check:
    if "prefixItems" in schema or isinstance(value, list):
        raise Unsupported("prefixItems")
    sub = _compile(value, fc) if value is not False else (lambda v: False)
    return lambda v: type(v) is not list or all(sub(x) for x in v)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same plain scalar type (jsonschema's equality is looser: it decides the
    remaining cases, such as 1 == 1.0 or lists)."""
    return type(a) is type(b) and type(a) in (str, int, float, bool, type(None)) and a == b


def _enum(value: Any, _schema: Any, _fc: Any) -> Check:
    options = list(value)
    return lambda v: any(_same(v, option) for option in options)


def _const(value: Any, _schema: Any, _fc: Any) -> Check:
    return lambda v: _same(v, value)


def _bound(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any, Any], Check]:
    def build(limit: Any, _schema: Any, _fc: Any) -> Check:
        if type(limit) not in _NUMBER:
            raise Unsupported(limit)
        return lambda v: type(v) not in _NUMBER or test(v, limit)  # NaN fails: jsonschema decides

    return build


def _length(test: Callable[[int, int], bool], kind: type) -> Callable[[Any, Any, Any], Check]:
    def build(limit: Any, _schema: Any, _fc: Any) -> Check:
        return lambda v: type(v) is not kind or test(len(v), limit)

    return build


def _pattern(value: Any, _schema: Any, _fc: Any) -> Check:
    compiled = re.compile(value)
    return lambda v: type(v) is not str or compiled.search(v) is not None


def _format(value: Any, _schema: Any, fc: Any) -> Check:
    if fc is None:
        return lambda v: True
    return lambda v: fc.conforms(v, value)


_KEYWORDS: dict[str, Callable[[Any, Any, Any], Check]] = {
    "type": _type,
    "properties": _properties,
    "required": _required,
    "additionalProperties": _additional,
    "items": _items,
    "enum": _enum,
    "const": _const,
    "minimum": _bound(lambda v, m: v >= m),
    "maximum": _bound(lambda v, m: v <= m),
    "exclusiveMinimum": _bound(lambda v, m: v > m),
    "exclusiveMaximum": _bound(lambda v, m: v < m),
    "minLength": _length(lambda n, m: n >= m, str),
    "maxLength": _length(lambda n, m: n <= m, str),
    "minItems": _length(lambda n, m: n >= m, list),
    "maxItems": _length(lambda n, m: n <= m, list),
    "pattern": _pattern,
    "format": _format,
}
