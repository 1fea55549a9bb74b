"""Request bodies and parameters checked by hand: the same rules and 422s as the FastAPI shop."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

MAX_ID = 2**31 - 1  # ids are 32-bit in every database the shop runs on
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MISSING = object()


class Invalid(Exception):
    """Bad input: a list of `{"loc": [...], "msg": ...}` errors, answered as a 422 problem."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid request")
        self.errors = errors


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or Invalid."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise Invalid([{"loc": ["body"], "msg": "the body is not valid JSON"}]) from None
    if not isinstance(value, dict):
        raise Invalid([{"loc": ["body"], "msg": "the body must be a JSON object"}])
    return value


class Fields:
    """Reads typed fields from a mapping, collecting every error before raising."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where
        self.errors: list[dict[str, Any]] = []

    def _fail(self, name: str, msg: str) -> None:
        self.errors.append({"loc": [self.where, name], "msg": msg})

    def text(
        self,
        name: str,
        *,
        required: bool = True,
        default: str | None = None,
        min_length: int = 0,
        max_length: int = 10_000,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        value = self.data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                self._fail(name, "field required")
            return default
        if not isinstance(value, str):
            self._fail(name, "expected a string")
            return default
        if not min_length <= len(value) <= max_length:
            self._fail(name, f"expected {min_length} to {max_length} characters")
            return default
        if pattern is not None and not pattern.match(value):
            self._fail(name, "has the wrong format")
            return default
        return value

    def integer(
        self,
        name: str,
        *,
        required: bool = True,
        default: int | None = None,
        ge: int | None = None,
        le: int | None = None,
    ) -> int | None:
        value = self.data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                self._fail(name, "field required")
            return default
        number = as_int(value)
        if number is None:
            self._fail(name, "expected an integer")
            return default
        if (ge is not None and number < ge) or (le is not None and number > le):
            self._fail(name, f"expected an integer from {ge} to {le}")
            return default
        return number

    def required_text(self, name: str, **rules: Any) -> str:
        """A required string ("" when it failed: `check()` then raises)."""
        return self.text(name, required=True, **rules) or ""

    def required_integer(self, name: str, **rules: Any) -> int:
        """A required integer (0 when it failed: `check()` then raises)."""
        value = self.integer(name, required=True, **rules)
        return 0 if value is None else value

    def check(self) -> None:
        if self.errors:
            raise Invalid(self.errors)


def as_int(value: object) -> int | None:
    """An integer from an int, a whole float or a decimal string (never from a bool)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,19}\s*", value):
        return int(value)
    return None


def path_id(value: str, name: str = "id") -> int:
    """A 32-bit id from a path segment, or Invalid."""
    fields = Fields({name: value}, "path")
    number = fields.integer(name, ge=1, le=MAX_ID)
    if number is None:
        raise Invalid(fields.errors)
    return number
