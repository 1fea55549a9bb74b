"""Scenario files: the schema, errors that name the line and key, templates, the default."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path

import orjson
import pytest

from launchready_sdk.cli.scenario import ScenarioError
from launchready_sdk.cli.scenario_toml import default_scenario, load_scenario, parse_scenario
from launchready_sdk.cli.template import Template, TemplateError
from launchready_sdk.cli.tomlpos import find_line

GOOD = """\
name = "demo"

[vars]
email = "u{vu}@example.com"

[[setup]]
method = "POST"
path = "/signup"
json = { email = "{email}" }
expect = 201
capture = { token = "token" }

[[flow]]
name = "home"
weight = 3
path = "/"

[[flow]]
name = "buy"

[[flow.step]]
route = "POST /cart/{id}"
method = "POST"
path = "/cart/{rand:1:9}"
headers = { Authorization = "Bearer {token}" }
json = { quantity = "{rand:2:2}", note = "x{vu}" }
expect = [201, 409]

[[flow.step]]
path = "/cart"

[routes."POST /cart/{id}"]
p95_ms = 250
"""


def with_line(text: str, line_no: int, new: str) -> str:
    lines = text.splitlines()
    lines[line_no - 1] = new
    return "\n".join(lines) + "\n"


def test_a_scenario_compiles() -> None:
    """Flows, steps, setup, route names and per-route budgets come out as written."""
    s = parse_scenario(GOOD, "demo.toml")
    assert s.name == "demo"
    assert [f.name for f in s.flows] == ["home", "buy"]
    assert s.route_names == ["GET /", "POST /cart/{id}", "GET /cart"]
    assert s.routes["POST /cart/{id}"].p95_ms == 250
    assert s.mean_requests_per_flow == pytest.approx((3 * 1 + 1 * 2) / 4)
    step = s.flows[1].steps[0]
    assert step.expect == frozenset({201, 409})
    target, headers, body = step.build({"vu": 7, "ip": "10.0.0.7", "run": "r", "token": "T"})
    assert re.fullmatch(r"/cart/[1-9]", target)
    assert ("Authorization", "Bearer T") in headers
    assert ("Content-Type", "application/json") in headers
    assert body is not None
    assert orjson.loads(body) == {"quantity": 2, "note": "x7"}


@pytest.mark.parametrize(
    ("line_no", "new", "key", "hint"),
    [
        (23, 'metod = "POST"', "metod", "did you mean 'method'"),
        (15, "wieght = 3", "wieght", "did you mean 'weight'"),
        (15, 'weight = "heavy"', "weight", "must be a number"),
        (10, "expect = [201, 1200]", "expect", "100-599"),
        (1, 'nmae = "demo"', "nmae", "did you mean 'name'"),
        (33, "p95 = 250", "p95", "did you mean 'p95_ms'"),
    ],
)
def test_a_typo_names_the_line_and_the_key(
    tmp_path: Path, line_no: int, new: str, key: str, hint: str
) -> None:
    """Unknown keys and wrong types are reported as file:line with the key and a hint."""
    path = tmp_path / "s.toml"
    path.write_text(with_line(GOOD, line_no, new))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line_no}: "), message
    assert repr(key) in message
    assert hint in message


def test_the_line_is_found_in_the_right_array_entry() -> None:
    """The same key in several [[flow.step]] tables: the error points at the right one."""
    text = with_line(GOOD, 30, 'path = "/cart"\nmethdo = "GET"')
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.toml")
    assert str(info.value).startswith("s.toml:31: 'methdo' in flow #2, step #2: ")
    assert find_line(text, ("flow", 1, "step", 0), "path") == 24
    assert find_line(text, ("flow", 1, "step", 1), "path") == 30
    assert find_line(text, ("flow", 0), "weight") == 15


def test_invalid_toml_and_structural_errors() -> None:
    """Syntax errors keep tomllib's line; a missing flow or path is named."""
    with pytest.raises(ScenarioError, match=r"s.toml: not valid TOML: .*line 2"):
        parse_scenario('name = "x"\nflow = ]\n', "s.toml")
    with pytest.raises(ScenarioError, match="has no 'flow'"):
        parse_scenario('name = "x"\n', "s.toml")
    with pytest.raises(ScenarioError, match=r"flow #1 has no 'path'"):
        parse_scenario("[[flow]]\nweight = 1\n", "s.toml")
    with pytest.raises(ScenarioError, match="must start with '/'"):
        parse_scenario('[[flow]]\npath = "x"\n', "s.toml")


def test_variables_must_be_defined_before_use() -> None:
    """A template reading a variable nothing defines is refused with its line."""
    text = '[[flow]]\npath = "/"\n\n[[flow]]\npath = "/orders/{order_id}"\n'
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.toml")
    assert str(info.value).startswith("s.toml:5: 'path' in flow #2")
    assert "{order_id}" in str(info.value)
    captured = (
        '[[flow]]\n[[flow.step]]\nmethod = "POST"\npath = "/orders"\ncapture = { order_id = "id" }'
        '\n[[flow.step]]\npath = "/orders/{order_id}"\n'
    )
    assert parse_scenario(captured, "s.toml").route_names == [
        "POST /orders",
        "GET /orders/{order_id}",
    ]


def test_templates() -> None:
    """Placeholders render; a lone one keeps its type; braces can be escaped."""
    values = {"vu": 3, "token": "abc"}
    assert Template("{rand:5:5}").value(values) == 5
    assert Template("/p/{rand:5:5}").render(values) == "/p/5"
    assert Template("{{literal}} {token}").render(values) == "{literal} abc"
    assert re.fullmatch(r"[0-9a-f-]{36}", Template("{uuid}").render(values))
    assert re.fullmatch(r"[0-9a-f]{24}", Template("{hex:24}").render(values))
    assert Template("{choice:a|b}").render(values) in ("a", "b")
    assert Template("{env:NOPE_NOT_SET:fallback}", environ={}).render(values) == "fallback"
    assert Template("{env:SET}", environ={"SET": "v"}).render(values) == "v"
    assert Template("{vu}").value(values) == 3
    for bad in ("{rand:9:1}", "{nope:1}", "{env:NOPE_NOT_SET}", "a}b", "{hex:0}"):
        with pytest.raises(TemplateError):
            Template(bad, environ={})
    with pytest.raises(TemplateError, match="no value"):
        Template("{missing}").render(values)


def test_default_scenario_fits_the_shop_contract() -> None:
    """The built-in scenario: signup setup, catalog-heavy mix, idempotent checkout, signed hooks."""
    s = default_scenario(environ={})
    assert s.setup[0].route == "POST /signup"
    assert s.setup[0].capture == {"token": "token"}
    weights = {f.name: f.weight for f in s.flows}
    browse = weights["home"] + weights["catalog"] + weights["product page"]
    assert browse / sum(weights.values()) > 0.7
    assert "GET /products/{id}" in s.route_names
    values = {"vu": 1, "ip": "10.0.0.1", "run": "r", "token": "T"}
    checkout = next(f for f in s.flows if f.name == "checkout").steps[1]
    _, headers, _ = checkout.build(values)
    keys = [v for k, v in headers if k == "Idempotency-Key"]
    assert len(keys) == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", keys[0])
    login = next(f for f in s.flows if f.name == "login")
    assert login.max_per_user_per_minute is not None
    assert login.max_per_user_per_minute < 10
    _, _, body = login.steps[0].build(values)
    assert body is not None
    assert orjson.loads(body)["password"] == "demo-password-123"


def test_default_webhook_signature_verifies() -> None:
    """The webhook step signs `t.body` with HMAC-SHA256 as the shop's contract says."""
    s = default_scenario(environ={"SHOP_WEBHOOK_SECRET": "whsec_test"})
    step = next(f for f in s.flows if f.name == "payment webhook").steps[0]
    _, headers, body = step.build({"vu": 1, "ip": "10.0.0.1", "run": "r"})
    assert body is not None
    signature = dict(headers)["Payment-Signature"]
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", signature)
    assert match is not None
    expected = hmac.new(b"whsec_test", match.group(1).encode() + b"." + body, hashlib.sha256)
    assert match.group(2) == expected.hexdigest()
    event = orjson.loads(body)
    assert event["type"] == "charge.succeeded"
    assert event["data"]["order_id"].startswith("ord_")


def test_route_override_must_name_a_route() -> None:
    """A budget for a route no step reports (a typo) is refused, with a suggestion."""
    text = '[[flow]]\npath = "/products"\n\n[routes."GET /prodcts"]\np95_ms = 5\n'
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.toml")
    assert str(info.value).startswith("s.toml:5: 'p95_ms' in [routes.\"GET /prodcts\"]")
    assert "did you mean 'GET /products'" in str(info.value)


@pytest.mark.parametrize(
    ("line_no", "new", "key"),
    [
        (15, "weight = inf", "weight"),
        (15, "weight = +inf", "weight"),
        (15, "weight = -inf", "weight"),
        (15, "weight = nan", "weight"),
        (15, "weight = -nan", "weight"),
        (15, "weight = 1e308", "weight"),
        (15, "weight = 1E7", "weight"),
        (15, "weight = 1e-400", "weight"),  # TOML reads it as 0.0
        (15, "weight = 0", "weight"),
        (15, "weight = -3", "weight"),
        (15, "weight = 99999999999999999999999", "weight"),
        (15, "weight = true", "weight"),
        (33, "p95_ms = inf", "p95_ms"),
        (33, "p95_ms = nan", "p95_ms"),
        (33, "p95_ms = 1e308", "p95_ms"),
        (33, "p95_ms = -250", "p95_ms"),
        (33, "max_error_rate = nan", "max_error_rate"),
        (33, "max_error_rate = inf", "max_error_rate"),
        (33, "max_error_rate = -0.5", "max_error_rate"),
        (15, "max_per_user_per_minute = 99999999999999999999999", "max_per_user_per_minute"),
        (15, "max_per_user_per_minute = 1e3", "max_per_user_per_minute"),
        (15, "max_per_user_per_minute = -1", "max_per_user_per_minute"),
        (26, 'json = { quantity = nan, note = "x{vu}" }', "json"),
        (26, 'json = { quantity = [1, { deep = -inf }], note = "x" }', "json"),
    ],
)
def test_numbers_must_be_finite_and_sane(tmp_path: Path, line_no: int, new: str, key: str) -> None:
    """NaN, infinities, huge, negative and exponent-form numbers are refused at load time, with
    the file, the line and the key (an infinite weight used to hang an open-model run)."""
    path = tmp_path / "s.toml"
    path.write_text(with_line(GOOD, line_no, new))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line_no}: "), message
    assert repr(key) in message


@pytest.mark.parametrize(
    "new", ["weight = 1_000_000", "weight = 0.001", "weight = 2.5e3", "weight = 0x10"]
)
def test_sane_numbers_in_any_spelling_are_accepted(new: str) -> None:
    """Exponents, underscores and hex are fine when the value is finite and in range."""
    scenario = parse_scenario(with_line(GOOD, 15, new), "s.toml")
    weight = scenario.flows[0].weight
    assert 0 < weight <= 1_000_000
    assert 0 < scenario.mean_requests_per_flow < 3  # finite: the open model can schedule it


def test_big_json_integers_are_compiled_exactly() -> None:
    """An integer over 64 bits in a JSON body is sent digit for digit, constant or rendered."""
    big = 2**64 + 7
    text = with_line(GOOD, 26, f'json = {{ quantity = {big}, note = "x{{vu}}" }}')
    text = with_line(text, 9, f"json = {{ id = {big} }}")
    s = parse_scenario(text, "s.toml")
    values = {"vu": 7, "ip": "10.0.0.7", "run": "r", "token": "T"}
    _, _, constant = s.setup[0].build(values)
    assert constant == b'{"id":%d}' % big
    _, _, rendered = s.flows[1].steps[0].build(values)
    assert rendered is not None
    assert json.loads(rendered) == {"quantity": big, "note": "x7"}
