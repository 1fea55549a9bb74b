"""The status page's parts on their own: error grouping bounds, fingerprints, the Sentry gate,
escaping, and the page as headless Chromium draws it."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any

import httpx

from launchready_sdk import LaunchReady, Settings, redact
from launchready_sdk.status import CSP, ErrorTracker, redact_event, render_page
from launchready_sdk.status._page import LINE_COLOR, OK_COLOR, OVER_COLOR
from tests.conftest import ROOT
from tests.test_cli_html import chromium, count_colour, decode_png, needs_chromium

TOKEN = secrets.token_urlsafe(32)
ARTEFACTS = ROOT / "benchmarks" / "out"


def fail_at(kind: type[Exception], where: int) -> Exception:
    """An exception of `kind` raised (and caught) at one of two lines of one function."""
    try:
        if where == 1:
            raise kind("first")
        raise kind("second")
    except Exception as exc:
        return exc


def other_function() -> Exception:
    try:
        raise ValueError("elsewhere")
    except Exception as exc:
        return exc


def test_fingerprints_follow_type_and_function_not_lines_or_messages() -> None:
    """Same type and function: one group; another function or type: another group."""
    tracker = ErrorTracker(redact=redact)
    a = tracker.capture(fail_at(ValueError, 1))
    b = tracker.capture(fail_at(ValueError, 2))
    c = tracker.capture(other_function())
    d = tracker.capture(fail_at(KeyError, 1))
    assert a is not None
    assert b is not None
    assert c is not None
    assert d is not None
    assert a.fingerprint == b.fingerprint
    assert len({a.fingerprint, c.fingerprint, d.fingerprint}) == 3
    assert a.count == 2
    assert a.message == "second"


def test_an_exception_is_captured_once() -> None:
    """The same exception object reported twice (Django's signal, then ASGI) counts once."""
    tracker = ErrorTracker(redact=redact)
    exc = fail_at(ValueError, 1)
    tracker.capture(exc)
    assert tracker.capture(exc) is None
    assert tracker.captured == 1


async def test_ten_thousand_exception_types_stay_bounded() -> None:
    """10,000 distinct types: 200 groups kept, the rest counted as dropped, the page renders."""
    lr = LaunchReady(Settings(status_token=TOKEN, configure_logging=False))
    assert lr.status is not None
    for n in range(10_000):
        lr.status.errors.capture(fail_at(type(f"Generated{n}", (Exception,), {}), n % 2))
    errors = lr.status.errors
    assert len(errors.groups) == 200
    assert errors.dropped == 9_800
    assert errors.captured == 10_000
    view = await lr.status.view()
    assert len(view["errors"]) == 100
    assert view["errors_dropped"] == 9_800
    assert view["errors"][0]["type"].endswith("Generated9999")
    page = render_page(view)
    assert len(page) < 2_000_000
    assert b"9800 older groups were dropped" in page


async def test_concurrent_views_share_one_build() -> None:
    """Page loads that arrive together get the same view object (one build)."""
    lr = LaunchReady(Settings(status_token=TOKEN, configure_logging=False))
    assert lr.status is not None
    views = await asyncio.gather(*(lr.status.view() for _ in range(20)))
    assert all(v is views[0] for v in views)


def test_the_sentry_gate_strips_locals_query_cookies_and_bodies() -> None:
    """A Sentry-shaped event loses frame locals and request data, and its text is redacted."""
    event: dict[str, Any] = {
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": "declined for sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "charge",
                                "context_line": "    key = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'",
                                "vars": {"card": "4242424242424242"},
                            }
                        ]
                    },
                }
            ]
        },
        "request": {
            "method": "POST",
            "url": "https://shop.example/pay?token=abc",
            "query_string": "token=abc",
            "cookies": {"sessionid": "s3cr3t"},
            "data": {"password": "hunter2"},
            "headers": {
                "Authorization": "Bearer abcdefghijklmnopqrstuvwxyz012345",
                "Accept": "*/*",
            },
            "env": {"REMOTE_ADDR": "10.0.0.1"},
        },
        "extra": {"note": "password=hunter2"},
    }
    cleaned = redact_event(event, {}, redact)
    text = json.dumps(cleaned)
    for leak in ("4eC39HqLyjWDarjtT1zdp7dc", "4242424242424242", "s3cr3t", "hunter2", "abcdefghij"):
        assert leak not in text
    assert "vars" not in cleaned["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert cleaned["request"]["url"] == "https://shop.example/pay"
    assert set(cleaned["request"]) == {"method", "url", "headers"}
    assert cleaned["request"]["headers"]["Accept"] == "*/*"


def hostile_view() -> dict[str, Any]:
    evil = '<script>alert("x")</script>'
    return {
        "scope": "worker",
        "generated_at": "2026-01-01T00:00:00.000+00:00",
        "redis": "none",
        "service": evil,
        "version": "1",
        "uptime_s": 5,
        "window_s": 300,
        "routes": {
            f"GET /{evil}": {
                "count": 30,
                "errors": 1,
                "error_rate": 0.0333,
                "p50_ms": 10.0,
                "p95_ms": 900.0,
                "p99_ms": 1200.0,
                "budget_ms": 500.0,
                "over_budget": True,
                "over_budget_count": 4,
                "p95_per_minute_ms": [100.0, None, 900.0],
            }
        },
        "health": {evil: {"ok": False, "error": evil, "age_s": 1.0, "duration_ms": 2.0}},
        "errors": [
            {"type": evil, "message": evil, "traceback": evil, "route": evil, "request_id": "r"}
        ],
        "slow_requests": [{"at": evil, "method": "GET", "route": evil, "status": 200}],
        "cache": {evil: {"hit": 1, "miss": 1, "stale": 0, "bypass": 0, "hit_ratio": 0.5}},
        "rate_limits": {"refused": 2, "by_rule": {evil: 2}},
        "outbound": {evil: {"calls": 3, "errors": 1, "breaker": "open"}},
    }


def test_the_page_escapes_everything_and_loads_nothing() -> None:
    """Hostile names are escaped; no script, no inline style attribute, no external resource."""
    page = render_page(hostile_view()).decode()
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert not re.search(r"\sstyle=", page)
    assert not re.search(r"(src|href)\s*=", page)
    assert "url(" not in page
    assert "OVER BUDGET" in page
    assert "script-src" not in CSP


def test_a_failing_section_leaves_the_rest_of_the_page() -> None:
    """A malformed section is replaced by a note; the other sections still render."""
    view = hostile_view()
    view["outbound"] = {"h": None}
    page = render_page(view).decode()
    assert "could not be shown" in page
    assert "OVER BUDGET" in page


@needs_chromium
def test_the_page_renders_in_headless_chromium(serve: Any) -> None:
    """Chromium draws the page under its own CSP: charts, an over-budget row, errors; kept as
    benchmarks/out/status-page.png."""
    env = {
        "LAUNCHREADY_STATUS_TOKEN": TOKEN,
        "LAUNCHREADY_LATENCY_BUDGETS": "GET /slow/{ms}=50",
    }
    server = serve("tests.apps.status_app:app", env)

    async def traffic() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            await asyncio.gather(*(c.get(f"/slow/{70 + i}") for i in range(25)))
            await asyncio.gather(*(c.get(f"/products/{i}") for i in range(40)))
            for kind in ("secret", "chained", "recursion"):
                await c.get(f"/boom/{kind}")

    asyncio.run(traffic())
    html = httpx.get(
        server.url + "/_launchready/status", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page = ARTEFACTS / "status-page.html"
    page.write_text(html.text, encoding="utf-8")

    dom = chromium("--dump-dom", page.as_uri()).stdout
    assert dom.count("<svg") >= 2
    assert re.search(r'<path class="p95" d="M[^"]+"', dom)
    assert "OVER BUDGET" in dom
    assert "<script" not in dom

    shot = ARTEFACTS / "status-page.png"
    chromium(f"--screenshot={shot}", "--window-size=1300,1400", page.as_uri())
    png = decode_png(shot.read_bytes())
    assert png[0] == 1300
    assert count_colour(png, OVER_COLOR) > 200  # the OVER BUDGET badge and red-marked points
    assert count_colour(png, OK_COLOR) > 50  # the green "pass" badges
    assert count_colour(png, LINE_COLOR) > 5  # the p95 points (one minute of data: no line yet)
    assert count_colour(png, "#ffebe9") > 2000  # the over-budget row's background: styles applied
