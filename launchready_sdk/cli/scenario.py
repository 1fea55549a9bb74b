"""Scenarios: which requests virtual users send, with what weights, bodies and expectations.

A `Scenario` holds weighted `Flow`s of `Step`s, the per-user setup steps and variables, and
per-route budgets. Steps are compiled (their templates parsed, constant bodies serialised once)
so that `Step.build` costs little per request. `scenario_toml.py` reads them from TOML.
`expect` lists the statuses that are not errors (default: 200-399); a step that fails ends
its flow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import orjson

from launchready_sdk.cli.template import Template, Vars, render_json

SUCCESS = frozenset(range(200, 400))
SIGN_VARS = frozenset({"timestamp", "body", "signature"})


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the file, line and key."""


def dump_json(value: Any) -> bytes:
    """A JSON body. Integers of any size are written exactly (orjson stops at 64 bits, so
    such a body goes through the standard library); NaN and infinities raise ValueError."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode()


@dataclasses.dataclass(frozen=True, slots=True)
class Sign:
    """An HMAC-SHA256 signature header over the body (the Stripe-style webhook scheme)."""

    header: str
    secret: Template
    payload: Template
    value: Template

    def header_value(self, body: bytes, values: Vars) -> str:
        extra = {**values, "timestamp": int(time.time()), "body": body.decode()}
        message = self.payload.render(extra).encode()
        key = self.secret.render(values).encode()
        extra["signature"] = hmac.new(key, message, hashlib.sha256).hexdigest()
        return self.value.render(extra)


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One request of a flow, reported under `route` (e.g. "GET /products/{id}")."""

    route: str
    method: str
    path: Template
    headers: tuple[tuple[str, Template], ...] = ()
    json: Any = None
    body: Template | None = None
    expect: frozenset[int] = SUCCESS
    capture: Mapping[str, str] = dataclasses.field(default_factory=dict)
    sign: Sign | None = None
    _constant_body: bytes | None = None

    def build(self, values: Vars) -> tuple[str, list[tuple[str, str]], bytes | None]:
        """(target, headers, body) for a user whose variables are `values`."""
        headers = [(name, t.render(values)) for name, t in self.headers]
        body: bytes | None = None
        if self._constant_body is not None:
            body = self._constant_body
        elif self.json is not None:
            body = dump_json(render_json(self.json, values))
        elif self.body is not None:
            body = self.body.render(values).encode()
        if self.json is not None:
            headers.append(("Content-Type", "application/json"))
        if self.sign is not None:
            headers.append((self.sign.header, self.sign.header_value(body or b"", values)))
        if body is None and self.method in ("POST", "PUT", "PATCH"):
            body = b""
        return self.path.render(values), headers, body


@dataclasses.dataclass(frozen=True, slots=True)
class Flow:
    """Steps sent in order by one virtual user; `weight` is its share of arrivals."""

    name: str
    weight: float
    steps: tuple[Step, ...]
    max_per_user_per_minute: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RouteBudget:
    """Per-route thresholds that replace the command-line ones."""

    p95_ms: float | None = None
    max_error_rate: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """A compiled scenario."""

    name: str
    source: str
    flows: tuple[Flow, ...]
    setup: tuple[Step, ...] = ()
    vars: tuple[tuple[str, Template], ...] = ()
    headers: tuple[tuple[str, Template], ...] = ()
    forwarded_for: bool = True
    routes: Mapping[str, RouteBudget] = dataclasses.field(default_factory=dict)

    @property
    def route_names(self) -> list[str]:
        """Every route a flow reports, in first-seen order."""
        seen: dict[str, None] = {}
        for flow in self.flows:
            for step in flow.steps:
                seen.setdefault(step.route, None)
        return list(seen)

    @property
    def mean_requests_per_flow(self) -> float:
        total = sum(f.weight for f in self.flows)
        return sum(f.weight * len(f.steps) for f in self.flows) / total
