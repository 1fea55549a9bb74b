"""Placeholders in scenario strings: `/products/{rand:1:240}`, `Bearer {token}`, `{uuid}`.

A template is compiled once into literal parts and small functions, and rendered per request
against a virtual user's variables. `{{` and `}}` are literal braces.

    {uuid}              a random UUID4                 {hex:N}        N random hex digits
    {rand:A:B}          a random integer A..B          {choice:x|y}   one of the listed words
    {vu}                the virtual user's number      {ip}           its client address
    {run}               this run's id                  {now}          Unix time in seconds
    {env:NAME}          an environment variable, read once (`{env:NAME:default}` when unset)
    {name}              a variable: from `[vars]`, a capture, or (in `sign`) `timestamp`,
                        `body` and `signature`

A string that is one placeholder and nothing else renders to the value itself when it stands
in a JSON body, so `product_id = "{rand:1:240}"` sends a number.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

Vars = Mapping[str, Any]
Part = str | Callable[[Vars], Any]

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
BUILTIN_VARS = frozenset({"vu", "ip", "run"})


class TemplateError(ValueError):
    """A placeholder that does not parse, or a variable with no value when rendered."""


class Template:
    """A compiled string with placeholders; `names` are the variables it reads."""

    __slots__ = ("names", "parts", "source")

    def __init__(self, source: str, environ: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.names: set[str] = set()
        parts: list[Part] = []
        pos = 0
        for match in _TOKEN.finditer(source):
            if match.start() > pos:
                parts.append(source[pos : match.start()])
            token = match.group(0)
            if token in ("{{", "}}"):
                parts.append(token[0])
            else:
                parts.append(self._compile(match.group(1), environ or os.environ))
            pos = match.end()
        if pos < len(source):
            parts.append(source[pos:])
        if "{" in _TOKEN.sub("", source) or "}" in _TOKEN.sub("", source):
            raise TemplateError(f"unbalanced brace in {source!r} (write {{{{ for a literal brace)")
        merged: list[Part] = []
        for part in parts:  # adjacent literals become one
            if merged and isinstance(part, str) and isinstance(merged[-1], str):
                merged[-1] += part
            else:
                merged.append(part)
        self.parts = tuple(merged)

    @property
    def constant(self) -> bool:
        """True when the template has no placeholder left after compiling."""
        return all(isinstance(p, str) for p in self.parts)

    def render(self, values: Vars) -> str:
        """The string, every placeholder replaced."""
        out = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else str(part(values)))
        return "".join(out)

    def value(self, values: Vars) -> Any:
        """Like `render`, but a lone placeholder keeps its type (a number stays a number)."""
        if len(self.parts) == 1 and not isinstance(self.parts[0], str):
            return self.parts[0](values)
        return self.render(values)

    def _compile(self, text: str, environ: Mapping[str, str]) -> Part:
        kind, _, arg = text.partition(":")
        if kind == "uuid" and not arg:
            return lambda _: str(uuid.uuid4())
        if kind == "now" and not arg:
            return lambda _: int(time.time())
        if kind == "rand":
            low, high = _int_pair(text, arg)
            return lambda _: random.randint(low, high)
        if kind == "hex":
            n = _positive(text, arg)
            return lambda _: f"{random.getrandbits(4 * n):0{n}x}"
        if kind == "choice":
            words = arg.split("|")
            if not arg or not all(words):
                raise TemplateError(f"{{{text}}}: write {{choice:a|b|c}}")
            return lambda _: random.choice(words)
        if kind == "env":
            name, has_default, default = arg.partition(":")
            if not name:
                raise TemplateError(f"{{{text}}}: write {{env:NAME}} or {{env:NAME:default}}")
            value = environ.get(name, default if has_default else None)
            if value is None:
                raise TemplateError(f"{{{text}}}: environment variable {name} is not set")
            return value
        if arg or not _NAME.match(kind):
            raise TemplateError(f"unknown placeholder {{{text}}}")
        self.names.add(kind)
        return _lookup(kind)


def _lookup(name: str) -> Callable[[Vars], Any]:
    def get(values: Vars) -> Any:
        try:
            return values[name]
        except KeyError:
            raise TemplateError(f"variable {{{name}}} has no value") from None

    return get


def _int_pair(text: str, arg: str) -> tuple[int, int]:
    low, _, high = arg.partition(":")
    try:
        a, b = int(low), int(high)
    except ValueError:
        raise TemplateError(f"{{{text}}}: write {{rand:LOW:HIGH}} with integers") from None
    if a > b:
        raise TemplateError(f"{{{text}}}: LOW is above HIGH")
    return a, b


def _positive(text: str, arg: str) -> int:
    if not arg.isdigit() or not 0 < int(arg) <= 256:
        raise TemplateError(f"{{{text}}}: write {{hex:N}} with N from 1 to 256")
    return int(arg)


def render_json(value: Any, values: Vars) -> Any:
    """A JSON value whose strings are `Template`s, rendered (see `compile_json`)."""
    if isinstance(value, Template):
        return value.value(values)
    if isinstance(value, dict):
        return {k: render_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_json(v, values) for v in value]
    return value


def compile_json(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Compile every string in a JSON-like value (keys stay literal) into a `Template`."""
    if isinstance(value, str):
        return Template(value, environ)
    if isinstance(value, dict):
        return {k: compile_json(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_json(v, environ) for v in value]
    return value


def json_names(value: Any) -> set[str]:
    """The variables a compiled JSON value reads."""
    if isinstance(value, Template):
        return set(value.names)
    if isinstance(value, dict):
        return set().union(*(json_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(json_names(v) for v in value))
    return set()


def json_constant(value: Any) -> bool:
    """True when a compiled JSON value has no placeholder."""
    if isinstance(value, Template):
        return value.constant
    if isinstance(value, dict):
        return all(json_constant(v) for v in value.values())
    if isinstance(value, list):
        return all(json_constant(v) for v in value)
    return True
