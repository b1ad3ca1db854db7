"""Check a parsed definition against ``schemas/process.schema.json``; report problems at their lines.

The JSON Schema file is the single source of truth for the shape of a definition; editors use the
same file through the ``# yaml-language-server: $schema=...`` line.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "process.schema.json"

Finding = tuple[tuple[Any, ...], str, bool]  # (path, message, located at the key rather than value)


@cache
def process_schema() -> dict[str, Any]:
    """The format's JSON Schema, read once."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(
        process_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def schema_findings(document: Any) -> list[Finding]:
    """Every schema violation as (path, message), in document order."""
    findings: list[Finding] = []
    for error in _validator().iter_errors(document):
        findings.extend(_explain(error))
    return findings


def _explain(error: ValidationError) -> Iterator[Finding]:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        yield from _unknown_keys(error, path)
    elif error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        if not _misspelt(error, missing):  # else the unknown-key message already names it
            yield path, f"missing required key '{missing}'", False
    elif error.validator == "oneOf" and error.context:
        yield from _explain_choice(error, path)
    elif error.validator == "propertyNames":
        yield from _bad_names(error, path)
    else:
        yield path, _plain_message(error), False


def _unknown_keys(error: ValidationError, path: tuple[Any, ...]) -> Iterator[Finding]:
    allowed = sorted(error.schema.get("properties", {}))
    for key in sorted(set(error.instance) - set(allowed)):
        hint = _did_you_mean(key, allowed)
        yield (*path, key), f"unknown key '{key}'{hint}; allowed here: {', '.join(allowed)}", True


def _misspelt(error: ValidationError, *wanted: str) -> bool:
    """Whether an unknown key of the instance is a near miss for one of ``wanted`` keys."""
    allowed = sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    if not isinstance(error.instance, dict) or not allowed:
        return False
    hints = {f" (did you mean '{name}'?)" for name in wanted}
    return any(_did_you_mean(key, allowed) in hints for key in set(error.instance) - set(allowed))


def _bad_names(error: ValidationError, path: tuple[Any, ...]) -> Iterator[Finding]:
    for sub in error.context or []:
        name = sub.instance
        yield (
            (*path, name),
            (f"name '{name}' must start with a letter and use only letters, digits and underscores"),
            True,
        )


def _explain_choice(error: ValidationError, path: tuple[Any, ...]) -> Iterator[Finding]:
    """A oneOf failed: explain it through the branch that matches the value's shape."""
    value = error.instance
    if (isinstance(value, dict) and {"delay", "at"} & set(value)) or _is_timer(error):
        if "delay" in value and "at" in value:
            yield path, "a timer takes either 'delay' or 'at', not both", False
            return
        if "delay" in value and "offset" in value:
            yield path, "'offset' goes with 'at' only; add it to the delay instead", False
            return
        if not {"delay", "at"} & set(value):
            if not _misspelt(error, "delay", "at"):  # e.g. 'dealy': reported as an unknown key
                yield path, "a timer needs 'delay' (e.g. 7d) or 'at' (e.g. data.contract_end)", False
            return
    wanted = {str: "string", dict: "object", list: "array"}.get(type(value))
    branch = [e for e in error.context if _branch_type(e) == wanted]
    if not branch:
        yield (
            path,
            (
                "expected a target state name, a transition (to/when/roles/input/set), "
                "or a list of transitions"
            ),
            False,
        )
        return
    for sub in branch:
        yield from _explain(sub)


def _is_timer(error: ValidationError) -> bool:
    return "after" in error.absolute_path


def _branch_type(error: ValidationError) -> str | None:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "type":
        return str(error.validator_value)
    if "pattern" in schema or error.validator == "pattern":
        return "string"
    root = error.relative_schema_path
    branch_schema = error.parent.schema["oneOf"][root[0]] if error.parent is not None else {}
    if "$ref" in branch_schema:
        return {"#/$defs/name": "string", "#/$defs/transition": "object"}.get(branch_schema["$ref"])
    return branch_schema.get("type")


def _plain_message(error: ValidationError) -> str:
    value = error.instance
    shown = json.dumps(value, default=str) if not isinstance(value, dict | list) else type(value).__name__
    if error.validator == "type":
        return f"{shown} is not a {_type_word(error.validator_value)}"
    if error.validator == "pattern":
        return (
            f"{shown} is not a valid name: start with a letter, then letters, digits or underscores"
            if "A-Za-z" in str(error.validator_value)
            else f"{shown} must be lower-case letters, digits and underscores, starting with a letter"
        )
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{shown} is not allowed; use one of {allowed}{_did_you_mean(value, error.validator_value)}"
    if error.validator == "minimum":
        return f"{shown} must be at least {error.validator_value}"
    if error.validator == "uniqueItems":
        return "the list repeats an item; list each one once"
    if error.validator in ("minItems", "minProperties", "minLength"):
        return "must not be empty"
    if error.validator == "format":
        return f"{shown} is not a valid {error.validator_value} (write e.g. 2026-12-24)"
    return error.message


def _type_word(kind: Any) -> str:
    words = {
        "string": "text",
        "integer": "whole number",
        "boolean": "true or false",
        "object": "mapping (key: value lines)",
        "array": "list (lines starting with -)",
    }
    if isinstance(kind, list):
        return " or ".join(words.get(k, k) for k in kind)
    return words.get(kind, str(kind))


def _did_you_mean(word: Any, choices: Any) -> str:
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
