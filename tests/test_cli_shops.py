"""`launchready bench` and its built-in scenario against the bundled shops."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SHOPS = {
    "fastapi": ("examples.fastapi_shop.app:app", "examples.fastapi_shop.app"),
    "django": ("examples.django_shop.asgi:application", "examples.django_shop.asgi"),
}


@pytest.mark.slow
@pytest.mark.parametrize("shop", sorted(SHOPS))
def test_default_scenario_passes_against_the_shop(shop: str, tmp_path: Path) -> None:
    """The README's first command (shortened): every route of the shop mix passes, no errors."""
    spec, module = SHOPS[shop]
    if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None:
        pytest.skip(f"{module} is not in this checkout")
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    # A fresh machine: no SHOP_* variable at all; the bench puts the shop in development mode.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env["SHOP_DATA_DIR"] = str(tmp_path / "data")
    options = ["--quiet", "--rate", "30", "--users", "6", "--duration", "3", "--warmup", "1"]
    paths = ["--json", out_json, "--html", out_html, "--server-log", tmp_path / "shop.log"]
    command = [sys.executable, "-m", "launchready_sdk.cli", "bench", "--app", spec, *options]
    command += map(str, paths)
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runs in development mode (SHOP_DEV_MODE=1" in result.stderr
    report = json.loads(out_json.read_text())
    assert report["passed"] is True
    assert report["setup"]["users_ready"] == 6
    assert report["overall"]["errors"] == 0
    assert report["routes"]["GET /products/{id}"]["count"] > 0
    assert report["routes"]["GET /products/{id}"]["server_p95_ms"] is not None
    assert out_html.read_text().startswith("<!DOCTYPE html>")
