"""Limits on free JSON the API takes in and stores (issue 15): depth, members, string length,
no NUL character.

A log entry is kept for good, so what the API stores must also be readable for good: a value
nested past what the serialisers manage (pydantic stops at 255 levels, ``json`` recurses) would
break every later read of the incident. Everything here is iterative: checking never recurses.
"""

from __future__ import annotations

import json
from typing import Any

#: Deepest nesting of a JSON body or stored value (an object or array is one level).
MAX_DEPTH = 32
#: Most object members and array items in one stored value, counted through all its levels.
MAX_MEMBERS = 2_000
#: Longest string (or object key) in a stored value, in characters.
MAX_STRING = 20_000
#: PostgreSQL's text cannot hold U+0000 (a 500 there, stored on SQLite): refused on both.
NUL = "\x00"
NUL_MESSAGE = "tegnet NUL (U+0000) kan ikke lagres / the NUL character (U+0000) cannot be stored"


class JsonLimitError(ValueError):
    """A JSON text or value past one of the limits; ``field`` is where, ``str()`` says which."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


def _too_deep() -> str:
    return f"JSON nested deeper than the limit of {MAX_DEPTH} levels"


def depth(value: Any) -> int:
    """How deep ``value`` nests (a scalar is 0), walked without recursing; stops counting
    once past MAX_DEPTH."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        if level > deepest:
            deepest = level
            if deepest > MAX_DEPTH:
                return deepest
        stack.extend((child, level) for child in children)
    return deepest


def loads(body: str | bytes) -> Any:
    """``json.loads`` of a body no deeper than MAX_DEPTH: JsonLimitError when deeper (however
    deep: the parser's RecursionError is one) or when a string or key holds U+0000, ValueError
    when it is not JSON."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise JsonLimitError(_too_deep()) from None
    raw = body.encode() if isinstance(body, str) else body
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise JsonLimitError(_too_deep())
    if b"\\u0000" in raw and _has_nul(value):
        raise JsonLimitError(NUL_MESSAGE)
    return value


def _has_nul(value: Any) -> bool:
    """Whether any string or key in ``value`` holds U+0000 (walked without recursing)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check(value: Any, field: str = "") -> None:
    """Raise JsonLimitError naming the first place where ``value`` passes a limit."""
    members = 0
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if len(item) > MAX_STRING:
                raise JsonLimitError(
                    f"a string longer than the limit of {MAX_STRING} characters", where or "body"
                )
            continue
        if not isinstance(item, dict | list):
            continue
        depth += 1
        if depth > MAX_DEPTH:
            raise JsonLimitError(_too_deep(), where or "body")
        members += len(item)
        if members > MAX_MEMBERS:
            raise JsonLimitError(
                f"more than the limit of {MAX_MEMBERS} members and items in all", where or "body"
            )
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in pairs:
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and len(key) > MAX_STRING:
                raise JsonLimitError(
                    f"a key longer than the limit of {MAX_STRING} characters", where or "body"
                )
            stack.append((child, path, depth))


def validated(value: Any) -> Any:
    """``check`` as a pydantic AfterValidator (its ValueError becomes a 422 for the field)."""
    try:
        check(value)
    except JsonLimitError as exc:
        raise ValueError(str(exc)) from None
    return value
