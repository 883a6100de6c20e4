"""Hand-edited YAML files read with their line numbers, so every error names file:line: field.

The organisation file and the playbooks are written by people. A bare traceback helps nobody,
so loaders compose the YAML once (nodes carry line marks), then map each problem's JSON path
back to a line. The organisation file, the playbooks and the recipients file share this.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import jsonschema
import yaml

PathElement = str | int
JsonPath = tuple[PathElement, ...]
Problem = tuple[JsonPath, int | None, str]


def format_field(path: Sequence[PathElement]) -> str:
    """``cards[2].role`` from ``("cards", 2, "role")``."""
    out = ""
    for element in path:
        if isinstance(element, int):
            out += f"[{element}]"
        else:
            out += f".{element}" if out else element
    return out


class SourceError(ValueError):
    """A problem pinned to file, line and field; ``problems`` lists all found (this one first)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        problems: Sequence[SourceError] = (),
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field or None
        self.problems: tuple[SourceError, ...] = tuple(problems) or (self,)
        super().__init__(self._render())

    def _render(self) -> str:
        parts: list[str] = []
        if self.path is not None:
            parts.append(self.path if self.line is None else f"{self.path}:{self.line}")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self._render()


def parse(source: str | Path, text: str, error: type[SourceError]) -> tuple[yaml.Node | None, Any]:
    """Compose (for line numbers) and construct (for data) in one pass."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "unreadable YAML"
        if exc.problem and exc.context:
            where = f" that starts at line {exc.context_mark.line + 1}" if exc.context_mark else ""
            message = f"{exc.problem} ({exc.context}{where})"
        raise error(
            f"invalid YAML: {message}", path=source, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", path=source) from None
    finally:
        loader.dispose()
    return node, data


def _child(node: yaml.Node | None, key: PathElement) -> tuple[yaml.Node | None, yaml.Node | None]:
    if isinstance(node, yaml.MappingNode):
        found: tuple[yaml.Node | None, yaml.Node | None] = (None, None)
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                found = (key_node, value_node)
        return found
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return None, node.value[key]
    return None, None


def line_of(
    root: yaml.Node | None, path: Sequence[PathElement], *, at_key: bool = False
) -> int | None:
    """1-based line of ``path`` (its key with ``at_key``); else its deepest present ancestor."""
    if root is None:
        return None
    node: yaml.Node = root
    key_node: yaml.Node | None = None
    for element in path:
        key_node, child = _child(node, element)
        if child is None:
            return node.start_mark.line + 1
        node = child
    if at_key and key_node is not None:
        return key_node.start_mark.line + 1
    return node.start_mark.line + 1


def duplicate_keys(node: yaml.Node | None, path: JsonPath = ()) -> Iterator[Problem]:
    """Repeated mapping keys, which PyYAML would silently collapse to the last one."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            name = str(key_node.value)
            if name in first:
                yield (*path, name), line, f"duplicate key {name!r} (first at line {first[name]})"
            else:
                first[name] = line
            yield from duplicate_keys(value_node, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from duplicate_keys(item, (*path, index))


def describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return (
            f"boolean {value} (YAML reads unquoted yes/no/on/off/true/false as booleans; quote it)"
        )
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text {value!r}"
    return f"{type(value).__name__} {value!r}"


_TYPE_NAMES: Final[dict[str, str]] = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true/false",
}


def schema_validator(schema: dict[str, Any]) -> Any:
    """A draft 2020-12 validator for ``schema``, after checking the schema itself."""
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_problems(validator: Any, data: Any, root: yaml.Node | None) -> Iterator[Problem]:
    """JSON Schema errors as readable (path, line, message) problems."""
    for error in validator.iter_errors(data):
        path: JsonPath = tuple(error.absolute_path)
        kind = error.validator
        instance = error.instance
        if kind == "required":
            missing = [
                n for n in error.validator_value if isinstance(instance, dict) and n not in instance
            ]
            for name in missing[:1] or ["?"]:
                yield (*path, name), line_of(root, path, at_key=True), "required field is missing"
        elif kind == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            extras = [k for k in instance if k not in allowed] if isinstance(instance, dict) else []
            for key in extras:
                yield (
                    (*path, key),
                    line_of(root, (*path, key), at_key=True),
                    f"unknown field {key!r} (allowed: {', '.join(allowed)})",
                )
        elif kind == "enum":
            allowed_values = ", ".join(str(v) for v in error.validator_value)
            yield (
                path,
                line_of(root, path),
                f"invalid value {instance!r} (allowed: {allowed_values})",
            )
        elif kind == "const":
            yield (
                path,
                line_of(root, path),
                f"must be {error.validator_value!r}, not {instance!r}",
            )
        elif kind == "type":
            expected = _TYPE_NAMES.get(str(error.validator_value), str(error.validator_value))
            yield path, line_of(root, path), f"expected {expected}, got {describe(instance)}"
        elif kind == "pattern" and isinstance(instance, str):
            yield path, line_of(root, path), f"{instance!r} has the wrong format"
        elif kind in ("minimum", "maximum"):
            yield (
                path,
                line_of(root, path),
                f"{instance!r} is out of range ({kind} {error.validator_value})",
            )
        elif kind == "minItems" and error.validator_value == 1:
            yield path, line_of(root, path, at_key=True), "must list at least one entry"
        elif kind == "minItems":
            yield path, line_of(root, path), f"must list at least {error.validator_value} entry"
        elif kind in ("minProperties", "maxProperties"):
            yield path, line_of(root, path), "a condition is a mapping with exactly one key"
        else:
            yield path, line_of(root, path), str(error.message)


def raise_if_any(source: str | Path, problems: list[Problem], error: type[SourceError]) -> None:
    """Raise the first problem (by line) carrying all of them; nothing when the list is empty."""
    if not problems:
        return
    ordered = sorted(problems, key=lambda p: (p[1] if p[1] is not None else 0, format_field(p[0])))
    errors = [error(m, path=source, line=line, field=format_field(p)) for p, line, m in ordered]
    first = errors[0]
    first.problems = tuple(errors)
    raise first
