"""The HTML report: self-contained, escaped, and its charts render in headless Chromium."""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from launchready_sdk.cli.html import FAIL_COLOR, P50_COLOR, P95_COLOR, PASS_COLOR, render_html
from launchready_sdk.cli.report import Thresholds, build_report
from launchready_sdk.cli.scenario_toml import parse_scenario
from launchready_sdk.cli.stats import Recorder

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVIL = 'GET /<script>alert("x")</script>'
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)",
)


def sample_report() -> dict[str, Any]:
    """Ten seconds of three routes: fast, medium (with a hostile name) and over budget."""
    scenario = parse_scenario(
        f'[[flow]]\npath = "/"\n[[flow]]\nroute = {EVIL!r}\npath = "/x"\n'
        '[[flow]]\npath = "/slow"\n',
        "s.toml",
    )
    rec = Recorder(scenario.route_names)
    rec.open_window(0.0, 10.0)
    rng = random.Random(7)
    for i in range(1000):
        t = i / 100
        rec.add("GET /", t, t + rng.uniform(0.002, 0.02), 200, None)
        rec.add(EVIL, t, t + rng.uniform(0.01, 0.05), 200, None)
        rec.add("GET /slow", t, t + rng.uniform(0.1, 0.3), 200, None)
    server = {"GET /": {"p95_ms": 4.8, "bucket_ms": [0.0, 5.0]}}
    meta = {"scenario": "<b>shop</b>", "target": "http://127.0.0.1:1", "warnings": ["<i>w</i>"]}
    return build_report(
        recorder=rec,
        scenario=scenario,
        thresholds=Thresholds(p95_ms=250),
        server_p95=server,
        duration_s=10.0,
        meta=meta,
    )


def test_html_is_self_contained_and_escaped() -> None:
    """No scripts, no external resources; names from the scenario and app are escaped."""
    html = render_html(sample_report())
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;b&gt;shop&lt;/b&gt;" in html
    assert "&lt;i&gt;w&lt;/i&gt;" in html
    assert not re.search(r"(src|href)\s*=", html)
    assert "url(" not in html
    assert html.count("<svg") == 2


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw pixels) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8
    assert interlace == 0
    channels = {2: 3, 6: 4}[color]
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray()
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        out += line
        previous = line
    return width, height, channels, bytes(out)


def count_colour(png: tuple[int, int, int, bytes], hex_colour: str, tolerance: int = 6) -> int:
    _, _, channels, pixels = png
    want = bytes.fromhex(hex_colour.lstrip("#"))
    n = 0
    for i in range(0, len(pixels), channels):
        if all(abs(pixels[i + k] - want[k]) <= tolerance for k in range(3)):
            n += 1
    return n


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-dev-shm-usage",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


@needs_chromium
def test_charts_render_in_headless_chromium(tmp_path: Path) -> None:
    """Chromium draws both charts: p50/p95 lines, green and red bars, no network needed."""
    page = tmp_path / "report.html"
    page.write_text(render_html(sample_report()), encoding="utf-8")
    url = page.as_uri()

    dom = chromium("--dump-dom", url).stdout
    assert '<svg id="latency-chart"' in dom
    assert '<svg id="budget-chart"' in dom
    for cls in ("p50", "p95"):
        d = re.search(rf'<path class="{cls}" d="([^"]+)"', dom)
        assert d is not None
        assert d.group(1).count("L") >= 8  # one point per second of the run
    assert dom.count('class="bar pass"') == 2
    assert dom.count('class="bar fail"') == 1
    assert "<script" not in dom.replace("&lt;script", "")

    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,1300", url)
    png = decode_png(shot.read_bytes())
    assert png[0] == 1000
    assert count_colour(png, PASS_COLOR) > 1500  # two green bars, plus the PASS-coloured legend
    assert count_colour(png, FAIL_COLOR) > 3000  # the red bar of GET /slow
    assert count_colour(png, P95_COLOR) > 300  # the p95 line
    assert count_colour(png, P50_COLOR) > 300  # the p50 line
    white = count_colour(png, "#ffffff", tolerance=0)
    assert white < png[0] * png[1] * 0.97  # not a blank page
