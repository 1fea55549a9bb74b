"""The shops' input rules, declared once.

Both shops check every body, query and path parameter against the schemas below with `read()`,
so they accept and refuse exactly the same requests; the FastAPI shop also derives its OpenAPI
description from them (`openapi_body`, `openapi_query`). Framework-free on purpose.

Security stance: text never holds NUL characters or unpaired surrogates (PostgreSQL cannot
store them, and they would turn a bad request into a 500); an email is one line with one `@`
and no whitespace or control characters, matched whole (a `$` that allows a trailing newline
once let `victim@x.io\\n` open a second account); JSON integers are whole numbers within the
bounds (never booleans, never strings); every number a column stores is bounded well inside
its column, so an overflow is a 422, never a database error.

Limits, candidly: the email check is a sanity check, not RFC 5322; only a confirmation email
proves an address. Unknown fields are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

MAX_ID = 2**31 - 1  # ids are 32-bit in every database the shops run on
MAX_ADD_QUANTITY = 100  # one "add to cart"
MAX_LINE_QUANTITY = 1000  # one cart line
MAX_PRICE_CENTS = 1_000_000_000  # ten million a unit
MAX_STOCK = 1_000_000_000
MAX_ORDER_TOTAL_CENTS = MAX_PRICE_CENTS * MAX_LINE_QUANTITY  # 64-bit columns hold far more
MAX_ORDER_ID_CHARS = 64

_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
_QUERY_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")


class Invalid(Exception):
    """Bad input: a list of `{"loc": [...], "msg": ...}` errors, answered as a 422 problem."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid request")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Text:
    """A string of `min_length` to `max_length` characters; `email` checks the format too."""

    min_length: int = 0
    max_length: int = 10_000
    format: Literal["email"] | None = None
    required: bool = True
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Integer:
    """A whole number from `ge` to `le`."""

    ge: int
    le: int
    required: bool = True
    default: int | None = None


Rule = Text | Integer
Schema = Mapping[str, Rule]

SIGNUP: Schema = {
    "email": Text(3, 254, format="email"),
    "password": Text(8, 1024),
    "name": Text(0, 200, required=False, default=""),
}
LOGIN: Schema = {"email": Text(0, 254), "password": Text(0, 1024)}
PASSWORD_RESET: Schema = {"email": Text(0, 254)}
CART_ITEM: Schema = {
    "product_id": Integer(1, MAX_ID),
    "quantity": Integer(1, MAX_ADD_QUANTITY),
}
PRODUCT_PATCH: Schema = {
    "name": Text(1, 200, required=False),
    "description": Text(0, 5000, required=False),
    "price_cents": Integer(0, MAX_PRICE_CENTS, required=False),
    "stock": Integer(0, MAX_STOCK, required=False),
}
PRODUCTS_QUERY: Schema = {
    "category": Text(0, 40, required=False),
    "page": Integer(1, 10_000, required=False, default=1),
    "per_page": Integer(1, 100, required=False, default=20),
}
ADMIN_ORDERS_QUERY: Schema = {
    "status": Text(0, 20, required=False),
    "limit": Integer(1, 500, required=False, default=50),
}
PRODUCT_PATH: Schema = {"id": Integer(1, MAX_ID)}
ORDER_PATH: Schema = {"order_id": Text(1, MAX_ORDER_ID_CHARS)}


def read(schema: Schema, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The fields of `data` that `schema` names, checked; every error is collected, then
    `Invalid` is raised. `where` is "body", "query" or "path": outside a JSON body, integers
    arrive as decimal strings."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, rule in schema.items():
        raw = data.get(name)
        if raw is None:
            if rule.required:
                errors.append({"loc": [where, name], "msg": "field required"})
            values[name] = rule.default
            continue
        value, problem = _check(rule, raw, strings=where != "body")
        if problem is not None:
            errors.append({"loc": [where, name], "msg": problem})
        values[name] = value
    if errors:
        raise Invalid(errors)
    return values


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or Invalid."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise Invalid([{"loc": ["body"], "msg": "the body is not valid JSON"}]) from None
    if not isinstance(value, dict):
        raise Invalid([{"loc": ["body"], "msg": "the body must be a JSON object"}])
    return value


def path_id(value: str) -> int:
    """A product id from a path segment, or Invalid."""
    product_id: int = read(PRODUCT_PATH, {"id": value}, "path")["id"]
    return product_id


def _check(rule: Rule, raw: Any, *, strings: bool) -> tuple[Any, str | None]:
    if isinstance(rule, Integer):
        number = _integer(raw, strings=strings)
        if number is None:
            return None, "expected an integer"
        if not rule.ge <= number <= rule.le:
            return None, f"expected an integer from {rule.ge} to {rule.le}"
        return number, None
    if not isinstance(raw, str):
        return None, "expected a string"
    if not rule.min_length <= len(raw) <= rule.max_length:
        return None, f"expected {rule.min_length} to {rule.max_length} characters"
    if "\x00" in raw or not _encodable(raw):
        return None, "contains a NUL character or an unpaired surrogate"
    if rule.format == "email" and _EMAIL.fullmatch(raw) is None:
        return None, "is not an email address (one line, one @, no spaces)"
    return raw, None


def _integer(raw: Any, *, strings: bool) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if strings and isinstance(raw, str) and _QUERY_INTEGER.fullmatch(raw):
        return int(raw)
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- the same rules as OpenAPI, for the FastAPI shop's schema --------------------------------


def _json_schema(rule: Rule) -> dict[str, Any]:
    if isinstance(rule, Integer):
        return {"type": "integer", "minimum": rule.ge, "maximum": rule.le}
    out: dict[str, Any] = {
        "type": "string",
        "minLength": rule.min_length,
        "maxLength": rule.max_length,
    }
    if rule.format is not None:
        out["format"] = rule.format
    return out


def openapi_body(schema: Schema) -> dict[str, Any]:
    """`openapi_extra` describing a JSON body that follows `schema`."""
    body = {
        "type": "object",
        "properties": {name: _json_schema(rule) for name, rule in schema.items()},
        "required": [name for name, rule in schema.items() if rule.required],
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}


def openapi_query(schema: Schema) -> dict[str, Any]:
    """`openapi_extra` describing query parameters that follow `schema`."""
    return {
        "parameters": [
            {"name": name, "in": "query", "required": rule.required, "schema": _json_schema(rule)}
            for name, rule in schema.items()
        ]
    }
