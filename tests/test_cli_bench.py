"""`launchready bench` end to end: real uvicorn servers on 127.0.0.1, short and slow runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, free_port

APP = "tests.apps.bench_app:app"
TRUST = {"LAUNCHREADY_TRUSTED_PROXIES": "127.0.0.1/32,::1/128"}

SIGNUP_SCENARIO = """\
name = "bench app"

[vars]
email = "u{vu}-{run}@example.com"

[[setup]]
method = "POST"
path = "/signup"
json = { email = "{email}" }
expect = 201
capture = { token = "token" }

[[flow]]
weight = 4
path = "/"

[[flow]]
weight = 3
route = "GET /items/{item_id}"
path = "/items/{rand:1:50}"

[[flow]]
weight = 1
path = "/chunked"

[[flow]]
weight = 2
path = "/me"
headers = { Authorization = "Bearer {token}" }
expect = 200
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def command(options: str, *args: str | Path) -> list[str]:
    """`python -m launchready_sdk.cli bench --quiet` + the words of `options` + `args`."""
    return [
        sys.executable,
        "-m",
        "launchready_sdk.cli",
        "bench",
        "--quiet",
        *options.split(),
        *map(str, args),
    ]


def bench(options: str, *args: str | Path, env: dict[str, str] | None = None) -> Any:
    """Run the command from the repository root; the CompletedProcess."""
    return subprocess.run(
        command(options, *args),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def load(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def test_app_passes_and_writes_json_and_html(tmp_path: Path) -> None:
    """A healthy app: exit 0, a PASS table, the DESIGN.md JSON schema and an HTML file."""
    scenario = write(tmp_path, "s.toml", SIGNUP_SCENARIO)
    out_json, out_html, log = tmp_path / "r.json", tmp_path / "r.html", tmp_path / "app.log"
    result = bench(
        f"--app {APP} --rate 40 --users 8 --duration 2 --warmup 0.5",
        *("--scenario", scenario, "--json", out_json, "--html", out_html, "--server-log", log),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS: every route" in result.stdout
    assert str(log) in result.stderr
    assert log.stat().st_mode & 0o777 == 0o600  # the app's output is the user's alone
    report = load(out_json)
    assert report["passed"] is True
    assert set(report["routes"]) == {"GET /", "GET /items/{item_id}", "GET /chunked", "GET /me"}
    for entry in report["routes"].values():
        assert {"p50_ms", "p95_ms", "p99_ms", "count", "errors"} <= set(entry)
        assert entry["count"] > 0
        assert entry["errors"] == 0
    # eight users signed up although /signup allows five a minute per client: each user
    # carried its own X-Forwarded-For address, which the booted app was told to trust
    assert report["setup"] == {"users_requested": 8, "users_ready": 8, "errors": {}}
    assert report["routes"]["GET /"]["server_p95_ms"] is not None
    assert report["load"]["model"] == "open"
    assert isinstance(report["generator_saturated"], bool)
    assert len(report["timeline"]) == 2
    assert out_html.read_text().startswith("<!DOCTYPE html>")


def test_slow_route_fails_the_bar_and_is_named(tmp_path: Path) -> None:
    """A route sleeping 100 ms against `--p95-ms 50`: exit 1, the route and reason printed."""
    scenario = write(
        tmp_path,
        "s.toml",
        '[[flow]]\npath = "/"\n\n[[flow]]\npath = "/slow"\n\n[routes."GET /"]\np95_ms = 400\n',
    )
    out_json = tmp_path / "r.json"
    result = bench(
        f"--app {APP} --rate 20 --duration 2 --warmup 0 --p95-ms 50",
        *("--scenario", scenario, "--json", out_json),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  GET /slow: p95 " in result.stdout
    assert "is above 50 ms" in result.stdout
    report = load(out_json)
    assert report["passed"] is False
    assert report["routes"]["GET /slow"]["passed"] is False
    assert report["routes"]["GET /slow"]["p95_ms"] >= 100
    assert report["routes"]["GET /"]["passed"] is True


def test_errors_are_counted_unless_expected(tmp_path: Path) -> None:
    """500s count as errors and fail the bar; statuses a step expects do not."""
    scenario = write(
        tmp_path,
        "s.toml",
        '[[flow]]\npath = "/flaky"\n\n[[flow]]\npath = "/boom"\nexpect = [500]\n',
    )
    out_json = tmp_path / "r.json"
    result = bench(
        f"--app {APP} --rate 40 --duration 2 --warmup 0",
        *("--scenario", scenario, "--json", out_json),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = load(out_json)
    flaky = report["routes"]["GET /flaky"]
    assert flaky["errors"] > 0
    assert 0.1 < flaky["error_rate"] < 0.4  # every fourth request answers 500
    assert flaky["error_kinds"] == {"status 500": flaky["errors"]}
    assert "GET /flaky: error rate" in result.stdout
    assert report["routes"]["GET /boom"]["errors"] == 0
    assert report["routes"]["GET /boom"]["statuses"]["500"] > 0


def test_url_targets_a_running_server(tmp_path: Path, serve: Any) -> None:
    """--url drives an app someone else started, closed model, and reads its /metrics."""
    server = serve(APP, TRUST)
    scenario = write(tmp_path, "s.toml", SIGNUP_SCENARIO)
    out_json = tmp_path / "r.json"
    result = bench(
        f"--url {server.url} --users 3 --duration 1.5 --warmup 0.5",
        *("--scenario", scenario, "--json", out_json),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = load(out_json)
    assert report["target"] == server.url
    assert report["load"]["model"] == "closed"
    assert report["server"]["metrics"] is True
    assert report["routes"]["GET /items/{item_id}"]["server_p95_ms"] is not None
    addresses = {line.get("client_ip") for line in server.log_lines() if line.get("path") == "/me"}
    assert len(addresses) == 3  # one client address per virtual user


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--app", "no_such_module_here:app"], "no module named 'no_such_module_here'"),
        (["--app", "not-a-spec"], "expected module:attribute"),
        (["--app", "tests.apps.not_there:app"], 'Could not import module "tests.apps.not_there"'),
        (["--url", "ftp://127.0.0.1/"], "not an http(s) URL"),
    ],
)
def test_bad_targets_are_one_line_errors(args: list[str], expected: str) -> None:
    """A bad --app or --url: exit 2 and one line on stderr, no traceback."""
    result = bench("--duration 1", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("launchready bench: error: ")
    assert expected in lines[-1]
    assert "Traceback" not in result.stderr
    assert len([line for line in lines if "error" in line]) == 1


def test_unreachable_url_is_a_one_line_error() -> None:
    """Nothing listening at --url: exit 2, one line naming the address."""
    port = free_port()
    result = bench(f"--url http://127.0.0.1:{port} --duration 1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"launchready bench: error: cannot reach http://127.0.0.1:{port}: "
        f"cannot connect to 127.0.0.1:{port}"
    )


def test_app_that_fails_to_boot_shows_its_log(tmp_path: Path) -> None:
    """An app raising at import: exit 2, one error line, then the tail of its own log."""
    result = bench(
        "--app tests.apps.bench_broken:app --duration 1", "--server-log", tmp_path / "app.log"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("launchready bench: error:")]
    assert errors == [
        "launchready bench: error: the app exited during start-up with code 1: "
        "RuntimeError: bench_broken: the database URL is missing"
    ]
    assert "tests/apps/bench_broken.py" in result.stderr  # the tail of the app's log
    assert "launchready_sdk/cli" not in result.stderr  # no traceback of the bench itself


def test_scenario_typo_names_line_and_key(tmp_path: Path) -> None:
    """A typo in the scenario stops the bench before any load, naming line and key."""
    scenario = write(tmp_path, "s.toml", '[[flow]]\npath = "/"\nwieght = 2\n')
    result = bench(f"--app {APP}", "--scenario", scenario)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"launchready bench: error: {scenario}:3: 'wieght' in flow #1: "
        "unknown key (did you mean 'weight'?)"
    )


def test_an_infinite_weight_is_refused_before_any_load(tmp_path: Path) -> None:
    """`weight = inf` (which used to spin an open-model run at 100 % CPU) stops the bench at
    load time: exit 2, the file, the line and the key."""
    scenario = write(tmp_path, "s.toml", '[[flow]]\npath = "/"\nweight = inf\n')
    result = bench(f"--app {APP} --rate 50 --duration 1", "--scenario", scenario)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"launchready bench: error: {scenario}:3: 'weight' in flow #1: "
        "must be a number above 0 and at most 1,000,000, got float inf"
    )


def test_unknown_option_is_a_usage_error() -> None:
    """argparse refuses unknown options with exit 2."""
    result = bench(f"--app {APP} --rps 10")
    assert result.returncode == 2
    assert "unrecognized arguments: --rps" in result.stderr


def test_server_dying_mid_run_is_reported(tmp_path: Path, serve: Any) -> None:
    """The server killed during the run: errors counted, exit 1, the report still written."""
    server = serve(APP, TRUST)
    scenario = write(tmp_path, "s.toml", '[[flow]]\npath = "/"\n')
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    args = command(
        f"--url {server.url} --rate 30 --duration 4 --warmup 0 --timeout 1",
        *("--scenario", scenario, "--json", out_json, "--html", out_html),
    )
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not any(line.get("path") == "/" for line in server.log_lines()):
        assert time.monotonic() < deadline, "the bench sent nothing"
        time.sleep(0.1)
    time.sleep(0.5)
    server.proc.kill()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stdout.decode() + stderr.decode()
    report = load(out_json)
    route = report["routes"]["GET /"]
    assert route["errors"] > 0
    assert route["count"] > route["errors"]  # the first part of the run was answered
    assert set(route["error_kinds"]) <= {"connect", "closed", "timeout"}
    assert any("no server-side figures" in w for w in report["warnings"])
    assert out_html.exists()


def test_generator_reports_when_it_cannot_hold_the_rate(tmp_path: Path) -> None:
    """An impossible rate for two users is flagged, in the table and in the JSON."""
    scenario = write(tmp_path, "s.toml", 'forwarded_for = false\n[[flow]]\npath = "/"\n')
    out_json = tmp_path / "r.json"
    result = bench(
        "--app tests.apps.bench_trivial:app --rate 200000 --users 2 --duration 1 --warmup 0",
        *("--timeout", "1", "--scenario", scenario, "--json", out_json),
    )
    report = load(out_json)
    assert report["generator_saturated"] is True
    assert report["generator"]["reasons"]
    assert "WARNING: the load generator could not keep up" in result.stdout
    # the rate actually sent, not the one asked for, and the run fails naming the generator
    generator = report["generator"]
    assert generator["held_rate"] is False
    assert generator["achieved_rps"] < 0.95 * generator["requested_rps"]
    assert report["throughput_rps"] <= generator["achieved_rps"]
    assert result.returncode == 1
    (failure,) = [f for f in report["failures"] if "load generator" in f]
    assert failure.startswith("the load generator could not hold the requested rate: it sent ")
    assert "These figures describe the bench, not the app" in failure
