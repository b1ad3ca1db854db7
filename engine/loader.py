"""Load process definitions: YAML text -> located values -> JSON Schema -> frozen definition.

Three stages, as in sismic: parse (``engine.yamlsafe``), shape (``engine.schema_check``), meaning
(``engine.build``). Every problem is reported at once, each at its line:
``processes/x.yaml:14:9: states.to_call.on.book.to: unknown state 'meetng' (did you mean 'meeting'?)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from engine import build, schema_check, yamlsafe
from engine.definition import ProcessDefinition
from engine.errors import DefinitionError, Problem, UsageError

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class CheckResult:
    """What validating one source gives: a definition (when valid) and every finding."""

    source_name: str
    definition: ProcessDefinition | None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_text(text: str, source_name: str = "<string>") -> CheckResult:
    """Validate YAML text; never raises for a bad definition (the problems are in the result)."""
    try:
        located = yamlsafe.load_located(text)
    except yamlsafe.YamlProblem as exc:
        problem = Problem(source_name, exc.line, exc.column, "", exc.message)
        return CheckResult(source_name, None, [problem])
    errors = [Problem(source_name, p.line, p.column, "", p.message) for p in located.problems]
    if not isinstance(located.value, dict):
        errors.append(Problem(source_name, 1, 1, "", _not_a_mapping(located.value)))
        return CheckResult(source_name, None, errors)
    for path, message, at_key in schema_check.schema_findings(located.value):
        errors.append(_problem(source_name, located, path, message, at_key))
    if errors:
        return CheckResult(source_name, None, _sorted(errors))
    return _build(text, source_name, located)


def check_file(path: str | Path) -> CheckResult:
    """Validate one file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problem = Problem(str(path), 1, 1, "", "file is not UTF-8 text; save it as UTF-8")
        return CheckResult(str(path), None, [problem])
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return check_text(text, str(path))


def load_text(text: str, source_name: str = "<string>") -> ProcessDefinition:
    """Return the definition, or raise :class:`DefinitionError` listing every problem."""
    result = check_text(text, source_name)
    if result.definition is None:
        raise DefinitionError(result.errors, result.warnings)
    return result.definition


def load_file(path: str | Path) -> ProcessDefinition:
    """Load one process file; raise :class:`DefinitionError` when it is invalid."""
    result = check_file(path)
    if result.definition is None:
        raise DefinitionError(result.errors, result.warnings)
    return result.definition


def expand_paths(paths: list[str]) -> list[Path]:
    """Files named directly, and every ``*.yaml``/``*.yml`` inside named folders (sorted)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
            if not found:
                raise UsageError(f"folder {path} holds no .yaml or .yml files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path} does not exist; give a process file or a folder of them")
    return files


def _build(text: str, source_name: str, located: yamlsafe.Located) -> CheckResult:
    builder = build.Builder(located.value)
    definition = builder.build(
        source=text,
        source_name=source_name,
        content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )
    errors = [_problem(source_name, located, f.path, f.message, f.at_key) for f in builder.errors]
    warnings = [
        _problem(source_name, located, f.path, f.message, f.at_key, "warning") for f in builder.warnings
    ]
    if errors:
        return CheckResult(source_name, None, _sorted(errors), _sorted(warnings))
    return CheckResult(source_name, definition, [], _sorted(warnings))


def _problem(
    source_name: str,
    located: yamlsafe.Located,
    path: tuple,
    message: str,
    at_key: bool,
    severity: str = "error",
) -> Problem:
    line, column = located.position(path, prefer_key=at_key)
    return Problem(source_name, line, column, _dotted(path), message, severity)


def _dotted(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line, p.column, p.path))


def _not_a_mapping(value: object) -> str:
    if value is None:
        return "the file is empty; a process needs at least process, version, initial and states"
    return "the top level must be a mapping (process:, version:, initial:, states: ...)"
