"""The structure half of `Redactor`: mappings, sequences, name/value pairs, bytes and other
objects, walked with the depth limit and cycle guard.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import ipaddress
import pathlib
import uuid
from collections.abc import Mapping
from typing import Any, Final

from launchready_sdk.redaction._keys import MISSING
from launchready_sdk.redaction._markers import (
    CARD_MARKER,
    CYCLE_MARKER,
    DEPTH_MARKER,
    ERROR_MARKER,
    marker_for,
)
from launchready_sdk.redaction._personal import CARD_MIN, is_card
from launchready_sdk.redaction._scanner import TextScanner

_SAFE_TYPES: Final = (
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
    enum.Enum,
    pathlib.PurePath,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)


class Walker(TextScanner):
    """The structure methods of `Redactor`."""

    _short: int

    def _walk(self, value: object, depth: int, stack: set[int]) -> object:
        kind = type(value)
        if kind is str:
            return self._text(value, depth)  # type: ignore[arg-type]
        if kind is int:
            return self._int(value)  # type: ignore[arg-type]
        if value is None or kind is bool or kind is float:
            return value
        if depth >= self._max_depth:
            return DEPTH_MARKER
        if kind is dict:
            return self._mapping(value, depth, stack)  # type: ignore[arg-type]
        if kind is list or kind is tuple:
            return self._sequence(value, depth, stack)  # type: ignore[arg-type]
        try:
            return self._other(value, depth, stack)
        except Exception:
            return ERROR_MARKER

    def _mapping(self, mapping: Mapping[Any, Any], depth: int, stack: set[int]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        keys, clean = self._keys, self._clean
        for key, value in mapping.items():
            rule = keys.get(key, MISSING)
            if rule is MISSING:
                rule = self._key_rule(key)
            if rule is not None:
                out[key] = self._masked(rule, value)  # type: ignore[arg-type]
                continue
            kind = type(value)
            if kind is str:
                short = len(value) < self._short
                out[key] = value if short or value in clean else self._text(value, depth)
            elif kind is int:
                out[key] = value if -CARD_MIN < value < CARD_MIN else self._int(value)
            elif kind is float or kind is bool or value is None:
                out[key] = value
            else:
                out[key] = self._child(value, depth, stack)
        if "value" in out and ("name" in out or "key" in out):
            self._mask_named_value(out)
        if "loc" in out and ("input" in out or "ctx" in out):
            self._mask_located_input(out)
        return out

    def _mask_located_input(self, out: dict[Any, Any]) -> None:
        """A validation error (`{"loc": ["body", "password"], "input": ...}`, as pydantic,
        FastAPI's 422 body and Starlette-style validators write them): the rejected input and
        its context are masked when a part of the location names a secret."""
        loc = out["loc"]
        parts = loc if isinstance(loc, (list, tuple)) else (loc,)
        for part in parts:
            rule = self._key_rule(part) if isinstance(part, (str, bytes)) else None
            if rule is not None:
                for name in ("input", "ctx"):
                    if name in out:
                        out[name] = self._masked(rule, out[name])
                return

    def _child(self, value: object, depth: int, stack: set[int]) -> object:
        """`_walk` of a container's element, guarding against cycles."""
        kind = type(value)
        if kind is str or kind is int or kind is float or kind is bool or value is None:
            return self._walk(value, depth, stack)
        ident = id(value)
        if ident in stack:
            return CYCLE_MARKER
        stack.add(ident)
        try:
            return self._walk(value, depth + 1, stack)
        finally:
            stack.discard(ident)

    def _mask_named_value(self, out: dict[Any, Any]) -> None:
        """`{"name": "X-Api-Key", "value": ...}`: mask the value when the name is sensitive."""
        name = out.get("name", out.get("key"))
        if isinstance(name, (str, bytes)):
            rule = self._key_rule(name)
            if rule is not None:
                out["value"] = self._masked(rule, out["value"])

    def _sequence(
        self, items: list[Any] | tuple[Any, ...], depth: int, stack: set[int]
    ) -> list[Any] | tuple[Any, ...]:
        if type(items) is tuple and len(items) == 2:
            pair = self._pair(items)
            if pair is not None:
                return pair
        if items and all(_is_pair(item) for item in items):
            out = [self._pair_or_child(item, depth, stack) for item in items]
        else:
            out = [self._child(item, depth, stack) for item in items]
        return tuple(out) if type(items) is tuple else out

    def _pair_or_child(self, item: Any, depth: int, stack: set[int]) -> object:
        pair = self._pair(item)
        return pair if pair is not None else self._child(item, depth, stack)

    def _pair(self, pair: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...] | None:
        """A `(name, value)` pair with its value masked when the name is sensitive, else None."""
        name, value = pair
        if not isinstance(name, (str, bytes)):
            return None
        rule = self._key_rule(name)
        if rule is None or value is None or isinstance(value, bool):
            return None
        masked = [name, self._masked(rule, value)]
        return tuple(masked) if type(pair) is tuple else masked

    def _other(self, value: object, depth: int, stack: set[int]) -> object:
        if isinstance(value, (bytes, bytearray)):
            return self._bytes(bytes(value), depth)
        if isinstance(value, Mapping):
            return self._mapping(value, depth, stack)
        if isinstance(value, (list, tuple, set, frozenset)):
            kind = tuple if isinstance(value, tuple) else list
            return self._sequence(kind(value), depth, stack)
        if isinstance(value, (float, *_SAFE_TYPES)):
            return value
        if isinstance(value, str):
            return self._text(str(value), depth)
        if isinstance(value, int):
            return self._int(int(value))
        return self._text(self._repr(value), depth)

    @staticmethod
    def _repr(value: object) -> str:
        hook = getattr(type(value), "__structlog__", None)
        try:
            return str(hook(value)) if callable(hook) else repr(value)
        except Exception:
            return marker_for("unrepresentable")

    def _bytes(self, value: bytes, depth: int) -> object:
        text = value.decode("utf-8", "surrogateescape")
        result = self._text(text, depth)
        if result is text:
            return value
        return str(result).encode("utf-8", "surrogateescape")

    @staticmethod
    def _int(value: int) -> object:
        if value < CARD_MIN or value >= 10**19:
            return value
        return CARD_MARKER if is_card(str(value)) else value


def _is_pair(item: object) -> bool:
    kind = type(item)
    return (kind is tuple or kind is list) and len(item) == 2 and isinstance(item[0], (str, bytes))  # type: ignore[arg-type,index]
