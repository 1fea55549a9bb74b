"""`launchready smoke`: every flow of a scenario once, in order, in seconds: the CI smoke test.

    launchready smoke --app examples.fastapi_shop.app:app
    launchready smoke --url https://staging.shop.example --scenario flows.toml

One virtual user runs the scenario's setup steps, then each flow once, in file order, checking
every step's status (`expect`) and captures. The first step that fails ends the run: the
output names the flow, the step, what was wrong and the request id of the failing request
(each request carries an `X-Request-ID` of its own; the app's answer, when it sends one, is
the id shown, so it can be found in the app's log).

Exit status: 0 when every flow passed, 1 when one failed, 2 on usage errors (a bad option, a
scenario that does not compile, an environment variable a template needs that is not set) and
when the app cannot be booted or reached, 130 when interrupted.

The built-in scenario (`default_smoke.toml`) covers the bundled shops' core flows: the
homepage, sign-up and login, checkout initiation and an admin action (its token comes from
`SHOP_ADMIN_TOKEN`, which `--app` sets for a bundled shop it boots).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import orjson

from launchready_sdk.cli.client import ClientError, Origin, Pool
from launchready_sdk.cli.loadgen import LoadGenerator, Outcome, VirtualUser
from launchready_sdk.cli.scenario import Scenario, ScenarioError, Step
from launchready_sdk.cli.scenario_toml import load_scenario, parse_scenario
from launchready_sdk.cli.server import AppServer, BootError, check_app_spec, default_log_path
from launchready_sdk.cli.stats import Recorder

EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_BOOT_TIMEOUT_S = 60.0
_MISSING_DATA = frozenset({404, 410})


class SmokeError(Exception):
    """A reason the smoke test could not run (exit 2)."""


def add_parser(commands: Any) -> None:
    """Register `smoke` on the `launchready` sub-command parser."""
    p = commands.add_parser(
        "smoke",
        help="run every flow of a scenario once: a smoke test for CI",
        description="Boot an app (--app) or target a running one (--url) and run every flow of "
        "the scenario once, in order. Exits 0 when all pass, 1 on the first broken flow "
        "(naming the flow, the step and the request id), 2 on usage or boot errors.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--app", metavar="MODULE:ATTR", help="boot this ASGI app under uvicorn")
    target.add_argument("--url", metavar="URL", help="target an app already running at URL")
    add = p.add_argument
    add("--scenario", metavar="FILE", type=Path, help="scenario TOML (default: the shops' smoke)")
    add("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
        help="per request (default %(default)g)")  # fmt: skip
    add("--boot-timeout", type=float, default=DEFAULT_BOOT_TIMEOUT_S, metavar="SECONDS",
        help="wait this long for the health path (default %(default)g)")  # fmt: skip
    add("--health-path", default="/healthz", metavar="PATH", help="default %(default)s")
    add("--server-log", type=Path, metavar="PATH", help="the booted app's log (default: temp)")
    p.set_defaults(handler=run)


def default_smoke(environ: Mapping[str, str] | None = None) -> Scenario:
    """The built-in smoke scenario for the bundled shops."""
    resource = resources.files("launchready_sdk.cli").joinpath("default_smoke.toml")
    return parse_scenario(resource.read_text(encoding="utf-8"), "<built-in smoke>", environ)


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the command; returns the exit status."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    if not args.timeout > 0 or not args.boot_timeout > 0:
        print("launchready smoke: error: --timeout and --boot-timeout must be above 0", file=err)
        return EXIT_ERROR
    server: AppServer | None = None
    try:
        environ: Mapping[str, str] = os.environ
        if args.app:
            problem = check_app_spec(args.app, os.getcwd())
            if problem:
                raise SmokeError(problem)
            server = AppServer(args.app, args.server_log or default_log_path())
            environ = server.environ
        scenario = (
            load_scenario(args.scenario, environ) if args.scenario else default_smoke(environ)
        )
        if server is not None:
            print(f"launchready smoke: starting {args.app}; its log: {server.log_path}", file=err)
            server.start()
        url = server.url if server is not None else args.url
        with asyncio.Runner() as runner:
            return runner.run(_smoke(args, scenario, url, server, out))
    except (ScenarioError, SmokeError, BootError) as exc:
        print(f"launchready smoke: error: {exc}", file=err)
        if isinstance(exc, BootError) and exc.log_tail:
            print(exc.log_tail, file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\nlaunchready smoke: interrupted", file=err)
        return EXIT_INTERRUPTED
    finally:
        if server is not None:
            server.stop()


async def _smoke(
    args: argparse.Namespace,
    scenario: Scenario,
    url: str,
    server: AppServer | None,
    out: TextIO,
) -> int:
    try:
        origin = Origin.parse(url)
    except ValueError as exc:
        raise SmokeError(f"--url: {exc}") from None
    pool = Pool(origin, max_connections=2, timeout_s=args.timeout)
    try:
        if server is not None:
            await server.wait_ready(args.health_path, args.boot_timeout)
        else:
            try:
                await pool.request("GET", args.health_path)
            except ClientError as exc:
                raise SmokeError(f"cannot reach {origin}: {exc}") from None
        return await _flows(scenario, pool, out)
    finally:
        await pool.close()


async def _flows(scenario: Scenario, pool: Pool, out: TextIO) -> int:
    generator = LoadGenerator(pool, scenario, Recorder(), run_id=uuid.uuid4().hex[:8])
    user = generator.new_user(1)
    started = time.perf_counter()
    print(f"launchready smoke: {scenario.name} -> {pool.origin}", file=out)
    flows = [("setup", scenario.setup)] if scenario.setup else []
    flows += [(flow.name, flow.steps) for flow in scenario.flows]
    for name, steps in flows:
        began = time.perf_counter()
        for number, step in enumerate(steps, 1):
            request_id = uuid.uuid4().hex
            outcome = await generator.send(user, step, [("X-Request-ID", request_id)])
            if outcome.error is not None:
                where = f"{name!r}, step {number} of {len(steps)} ({step.route})"
                print(f"  FAIL  {where}: {_explain(step, outcome, user)}", file=out)
                print(f"        request id: {_request_id(outcome, request_id)}", file=out)
                print(f"FAIL: flow {name!r} is broken; later flows were not run", file=out)
                return EXIT_FAIL
        took = (time.perf_counter() - began) * 1000
        noun = "step" if len(steps) == 1 else "steps"
        print(f"  ok    {name}: {len(steps)} {noun}, {took:.0f} ms", file=out)
    total = time.perf_counter() - started
    print(f"PASS: {len(scenario.flows)} flows in {total:.1f} s", file=out)
    return EXIT_PASS


def _request_id(outcome: Outcome, sent: str) -> str:
    if outcome.response is not None:
        return outcome.response.headers.get("x-request-id", sent)
    return f"{sent} (sent; no response came)"


def _explain(step: Step, outcome: Outcome, user: VirtualUser) -> str:
    """What went wrong, in words: the status against what was expected, a missing capture, or
    data the step needs that the app does not have."""
    error = outcome.error or ""
    response = outcome.response
    detail = _problem(response.body) if response is not None else ""
    expected = ", ".join(str(s) for s in sorted(step.expect)[:5])
    if len(step.expect) > 5:
        expected = "200-399" if len(step.expect) == 200 else expected + ", ..."
    if response is not None and error.startswith("status "):
        text = f"status {response.status}, expected {expected}"
        if response.status in _MISSING_DATA:
            text += (
                ": the data this step needs does not exist in the app"
                f" ({step.method} {step.path.render(user.values)})"
            )
        return text + (f"; the app said: {detail}" if detail else "")
    if error.startswith("capture "):
        return (
            f"{error}: the data this step needs is not there (a later step reads it); "
            f"the response was {response.status if response else 'empty'}"
            + (f": {detail}" if detail else "")
        )
    return error


def _problem(body: bytes) -> str:
    """The `title`/`detail` of a problem+json body, or the first of it as text."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:200].decode("utf-8", "replace").strip()
        return text if text.isprintable() else ""
    if isinstance(document, dict):
        parts = [str(document[k]) for k in ("title", "detail") if document.get(k)]
        return " - ".join(dict.fromkeys(parts))[:300]
    return ""
