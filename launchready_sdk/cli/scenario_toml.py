"""Scenario files: TOML in, a checked `Scenario` out; typos named by line and key.

A scenario is a TOML file (see `default_scenario.toml`, the built-in one for the bundled
shops):

    name = "my app"
    [vars]                        # per-user values; templates, rendered once per user
    email = "bench-{run}-{vu}@example.com"
    [[setup]]                     # run once per virtual user before the clock starts
    method = "POST"
    path = "/signup"
    json = { email = "{email}", password = "long-password" }
    expect = [201]
    capture = { token = "token" } # variable = dotted path into the JSON response
    [[flow]]                      # a one-request flow
    name = "home"
    weight = 20
    path = "/"
    [[flow]]                      # a flow of several requests, in order
    name = "cart"
    weight = 5
    [[flow.step]]
    route = "POST /cart/items"    # reported under (default: method and path)
    method = "POST"
    path = "/cart/items"
    headers = { Authorization = "Bearer {token}" }
    json = { product_id = "{rand:1:240}", quantity = 1 }
    expect = [201]
    [routes."POST /cart/items"]   # per-route thresholds
    p95_ms = 300

Placeholders are described in `template.py`. A typo is a `ScenarioError` naming the line and
the key (`tomllib` gives no key positions, so `tomlpos.py` searches the text); this module
checks names, types, ranges, that every variable a template reads is defined before it is
used, and that every per-route budget names a route a step reports.

Numbers are checked for what a run can survive: a weight is finite, above 0 and at most
1,000,000 (TOML also spells `inf`, `nan`, `1e308` and `1e-400`, which reads as 0); a p95
budget is finite and at most an hour; a JSON body holds no NaN or infinity (JSON has none).
Integers in JSON bodies are sent exactly, however many digits they have.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from launchready_sdk.cli.scenario import (
    SIGN_VARS,
    SUCCESS,
    Flow,
    RouteBudget,
    Scenario,
    ScenarioError,
    Sign,
    Step,
    dump_json,
)
from launchready_sdk.cli.template import (
    BUILTIN_VARS,
    Template,
    TemplateError,
    compile_json,
    json_constant,
    json_names,
    render_json,
)
from launchready_sdk.cli.tomlpos import find_line

_METHOD = re.compile(r"[A-Z]+\Z")
_CAPTURE = re.compile(r"(header:[A-Za-z0-9-]+|[^.\s]+(\.[^.\s]+)*)\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def load_scenario(path: str | Path, environ: Mapping[str, str] | None = None) -> Scenario:
    """Read and compile a scenario file; raises `ScenarioError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read the scenario: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: the scenario is not UTF-8 text") from None
    return parse_scenario(text, str(p), environ)


def default_scenario(environ: Mapping[str, str] | None = None) -> Scenario:
    """The built-in scenario for the bundled shops."""
    resource = resources.files("launchready_sdk.cli").joinpath("default_scenario.toml")
    return parse_scenario(resource.read_text(encoding="utf-8"), "<built-in scenario>", environ)


def parse_scenario(text: str, source: str, environ: Mapping[str, str] | None = None) -> Scenario:
    """Compile scenario TOML text; `source` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return _Compiler(text, source, os.environ if environ is None else environ).scenario(data)


# --- checking and compiling -------------------------------------------------------------------

Checker = Callable[[Any], str | None]  # returns what was expected, or None when fine

_STEP_KEYS = ("route", "method", "path", "headers", "json", "body", "expect", "capture", "sign")
_FLOW_KEYS = ("name", "weight", "max_per_user_per_minute", "step", *_STEP_KEYS)
_TOP_KEYS = ("name", "description", "vars", "headers", "forwarded_for", "setup", "flow", "routes")


def _is_str(v: Any) -> str | None:
    return None if isinstance(v, str) else "a string"


def _is_table_of_str(v: Any) -> str | None:
    ok = isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    return None if ok else "a table of strings"


MAX_WEIGHT = 1_000_000
MAX_P95_MS = 3_600_000  # an hour
MAX_PER_MINUTE = 1_000_000


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_number(low: float, high: float) -> Checker:
    def check(v: Any) -> str | None:
        if _finite(v) and low < v <= high:
            return None
        return f"a number above {low:g} and at most {high:,.0f}"

    return check


def _is_rate(v: Any) -> str | None:
    return None if _finite(v) and 0 <= v <= 1 else "a number from 0 to 1"


def _is_count(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_PER_MINUTE
    return None if ok else f"an integer from 1 to {MAX_PER_MINUTE:,}"


def _is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _is_expect(v: Any) -> str | None:
    items = v if isinstance(v, list) else [v]
    ok = bool(items) and all(
        isinstance(x, int) and not isinstance(x, bool) and 100 <= x <= 599 for x in items
    )
    return None if ok else "a status or a list of statuses (100-599)"


def _is_json(v: Any) -> str | None:
    return None if isinstance(v, dict | list) else "a table or an array"


def _is_array_of_tables(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, dict) for x in v)
    return None if ok else "an array of tables ([[...]])"


def _is_table(v: Any) -> str | None:
    return None if isinstance(v, dict) else "a table"


_TYPES: dict[str, Checker] = {
    "name": _is_str,
    "route": _is_str,
    "description": _is_str,
    "method": _is_str,
    "path": _is_str,
    "body": _is_str,
    "vars": _is_table_of_str,
    "headers": _is_table_of_str,
    "capture": _is_table_of_str,
    "forwarded_for": _is_bool,
    "weight": _is_number(0, MAX_WEIGHT),
    "max_per_user_per_minute": _is_count,
    "expect": _is_expect,
    "json": _is_json,
    "setup": _is_array_of_tables,
    "flow": _is_array_of_tables,
    "step": _is_array_of_tables,
    "routes": _is_table,
    "sign": _is_table,
    "p95_ms": _is_number(0, MAX_P95_MS),
    "max_error_rate": _is_rate,
    "header": _is_str,
    "secret": _is_str,
    "payload": _is_str,
    "value": _is_str,
}


class _Compiler:
    def __init__(self, text: str, source: str, environ: Mapping[str, str]) -> None:
        self.text = text
        self.source = source
        self.environ = environ

    def error(self, path: Sequence[str | int], key: str | None, problem: str) -> ScenarioError:
        line = find_line(self.text, path, key) if key is not None else None
        where = f"{self.source}:{line}" if line is not None else self.source
        place = _describe(path)
        subject = f"{key!r} in {place}" if key is not None else place
        return ScenarioError(f"{where}: {subject}: {problem}")

    def check(
        self,
        table: Mapping[str, Any],
        path: Sequence[str | int],
        allowed: Sequence[str],
        required: Sequence[str] = (),
    ) -> None:
        for key, value in table.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "expected one of "
                hint += "" if close else ", ".join(allowed)
                raise self.error(path, key, f"unknown key ({hint})")
            expected = _TYPES[key](value)
            if expected is not None:
                got = type(value).__name__
                raise self.error(path, key, f"must be {expected}, got {got} {value!r}")
        for key in required:
            if key not in table:
                raise ScenarioError(f"{self.source}: {_describe(path)} has no {key!r}")

    def template(self, value: str, path: Sequence[str | int], key: str) -> Template:
        try:
            return Template(value, self.environ)
        except TemplateError as exc:
            raise self.error(path, key, str(exc)) from None

    def scenario(self, data: Mapping[str, Any]) -> Scenario:
        self.check(data, (), _TOP_KEYS, required=("flow",))
        known = set(BUILTIN_VARS)
        vars_: list[tuple[str, Template]] = []
        for name, raw in data.get("vars", {}).items():
            if not _NAME.match(name) or name in BUILTIN_VARS | SIGN_VARS:
                raise self.error(("vars",), name, "not a usable variable name")
            template = self.template(raw, ("vars",), name)
            self.defined(template.names, known, ("vars",), name)
            vars_.append((name, template))
            known.add(name)
        headers = self.headers(data.get("headers", {}), (), known)
        setup: list[Step] = []
        for i, table in enumerate(data.get("setup", [])):
            setup.append(self.step(table, ("setup", i), known))
        if not data["flow"]:
            raise ScenarioError(f"{self.source}: the scenario has no [[flow]]")
        flows = [self.flow(t, ("flow", i), set(known)) for i, t in enumerate(data["flow"])]
        routes = {}
        for name, table in data.get("routes", {}).items():
            if not isinstance(table, dict):
                raise self.error(("routes",), name, "must be a table: p95_ms, max_error_rate")
            self.check(table, ("routes", name), ("p95_ms", "max_error_rate"))
            if name not in {step.route for flow in flows for step in flow.steps}:
                key = next(iter(table), None)
                close = difflib.get_close_matches(name, [s.route for f in flows for s in f.steps])
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(("routes", name), key, f"no flow step reports this route{hint}")
            routes[name] = RouteBudget(table.get("p95_ms"), table.get("max_error_rate"))
        return Scenario(
            name=data.get("name", Path(self.source).stem),
            source=self.source,
            flows=tuple(flows),
            setup=tuple(setup),
            vars=tuple(vars_),
            headers=headers,
            forwarded_for=data.get("forwarded_for", True),
            routes=routes,
        )

    def flow(self, table: Mapping[str, Any], path: tuple[str | int, ...], known: set[str]) -> Flow:
        self.check(table, path, _FLOW_KEYS)
        inline = {k: v for k, v in table.items() if k in _STEP_KEYS}
        if "step" in table and inline:
            key = next(iter(inline))
            raise self.error(path, key, "a flow has either [[flow.step]] tables or one request")
        if "step" in table:
            if not table["step"]:
                raise self.error(path, "step", "a flow needs at least one step")
            steps = [self.step(t, (*path, "step", i), known) for i, t in enumerate(table["step"])]
        elif "path" in table:
            steps = [self.step(inline, path, known)]
        else:
            raise ScenarioError(f"{self.source}: {_describe(path)} has no 'path' and no [[step]]")
        name = table.get("name", steps[0].route)
        weight = float(table.get("weight", 1.0))
        return Flow(name, weight, tuple(steps), table.get("max_per_user_per_minute"))

    def step(self, table: Mapping[str, Any], path: tuple[str | int, ...], known: set[str]) -> Step:
        self.check(table, path, _STEP_KEYS, required=("path",))
        method = table.get("method", "GET")
        if not _METHOD.match(method):
            raise self.error(path, "method", f"{method!r} is not an upper-case HTTP method")
        if not table["path"].startswith("/"):
            raise self.error(path, "path", "must start with '/'")
        if not table["path"].isascii():
            raise self.error(path, "path", "must be ASCII (percent-encode other characters)")
        if "json" in table and "body" in table:
            raise self.error(path, "body", "a step has either 'json' or 'body', not both")
        target = self.template(table["path"], path, "path")
        self.defined(target.names, known, path, "path")
        headers = self.headers(table.get("headers", {}), path, known)
        json_value = None
        if "json" in table:
            bad = _non_finite(table["json"], "json")
            if bad is not None:
                raise self.error(path, "json", f"{bad}: JSON has no NaN or infinity")
            try:
                json_value = compile_json(table["json"], self.environ)
            except TemplateError as exc:
                raise self.error(path, "json", str(exc)) from None
            self.defined(json_names(json_value), known, path, "json")
        body = self.template(table["body"], path, "body") if "body" in table else None
        if body is not None:
            self.defined(body.names, known, path, "body")
        sign = self.sign(table["sign"], (*path, "sign"), known) if "sign" in table else None
        capture = self.capture(table.get("capture", {}), path)
        known.update(capture)
        expect = table.get("expect")
        constant: bytes | None = None
        if json_value is not None and json_constant(json_value):
            constant = dump_json(render_json(json_value, {}))
        elif body is not None and body.constant:
            constant = body.render({}).encode()
        return Step(
            route=table.get("route") or f"{method} {table['path'].split('?', 1)[0]}",
            method=method,
            path=target,
            headers=headers,
            json=json_value,
            body=body,
            expect=SUCCESS if expect is None else frozenset(_as_list(expect)),
            capture=capture,
            sign=sign,
            _constant_body=constant,
        )

    def headers(
        self, table: Mapping[str, str], path: Sequence[str | int], known: set[str]
    ) -> tuple[tuple[str, Template], ...]:
        out = []
        for name, raw in table.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise self.error(path, "headers", f"{name!r} is not a header name")
            if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                raise self.error(path, "headers", f"{name} is set by the bench itself")
            template = self.template(raw, path, "headers")
            self.defined(template.names, known, path, "headers")
            out.append((name, template))
        return tuple(out)

    def capture(self, table: Mapping[str, str], path: Sequence[str | int]) -> dict[str, str]:
        for name, where in table.items():
            if not _NAME.match(name) or name in BUILTIN_VARS | SIGN_VARS:
                raise self.error(path, "capture", f"{name!r} is not a usable variable name")
            if not _CAPTURE.match(where):
                raise self.error(path, "capture", f"{where!r} is not a JSON path or header:Name")
        return dict(table)

    def sign(self, table: Mapping[str, Any], path: tuple[str | int, ...], known: set[str]) -> Sign:
        self.check(table, path, ("header", "secret", "payload", "value"), ("header", "secret"))
        local = known | SIGN_VARS
        parts = {}
        defaults = {"payload": "{timestamp}.{body}", "value": "t={timestamp},v1={signature}"}
        for key in ("secret", "payload", "value"):
            template = self.template(table.get(key, defaults.get(key, "")), path, key)
            self.defined(template.names, known if key == "secret" else local, path, key)
            parts[key] = template
        return Sign(table["header"], parts["secret"], parts["payload"], parts["value"])

    def defined(
        self, names: set[str], known: set[str], path: Sequence[str | int], key: str
    ) -> None:
        missing = sorted(names - known)
        if missing:
            problem = f"uses {{{missing[0]}}}, which is not defined before it"
            problem += " (define it in [vars] or capture it in an earlier step)"
            raise self.error(path, key, problem)


def _non_finite(value: Any, where: str) -> str | None:
    """The dotted place of the first NaN or infinity in a JSON value, with its value."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value!r}"
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            found = _non_finite(item, f"{where}.{key}")
            if found is not None:
                return found
    return None


def _as_list(value: int | list[int]) -> list[int]:
    return value if isinstance(value, list) else [value]


def _describe(path: Sequence[str | int]) -> str:
    if not path:
        return "the top level"
    words: list[str] = []
    for part in path:
        if isinstance(part, int):
            words[-1] += f" #{part + 1}"
        elif part == "routes":
            words.append("[routes]")
        elif words and words[-1] == "[routes]":
            words[-1] = f'[routes."{part}"]'
        else:
            words.append(part)
    return ", ".join(words)
