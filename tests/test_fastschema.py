"""The fast validation path never accepts what jsonschema rejects (it may only say "certainly
valid"; everything else goes to jsonschema), and it does accept the usual valid documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import fastschema, loader
from engine.errors import DefinitionError

ROOT = Path(__file__).resolve().parent.parent
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER

KEYWORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[A-Z]"},
        "count": {"type": ["integer", "null"], "minimum": 0, "exclusiveMaximum": 10},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1.5},
        "kind": {"enum": ["a", "b", 1, True, None]},
        "fixed": {"const": 3},
        "flag": {"type": "boolean"},
        "tags": {
            "type": "array",
            "items": {"type": "string", "format": "date"},
            "minItems": 1,
            "maxItems": 2,
        },
        "when": {"type": "string", "format": "date-time"},
        "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
        "anything": {},
    },
}


def shipped_schemas() -> list[tuple[str, Any]]:
    schemas: list[tuple[str, Any]] = [("keywords", KEYWORD_SCHEMA)]
    for path in sorted([*ROOT.glob("processes/*.yaml"), *ROOT.glob("tests/fixtures/*.yaml")]):
        try:
            definition = loader.load_file(path)
        except DefinitionError:  # an invalid fixture is other tests' business
            continue
        if definition.data_schema is not None:
            schemas.append((f"{path.stem}.data", definition.data_schema))
        for state in definition.states.values():
            for event, alternatives in state.events.items():
                for alternative in alternatives:
                    if alternative.input_schema is not None:
                        schemas.append((f"{path.stem}.{state.name}.{event}", alternative.input_schema))
    return schemas


SCHEMAS = shipped_schemas()
KEYS = sorted({key for _, schema in SCHEMAS for key in schema.get("properties", {})} | {"zzz"})
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "A",
            "Abcdef",
            "a",
            "b",
            "2026-03-02",
            "2026-02-30",
            "2026-03-02T10:00:00+01:00",
            "2026-03-02T10:00:00",
            "yes",
            "won",
        ]
    ),
    st.text(max_size=6),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    ),
    max_leaves=6,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)


@pytest.mark.parametrize(("name", "schema"), SCHEMAS, ids=[name for name, _ in SCHEMAS])
@settings(max_examples=80, deadline=None)
@given(instance=st.one_of(documents, values))
def test_fast_check_never_accepts_what_jsonschema_rejects(name: str, schema: Any, instance: Any) -> None:
    fast = fastschema.compile_check(schema, FORMATS)
    assert fast is not None, f"{name}: a shipped schema should get a fast check"
    if fast(instance):
        assert jsonschema.Draft202012Validator(schema, format_checker=FORMATS).is_valid(instance)


def test_fast_check_accepts_a_valid_document() -> None:
    fast = fastschema.compile_check(KEYWORD_SCHEMA, FORMATS)
    assert fast is not None
    document = {
        "name": "Anna",
        "count": 3,
        "ratio": 0.5,
        "kind": "b",
        "fixed": 3,
        "flag": False,
        "tags": ["2026-03-02"],
        "when": "2026-03-02T10:00:00+01:00",
        "extra": {"x": 1},
        "anything": [()],
    }
    assert fast(document)
    for key, bad in [
        ("name", "anna"),
        ("count", 10),
        ("kind", 2),
        ("when", "soon"),
        ("tags", []),
        ("zzz", 1),
    ]:
        assert not fast({**document, key: bad}), key


@pytest.mark.parametrize(
    "schema",
    [
        {"anyOf": [{"type": "string"}]},
        {"$ref": "#/x"},
        {"type": "object", "patternProperties": {"a": {}}},
        {"items": [{}]},
        {"properties": {"a": {"not": {}}}},
    ],
    ids=["anyOf", "ref", "patternProperties", "items-list", "nested-not"],
)
def test_unsupported_keywords_get_no_fast_check(schema: dict[str, Any]) -> None:
    assert fastschema.compile_check(schema, FORMATS) is None
