"""`launchready smoke`: every flow once, against both bundled shops, broken flows named."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, free_port

SHOPS = {
    "fastapi": "examples.fastapi_shop.app:app",
    "django": "examples.django_shop.asgi:application",
}

BROKEN = """\
name = "broken on purpose"

[[setup]]
method = "POST"
path = "/signup"
json = { email = "b-{run}@example.com", password = "long-password-1", name = "B" }
expect = 201
capture = { token = "token" }

[[flow]]
name = "homepage"
path = "/"

[[flow]]
name = "checkout"

[[flow.step]]
route = "POST /cart/items"
method = "POST"
path = "/cart/items"
headers = { Authorization = "Bearer {token}" }
json = { product_id = 1, quantity = 1 }
expect = 201

[[flow.step]]
route = "POST /checkout"
method = "POST"
path = "/checkout"
headers = { Authorization = "Bearer {token}" }
expect = 200

[[flow]]
name = "never reached"
path = "/"
"""

MISSING_DATA = """\
[[setup]]
method = "POST"
path = "/signup"
json = { email = "m-{run}@example.com", password = "long-password-1", name = "M" }
expect = 201
capture = { token = "token" }

[[flow]]
name = "order page"

[[flow.step]]
route = "GET /products/{id}"
path = "/products/99999"
expect = 200
capture = { price = "price_cents" }
"""

CAPTURE_MISSING = """\
[[flow]]
name = "latest order"

[[flow.step]]
route = "GET /products"
path = "/products?page=1"
capture = { order_id = "items.0.order_id" }
"""


def smoke(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "launchready_sdk.cli", "smoke", *map(str, args)],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("shop", sorted(SHOPS))
def test_the_built_in_smoke_passes_against_each_shop_in_seconds(shop: str, tmp_path: Path) -> None:
    """Boot, sign-up, login, checkout and the admin flow, all under 10 s: exit 0."""
    began = time.monotonic()
    result = smoke("--app", SHOPS[shop], env={"SHOP_DATA_DIR": str(tmp_path)})
    took = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    for flow in ("setup", "homepage", "signup and login", "checkout initiation", "admin action"):
        assert f"  ok    {flow}: " in result.stdout
    assert "PASS: 4 flows" in result.stdout
    assert took < 10, f"smoke took {took:.1f} s"


@pytest.mark.parametrize("shop", sorted(SHOPS))
def test_a_broken_flow_exits_1_naming_flow_step_and_request_id(shop: str, tmp_path: Path) -> None:
    """A step expecting the wrong status: exit 1, the flow, the step and a request id the
    app's own log has; the flows after it are not run."""
    scenario = tmp_path / "broken.toml"
    scenario.write_text(BROKEN)
    log = tmp_path / "app.log"
    result = smoke(
        "--app", SHOPS[shop], "--scenario", scenario, "--server-log", log,
        env={"SHOP_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "  ok    homepage" in result.stdout
    assert "FAIL  'checkout', step 2 of 2 (POST /checkout): status 201, expected 200" in (
        result.stdout
    )
    request_id = result.stdout.split("request id: ", 1)[1].split()[0]
    assert request_id in log.read_text()  # the failing request, in the app's log
    assert "never reached" not in result.stdout


def test_a_step_needing_data_that_does_not_exist_says_so(tmp_path: Path) -> None:
    """A 404 for the product a step needs: the flow, the step and 'does not exist'."""
    scenario = tmp_path / "missing.toml"
    scenario.write_text(MISSING_DATA)
    result = smoke(
        "--app", SHOPS["fastapi"], "--scenario", scenario, env={"SHOP_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "FAIL  " in line)
    assert "'order page', step 1 of 1 (GET /products/{id}): status 404, expected 200" in line
    assert "the data this step needs does not exist in the app (GET /products/99999)" in line
    assert "No such product" in line


def test_a_capture_with_nothing_to_capture_says_so(tmp_path: Path) -> None:
    """A capture path the response lacks: the flow, the step and what is missing."""
    scenario = tmp_path / "capture.toml"
    scenario.write_text(CAPTURE_MISSING)
    result = smoke(
        "--app", SHOPS["fastapi"], "--scenario", scenario, env={"SHOP_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "'latest order', step 1 of 1 (GET /products): capture order_id: items.0.order_id not "
        "in the response: the data this step needs is not there" in result.stdout
    )


def test_usage_and_boot_errors_exit_2(tmp_path: Path) -> None:
    """An unreachable URL, the admin token missing for the built-in scenario, a bad app and a
    scenario typo: exit 2 with one error line each."""
    port = free_port()
    unreachable = smoke("--url", f"http://127.0.0.1:{port}")
    assert unreachable.returncode == 2
    assert "SHOP_ADMIN_TOKEN is not set" in unreachable.stderr  # checked before any request
    token = {"SHOP_ADMIN_TOKEN": "x" * 24}
    unreachable = smoke("--url", f"http://127.0.0.1:{port}", env=token)
    assert unreachable.returncode == 2
    assert f"cannot reach http://127.0.0.1:{port}" in unreachable.stderr
    broken_app = smoke("--app", "tests.apps.bench_broken:app", env=token)
    assert broken_app.returncode == 2
    assert "the app exited during start-up" in broken_app.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text('[[flow]]\npath = "/"\nexpcet = 200\n')
    result = smoke("--url", f"http://127.0.0.1:{port}", "--scenario", typo)
    assert result.returncode == 2
    assert "'expcet' in flow #1: unknown key (did you mean 'expect'?)" in result.stderr
