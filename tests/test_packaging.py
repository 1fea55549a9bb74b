"""The package as users install it: a wheel built from the tree, installed into a fresh
virtualenv without extras (its dependencies come from the package index)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Pulled in only by extras (or by nothing): a plain install must not bring them.
NOT_IN_CORE = {
    "django",
    "starlette",
    "fastapi",
    "redis",
    "opentelemetry-sdk",
    "opentelemetry-api",
    "opentelemetry-instrumentation-asgi",
    "slowapi",
    "fastapi-cache2",
    "cashews",
    "asgi-correlation-id",
    "tenacity",
    "stamina",
    "prometheus-fastapi-instrumentator",
    "sqlalchemy",
    "gunicorn",
    "celery",
    "dnspython",
    "checkdmarc",
}

SMOKE = """
import asyncio, httpx
from launchready_sdk import LaunchReady, Settings

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

async def main():
    wrapped = LaunchReady(Settings(log_format="console", access_log=False)).wrap(app)
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/healthz")
        ok = await c.get("/")
    assert r.status_code == 200 and ok.text == "ok" and ok.headers["x-request-id"]
    print("served")

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [built] = out.glob("launchready_sdk-*.whl")
    return built


def test_the_wheel_carries_its_licence_types_and_metadata(wheel: Path) -> None:
    """The wheel has the licence, py.typed, the classifiers, and core requirements only."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        [meta] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = z.read(meta).decode()
    assert "launchready_sdk/py.typed" in names
    assert any(n.endswith("/LICENSE") for n in names)
    assert "Classifier: Typing :: Typed" in metadata
    assert "License: MIT" in metadata or "License-Expression: MIT" in metadata
    core = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    names_only = {c.split(">")[0].split("=")[0].split("[")[0].strip().lower() for c in core}
    assert names_only.isdisjoint(NOT_IN_CORE), names_only
    assert {"sniffio", "hiredis", "structlog", "httpx"} <= names_only


@pytest.mark.slow
def test_a_plain_install_imports_serves_and_runs_the_command(wheel: Path, tmp_path: Path) -> None:
    """In a fresh virtualenv, `pip install <wheel>` pulls only the core: the package imports,
    wraps and serves an ASGI app, and `launchready --help` and `--version` run."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, pip = venv / "bin" / "python", venv / "bin" / "pip"
    subprocess.run(
        [str(pip), "install", "--quiet", "--prefer-binary", str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    listed = subprocess.run(
        [str(pip), "list", "--format=json"], check=True, capture_output=True, text=True
    )
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert installed.isdisjoint(NOT_IN_CORE), installed & NOT_IN_CORE
    served = subprocess.run(
        [str(python), "-c", SMOKE], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert served.returncode == 0, served.stderr
    assert "served" in served.stdout
    launchready = venv / "bin" / "launchready"
    helped = subprocess.run([str(launchready), "--help"], capture_output=True, text=True)
    version = subprocess.run([str(launchready), "--version"], capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
    assert "bench" in helped.stdout
    assert version.returncode == 0
    assert version.stdout.strip() == "launchready 0.1.0"
