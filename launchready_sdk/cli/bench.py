"""`launchready bench`: boot or target an app, drive a scenario, judge it against the launch bar.

Exit status: 0 when every route is within its p95 budget and error-rate limit, 1 when the bar
is missed, 2 for usage errors and when the app cannot be booted, reached or set up, 3 when the
bench itself failed (a fault of its own, never the app's: the figures cannot be trusted, so
the run is neither a pass nor a miss), 130 when interrupted. The table goes to stdout;
progress, notices and errors to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import os
import random
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from launchready_sdk.cli import servertime
from launchready_sdk.cli.cireports import render_csv, render_junit
from launchready_sdk.cli.client import ClientError, Origin, Pool
from launchready_sdk.cli.html import render_html
from launchready_sdk.cli.loadgen import GeneratorHealth, LoadGenerator, LoadPlan, describe_fault
from launchready_sdk.cli.metrics import delta, query_p95, server_p95
from launchready_sdk.cli.notes import DEFAULT_PAYLOAD_LIMIT_BYTES
from launchready_sdk.cli.progress import Progress
from launchready_sdk.cli.report import (
    Thresholds,
    build_report,
    render_table,
    write_json,
    write_text,
)
from launchready_sdk.cli.scenario import Scenario, ScenarioError
from launchready_sdk.cli.scenario_toml import default_scenario, load_scenario
from launchready_sdk.cli.server import AppServer, BootError, check_app_spec, default_log_path
from launchready_sdk.cli.stats import DEFAULT_PERCENTILES, Recorder

DEFAULT_RATE = 50.0
DEFAULT_DURATION_S = 30.0
DEFAULT_WARMUP_S = 5.0
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_BOOT_TIMEOUT_S = 60.0
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_INTERNAL_HINT = "this is a fault of launchready bench, not of the app; please report it"


class BenchError(Exception):
    """A one-line reason the bench could not run; `detail` is shown under it."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class InternalError(Exception):
    """The bench failed on its own account (exit 3): its figures cannot be trusted."""


def _number(kind: Callable[[str], float], low: float, inclusive: bool, what: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


def _error_rate(text: str) -> float:
    value: float = _number(float, 0.0, True, "a rate from 0 to 1")(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate from 0 to 1 (1 %% is 0.01)")
    return value


def _percentiles(text: str) -> tuple[float, ...]:
    """`50,90,95,99,99.9`: each above 0 and below 100."""
    values = []
    for part in text.split(","):
        try:
            value = float(part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a percentile") from None
        if not 0 < value < 100 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a percentile (0-100)")
        values.append(value)
    return tuple(sorted(set(values)))


def add_parser(commands: Any) -> None:
    """Register `bench` on the `launchready` sub-command parser."""
    positive = _number(float, 0.0, False, "a positive number")
    p = commands.add_parser(
        "bench",
        help="load-test an app against the launch bar (p95, error rate)",
        description="Boot an app (--app) or target a running one (--url), drive a scenario "
        "and judge every route against the launch bar. Exits 0 on PASS, 1 on FAIL, "
        "2 when the app cannot be booted or reached, 3 when the bench itself failed. "
        "The scenario format: see the README.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--app", metavar="MODULE:ATTR", help="boot this ASGI app under uvicorn")
    target.add_argument("--url", metavar="URL", help="target an app already running at URL")
    add = p.add_argument
    add("--scenario", metavar="FILE", type=Path, help="scenario TOML (default: the shops')")
    add("--rate", type=positive, help=f"open model: requests/s (default {DEFAULT_RATE:g})")
    add(
        "--users",
        type=_number(int, 1, True, "an integer >= 1"),
        help="virtual users; without --rate: closed model, each sends back to back",
    )
    add(
        "--duration",
        type=positive,
        default=DEFAULT_DURATION_S,
        metavar="SECONDS",
        help="measured time (default %(default)g)",
    )
    add(
        "--warmup",
        type=_number(float, 0.0, True, "a number >= 0"),
        default=DEFAULT_WARMUP_S,
        metavar="SECONDS",
        help="load sent first, not counted (default %(default)g)",
    )
    add(
        "--p95-ms",
        type=positive,
        default=500.0,
        metavar="MS",
        help="p95 budget of every route (default %(default)g)",
    )
    add(
        "--max-error-rate",
        type=_error_rate,
        default=0.01,
        metavar="RATE",
        help="error-rate limit of every route (default %(default)g)",
    )
    add(
        "--db-p95-ms",
        type=positive,
        default=100.0,
        metavar="MS",
        help="p95 budget of every SQL statement the app exports (default %(default)g)",
    )
    add(
        "--timeout",
        type=positive,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="per request (default %(default)g)",
    )
    add("--json", type=Path, metavar="PATH", help="write the JSON report here")
    add("--html", type=Path, metavar="PATH", help="write the HTML report here")
    add("--junit", type=Path, metavar="PATH", help="write JUnit XML: one test case per route")
    add("--csv", type=Path, metavar="PATH", help="write the per-second series per route (CSV)")
    add(
        "--percentiles",
        type=_percentiles,
        default=DEFAULT_PERCENTILES,
        metavar="LIST",
        help="percentiles to report, e.g. 50,90,95,99,99.9 (default 50,95,99)",
    )
    add(
        "--payload-kb",
        type=positive,
        default=DEFAULT_PAYLOAD_LIMIT_BYTES / 1024,
        metavar="KB",
        help="flag JSON responses whose p95 size is over this (default %(default)g)",
    )
    add(
        "--server-log",
        type=Path,
        metavar="PATH",
        help="the booted app's log (default: a temp file)",
    )
    add(
        "--boot-timeout",
        type=positive,
        default=DEFAULT_BOOT_TIMEOUT_S,
        metavar="SECONDS",
        help="wait this long for the health path (default %(default)g)",
    )
    add("--health-path", default="/healthz", metavar="PATH", help="default %(default)s")
    add("--metrics-path", default="/metrics", metavar="PATH", help="default %(default)s")
    add("--seed", type=int, help="seed of the random choices, for repeatable mixes")
    add("--quiet", action="store_true", help="no progress line")
    p.set_defaults(handler=run)


def plan_from(args: argparse.Namespace) -> LoadPlan:
    """The load model the options ask for."""
    if args.rate is None and args.users is not None:
        return LoadPlan("closed", args.users, args.duration, args.warmup)
    rate = DEFAULT_RATE if args.rate is None else args.rate
    users = args.users or max(20, min(200, math.ceil(rate / 2)))
    return LoadPlan("open", users, args.duration, args.warmup, rate)


def describe(plan: LoadPlan) -> str:
    if plan.model == "open":
        load = f"open model, {plan.rate:g} req/s from {plan.users} virtual users"
    else:
        load = f"closed model, {plan.users} virtual users back to back"
    return f"{load}, {plan.duration_s:g} s after a {plan.warmup_s:g} s warm-up"


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the command; returns the exit status."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    server: AppServer | None = None
    try:
        scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
        for path in (args.json, args.html, args.junit, args.csv):
            if path is not None:
                _check_writable(path)
        plan = plan_from(args)
        if args.app:
            problem = check_app_spec(args.app, os.getcwd())
            if problem:
                raise BenchError(problem)
            server = AppServer(args.app, args.server_log or default_log_path())
            print(f"launchready bench: starting {args.app}; its log: {server.log_path}", file=err)
            if server.shop_dev_mode:
                print(
                    "launchready bench: the bundled shop runs in development mode "
                    "(SHOP_DEV_MODE=1: development secrets, fake payment provider)",
                    file=err,
                )
            server.start()
        url = server.url if server else args.url
        report = _run_async(args, scenario, plan, url, server, err)
    except (ScenarioError, BenchError, BootError) as exc:
        print(f"launchready bench: error: {exc}", file=err)
        if isinstance(exc, BootError) and exc.log_tail and server is not None:
            print(f"last lines of the app's log ({server.log_path}):", file=err)
            print(_indent(exc.log_tail), file=err)
        elif isinstance(exc, BenchError) and exc.detail:
            print(f"hint: {exc.detail}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\nlaunchready bench: interrupted", file=err)
        return EXIT_INTERRUPTED
    except InternalError as exc:
        print(f"launchready bench: internal error: {exc}", file=err)
        print(f"hint: {_INTERNAL_HINT}", file=err)
        return EXIT_INTERNAL
    except Exception as exc:  # never a raw traceback, never the exit status of a missed bar
        print(f"launchready bench: internal error: {describe_fault(exc)}", file=err)
        print(f"hint: {_INTERNAL_HINT}", file=err)
        return EXIT_INTERNAL
    finally:
        if server is not None:
            server.stop()
    try:
        if args.json:
            write_json(report, args.json)
        if args.html:
            write_text(args.html, render_html(report))
        if args.junit:
            write_text(args.junit, render_junit(report))
        if args.csv:
            write_text(args.csv, render_csv(report))
    except OSError as exc:
        print(f"launchready bench: error: cannot write the report: {exc}", file=err)
        return EXIT_ERROR
    try:
        print(render_table(report), file=out, flush=True)
        if server is not None and report["server"]["exited"] is not None:
            print(f"the app exited during the run; its log ({server.log_path}) ends:", file=err)
            print(_indent(server.log_tail()), file=err)
        reports = (("JSON", args.json), ("HTML", args.html), ("JUnit", args.junit))
        for label, path in (*reports, ("CSV", args.csv)):
            if path is not None:
                print(f"{label} report: {path}", file=err)
    except BrokenPipeError:  # `launchready bench ... | head`: the verdict is in the exit status
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if report["generator"]["internal_errors"]:
        print(f"launchready bench: internal error: {_internal_summary(report)}", file=err)
        print(f"hint: {_INTERNAL_HINT}", file=err)
        return EXIT_INTERNAL
    return EXIT_PASS if report["passed"] else EXIT_FAIL


def _internal_summary(report: dict[str, Any]) -> str:
    generator = report["generator"]
    n = generator["internal_errors"]
    return (
        f"{n} request{'s' if n != 1 else ''} failed inside the bench, so this run is "
        f"neither a pass nor a miss; the first: {generator['first_internal_error']}"
    )


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise BenchError(f"{path} is a directory; give a file name for the report")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create {parent} for the report: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise BenchError(f"cannot write the report to {path}: {parent} is not writable")


def _indent(text: str) -> str:
    return "\n".join(f"  | {line}" for line in text.splitlines())


def _run_async(
    args: argparse.Namespace,
    scenario: Scenario,
    plan: LoadPlan,
    url: str,
    server: AppServer | None,
    err: TextIO,
) -> dict[str, Any]:
    try:
        origin = Origin.parse(url)
    except ValueError as exc:
        raise BenchError(f"--url: {exc}") from None
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_bench(args, scenario, plan, origin, server, err))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _bench(
    args: argparse.Namespace,
    scenario: Scenario,
    plan: LoadPlan,
    origin: Origin,
    server: AppServer | None,
    err: TextIO,
) -> dict[str, Any]:
    probe = Pool(origin, max_connections=1, timeout_s=min(args.timeout, 5.0))
    pool = Pool(origin, max_connections=plan.users + 4, timeout_s=args.timeout)
    try:
        if server is not None:
            await server.wait_ready(args.health_path, args.boot_timeout)
        else:
            try:
                await probe.request("GET", args.health_path)
            except ClientError as exc:
                raise BenchError(f"cannot reach {origin}: {exc}") from None
        return await _measure(args, scenario, plan, server, err, probe, pool)
    finally:
        await pool.close()
        await probe.close()


async def _measure(
    args: argparse.Namespace,
    scenario: Scenario,
    plan: LoadPlan,
    server: AppServer | None,
    err: TextIO,
    probe: Pool,
    pool: Pool,
) -> dict[str, Any]:
    """Set the users up, run the load, scrape the server's figures; the report."""
    recorder = Recorder(scenario.route_names, args.percentiles)
    if args.seed is not None:
        random.seed(args.seed)  # the templates' {rand:...} and {choice:...}
    generator = LoadGenerator(
        pool, scenario, recorder, run_id=uuid.uuid4().hex[:8], rng=random.Random(args.seed)
    )
    if scenario.setup:
        print(f"launchready bench: setting up {plan.users} virtual users", file=err)
    users, setup_errors = await generator.setup_users(plan.users)
    if generator.health.internal_errors:
        raise InternalError(
            f"the setup failed inside the bench: {generator.health.first_internal_error}"
        )
    if not users:
        reason, _ = setup_errors.most_common(1)[0]
        raise BenchError(f"setup failed for every virtual user: {reason}", _setup_hint(reason))
    print(f"launchready bench: {scenario.name} -> {pool.origin}; {describe(plan)}", file=err)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    before_task = asyncio.create_task(_scrape_later(probe, args.metrics_path, plan.warmup_s))
    progress = Progress(recorder, err, plan.warmup_s, plan.duration_s)
    progress_task = None if args.quiet else asyncio.create_task(progress.run())
    try:
        health = await generator.run(plan, users)
    finally:
        if progress_task is not None:
            progress_task.cancel()
            await asyncio.gather(progress_task, return_exceptions=True)
    before = await before_task
    after = await servertime.settled(probe, args.metrics_path)
    usable, unusable = _server_figures(before, after, args.metrics_path)
    meta = {
        "scenario": scenario.name,
        "target": str(pool.origin),
        "app": args.app,
        "started_at": started,
        "load": {
            "model": plan.model,
            "rate_rps": plan.rate,
            "users": len(users),
            "duration_s": plan.duration_s,
            "warmup_s": plan.warmup_s,
            "timeout_s": args.timeout,
            "description": describe(plan),
        },
        "generator": health.as_dict(),
        "generator_saturated": health.saturated,
        "setup": {
            "users_requested": plan.users,
            "users_ready": len(users),
            "errors": dict(setup_errors.most_common()),
        },
        "server": {
            "metrics": usable is not None,
            "breakdown": usable is not None and usable[1].breakdown,
            "exited": server.returncode if server else None,
            "log": str(server.log_path) if server else None,
        },
        "warnings": [*_warnings(health, setup_errors, len(users), plan, server), *unusable],
    }
    first, last = usable if usable is not None else (None, None)
    buckets = delta(first.buckets, last.buckets) if first and last else None
    figures = servertime.breakdown(first, last) if first and last and last.breakdown else None
    report = build_report(
        recorder=recorder,
        scenario=scenario,
        thresholds=Thresholds(args.p95_ms, args.max_error_rate, args.db_p95_ms),
        server_p95=server_p95(buckets) if buckets is not None else None,
        queries=query_p95(buckets) if buckets is not None else None,
        duration_s=plan.duration_s,
        meta=meta,
        servertime=figures,
        breakdown_note=_breakdown_note(usable, unusable),
        payload_limit_bytes=int(args.payload_kb * 1024),
        stall_ms=None,
    )
    behind = generator.cannot_hold()
    if behind is not None:  # the figures describe the generator: never a pass
        report["failures"].append(behind)
        report["passed"] = report["overall"]["passed"] = False
    if health.internal_errors:  # what the bench could not measure is never a pass
        report["failures"].append(_internal_summary(report))
        report["passed"] = report["overall"]["passed"] = False
    return report


def _server_figures(
    before: servertime.Scrape | str, after: servertime.Scrape | str, path: str
) -> tuple[tuple[servertime.Scrape, servertime.Scrape] | None, list[str]]:
    """Both scrapes when they can be compared, else None and the warnings that say why."""
    if isinstance(before, str) or isinstance(after, str):
        reason = before if isinstance(before, str) else after
        which = "before" if isinstance(before, str) else "after"
        return None, [
            f"no server-side figures and no breakdown: {reason} ({which} the run); the times "
            "are the client's only"
        ]
    backwards = servertime.went_backwards(before, after)
    if backwards:
        return None, [
            "the app's metrics went backwards during the run, or moved to another process ("
            + "; ".join(backwards)
            + "): a worker restarted, or the scrapes reached different workers; the "
            "server-side figures and the breakdown are left out rather than subtracted"
        ]
    if not after.breakdown:
        return (before, after), [
            f"no breakdown: the app's SDK exports no per-route breakdown on {path} (an older "
            "launchready-sdk); the server p95 and SQL statements are still read"
        ]
    return (before, after), []


def _breakdown_note(
    usable: tuple[servertime.Scrape, servertime.Scrape] | None, unusable: list[str]
) -> str:
    if usable is None:
        return "the breakdown is unavailable: " + (unusable[0] if unusable else "no figures")
    return "the app exports no per-route breakdown"


async def _scrape_later(pool: Pool, path: str, delay_s: float) -> servertime.Scrape | str:
    await asyncio.sleep(delay_s)
    return await servertime.scrape(pool, path)


def _setup_hint(reason: str) -> str:
    if "status 429" in reason:
        return (
            "the app rate-limited the setup requests: it must trust the bench's address as a "
            "proxy so each virtual user's X-Forwarded-For counts (for an app on the SDK: "
            "LAUNCHREADY_TRUSTED_PROXIES=127.0.0.1/32)"
        )
    return "check that the scenario fits the app (--scenario FILE describes your own flows)"


def _warnings(
    health: GeneratorHealth,
    setup_errors: Any,
    ready: int,
    plan: LoadPlan,
    server: AppServer | None,
) -> list[str]:
    out = []
    if health.protocol_errors:
        n = health.protocol_errors
        out.append(
            f"{n} response{'s' if n != 1 else ''} broke HTTP/1.1 framing and counted as "
            f"errors of kind 'protocol'; the first: {health.first_protocol_error}"
        )
    if health.saturated:
        out.append(
            "the load generator could not keep up, so these figures include its own delays: "
            + "; ".join(health.reasons)
        )
    if health.waited_for_user:
        out.append(
            f"{health.waited_for_user} arrivals waited for a free virtual user (all "
            f"{ready} were busy); their latency includes the wait (raise --users)"
        )
    if setup_errors:
        reason, n = setup_errors.most_common(1)[0]
        out.append(f"setup failed for {plan.users - ready} of {plan.users} users ({n}x {reason})")
    if server is not None and server.returncode is not None:
        out.append(f"the app exited during the run with code {server.returncode}")
    return out
