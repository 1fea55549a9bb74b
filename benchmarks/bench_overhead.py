"""Per-request overhead of the SDK against the bare app and against peer libraries.

Every configuration runs in uvicorn (uvloop, httptools, one worker) pinned to core 0, with
`wrk` pinned to core 1; rounds are interleaved across configurations and medians reported.
Besides requests/s it reads the server's CPU time from /proc, so "CPU µs per request" is a
figure that load on the other core disturbs far less than throughput. An in-process driver
(`benchmarks/inproc.py`, no sockets) measures µs per request of the ASGI stack alone.

    python benchmarks/bench_overhead.py --suite foundation
    python benchmarks/bench_overhead.py --suite ratelimit --rounds 5 --duration 5
    python benchmarks/bench_overhead.py --suite full --rounds 3 --duration 4

`foundation` and `ratelimit` use `benchmarks/apps.py`. `full` uses `benchmarks/apps_full.py`:
the bare app, each SDK feature alone, the whole SDK (tracing off) with and without rules on
the measured route, and the peer stack a user would assemble instead, all in one run, with the
issue's two targets checked. It starts a private `redis-server` on a free loopback port
(pinned to core 1 with wrk, flushed before every server) and reports Redis commands and Redis
CPU µs per request from it; with `--redis-url` it uses that Redis instead, under a key prefix
of the run whose keys it deletes at the end, and reports neither. `--suite all` runs every
suite, `full` included.

Prints markdown tables ready for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import cpu_seconds, free_port, measure  # noqa: E402

SUITES = {
    "foundation": (("GET", "/products"), ("bare", "peers_reqid_log", "sdk_no_latency", "sdk")),
    "ratelimit": (
        ("POST", "/login"),
        ("bare", "slowapi", "slowapi_asgi", "sdk_limit_memory", "sdk_limit_redis"),
    ),
}
ALL_SUITES = (*SUITES, "full")


BEFORE = "@before"  # a configuration of the `--before` tree: `sdk@before`


def run_round(config: str, method: str, path: str, args: argparse.Namespace) -> dict[str, float]:
    name, before = _split(config)
    return measure(
        "benchmarks.apps:app",
        name,
        path,
        duration=args.duration,
        connections=args.connections,
        method=method,
        root=args.before if before else ROOT,
    )


def _split(config: str) -> tuple[str, bool]:
    """`sdk@before` as ("sdk", True)."""
    if config.endswith(BEFORE):
        return config[: -len(BEFORE)], True
    return config, False


def inproc(
    module: str,
    config: str,
    method: str,
    path: str,
    blocks: int,
    *,
    unique_key: bool = False,
    env: dict[str, str] | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    root: Path = ROOT,
) -> tuple[float, float]:
    """Wall-clock and CPU µs per request of one configuration driven in process (`root`:
    the source tree to import it from)."""
    command = [
        "taskset", "-c", "0", sys.executable, str(root / "benchmarks" / "inproc.py"),
        module, config, method, path, "--blocks", str(blocks),
    ] + (["--idempotency-key"] if unique_key else [])  # fmt: skip
    for name, value in headers:
        command += ["--header", f"{name}: {value}"]
    out = subprocess.run(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root), **(env or {})},
        cwd=root,
        check=True,
        timeout=600,
    )
    wall, cpu = out.stderr.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def report(suite: str, method: str, path: str, results: dict[str, Any]) -> str:
    bare = results["bare"]
    b_rps = statistics.median(bare["rps"])
    b_cpu = statistics.median(bare["cpu_us"])
    b_in = statistics.median(bare["inproc"])
    lines = [
        f"#### {suite}: {method} {path}",
        "",
        "| configuration | req/s median (min-max) | % of bare req/s | server CPU µs/req | "
        "Δ CPU µs/req vs bare | p99 ms | in-process µs/req | Δ in-process µs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config, r in results.items():
        rps = statistics.median(r["rps"])
        cpu = statistics.median(r["cpu_us"])
        ip = statistics.median(r["inproc"])
        lines.append(
            f"| {config} | {rps:.0f} ({min(r['rps']):.0f}-{max(r['rps']):.0f}) n={len(r['rps'])} "
            f"| {rps / b_rps * 100:.0f} % | {cpu:.0f} | {cpu - b_cpu:+.0f} "
            f"| {statistics.median(r['p99_ms']):.1f} | {ip:.0f} | {ip - b_in:+.0f} |"
        )
    return "\n".join(lines)


def run_suite(suite: str, args: argparse.Namespace) -> None:
    (method, path), configs = SUITES[suite]
    if args.config:
        configs = ("bare", *(c for c in args.config if c != "bare"))
    if args.before is not None:  # the same SDK configurations from the other tree, interleaved
        known = (args.before / "benchmarks" / "apps.py").read_text()
        configs = (
            *configs,
            *(c + BEFORE for c in configs if c.startswith("sdk") and f'"{c}"' in known),
        )
    results: dict[str, dict[str, list[float]]] = {c: {"inproc": []} for c in configs}
    for round_no in range(args.rounds):
        order = configs[round_no % len(configs) :] + configs[: round_no % len(configs)]
        for config in order:
            r = run_round(config, method, path, args)
            for key, value in r.items():
                results[config].setdefault(key, []).append(value)
            print(
                f"  round {round_no + 1} {config}: {r['rps']:.0f} req/s, "
                f"{r['cpu_us']:.0f} CPU µs/req",
                file=sys.stderr,
            )
    for config in configs:
        for _ in range(args.inproc_rounds):
            name, before = _split(config)
            root = args.before if before else ROOT
            wall, _ = inproc("benchmarks.apps", name, method, path, args.inproc_blocks, root=root)
            results[config]["inproc"].append(wall)
    print()
    print(report(suite, method, path, results))
    print()


# --- the full suite: every feature, the whole SDK and the peer stack in one run -------------


@dataclass(frozen=True)
class Row:
    """One line of the full suite's table: a configuration measured on one route."""

    label: str
    config: str
    method: str
    path: str
    what: str
    bare: str = "bare"
    # (header, value) a probe response must carry; value None: present with any value.
    expect: tuple[tuple[str, str | None], ...] = ()
    absent: tuple[str, ...] = ()
    idempotent: bool = False
    # Request headers of every request (wrk, the probe and the in-process driver alike).
    headers: tuple[tuple[str, str], ...] = ()


HIT = (("x-cache", "HIT"),)
REQ_ID = (("x-request-id", None),)
SECURED = (("x-frame-options", "DENY"), ("content-security-policy", None))
FULL_ROWS = (
    Row("bare", "bare", "GET", "/products", "the FastAPI app alone"),
    Row(
        "sdk_context",
        "sdk_context",
        "GET",
        "/products",
        "request context + JSON access log (`wrap`, no rules, latency not recorded)",
        expect=REQ_ID,
    ),
    Row(
        "sdk_latency",
        "sdk_latency",
        "GET",
        "/products",
        "sdk_context with latency recorded (its cost: this row against sdk_context)",
    ),
    Row(
        "sdk_limit_memory",
        "sdk_limit_memory",
        "GET",
        "/products",
        "`RateLimitMiddleware` alone, memory, a rule on the measured route",
        expect=(("ratelimit-limit", None),),
    ),
    Row(
        "sdk_limit_redis",
        "sdk_limit_redis",
        "GET",
        "/products",
        "`RateLimitMiddleware` alone, Redis, a rule on the measured route",
        expect=(("ratelimit-limit", None),),
    ),
    Row(
        "sdk_cache_memory",
        "sdk_cache_memory",
        "GET",
        "/products",
        "`CacheMiddleware` alone, memory: every request a HIT",
        expect=HIT,
    ),
    Row(
        "sdk_cache_redis",
        "sdk_cache_redis",
        "GET",
        "/products",
        "`CacheMiddleware` alone, Redis: every request a HIT",
        expect=HIT,
    ),
    Row(
        "bare_headers",
        "bare_headers",
        "GET",
        "/products",
        "the app with the same six headers appended by the simplest layer possible (no "
        "checks): what carrying them costs, whoever adds them",
        expect=SECURED,
    ),
    Row(
        "sdk_perimeter",
        "sdk_perimeter",
        "GET",
        "/products",
        "`SecurityHeadersMiddleware` alone, its defaults (plain HTTP: no HSTS)",
        expect=SECURED,
        absent=("strict-transport-security",),
    ),
    Row(
        "sdk_perimeter_https",
        "sdk_perimeter_https",
        "GET",
        "/products",
        "the perimeter's layers: headers, trusted hosts, HTTPS and canonical redirects, a "
        "legacy map, behind a trusted proxy saying HTTPS (HSTS sent, nothing redirected)",
        expect=(*SECURED, ("strict-transport-security", None)),
        headers=(("X-Forwarded-Proto", "https"),),
    ),
    Row(
        "sdk_full",
        "sdk_full",
        "GET",
        "/products",
        "whole SDK, tracing off, Redis, the perimeter's defaults on; rules and cache routes "
        "elsewhere (uncached, unlimited)",
        expect=(*REQ_ID, *SECURED),
        absent=("x-cache", "ratelimit-limit"),
    ),
    Row(
        "sdk_full_no_perimeter",
        "sdk_full_no_perimeter",
        "GET",
        "/products",
        'the same without the perimeter (`security_headers=False`, `csp=""`, no HSTS)',
        expect=REQ_ID,
        absent=("x-cache", "ratelimit-limit", "x-frame-options", "content-security-policy"),
    ),
    Row(
        "sdk_full_https",
        "sdk_full_https",
        "GET",
        "/products",
        "whole SDK as `sdk_full`, plus trusted hosts, HTTPS and canonical redirects and a "
        "legacy map, behind a trusted proxy saying HTTPS (HSTS sent, nothing redirected)",
        expect=(*REQ_ID, *SECURED, ("strict-transport-security", None)),
        headers=(("X-Forwarded-Proto", "https"),),
    ),
    Row(
        "sdk_full_route",
        "sdk_full_route",
        "GET",
        "/products",
        "whole SDK, tracing off, Redis; the route limited and cached (HIT)",
        expect=(*REQ_ID, *HIT, ("ratelimit-limit", None)),
    ),
    Row(
        "peers_full",
        "peers_full",
        "GET",
        "/products",
        "peer stack; the route exempt from limits and not cached",
        expect=REQ_ID,
        absent=("x-fastapi-cache",),
    ),
    Row(
        "peers_full_route",
        "peers_full_route",
        "GET",
        "/products",
        "peer stack; the route limited and cached (HIT), as in peer-overhead.md's `full`",
        expect=(*REQ_ID, ("x-fastapi-cache", "HIT")),
    ),
    Row("bare_post", "bare", "POST", "/orders", "the app alone, POST", bare="bare_post"),
    Row(
        "sdk_idem_memory",
        "sdk_idem_memory",
        "POST",
        "/orders",
        "`IdempotencyMiddleware` alone, memory, a new key per request",
        bare="bare_post",
        idempotent=True,
    ),
    Row(
        "sdk_idem_redis",
        "sdk_idem_redis",
        "POST",
        "/orders",
        "`IdempotencyMiddleware` alone, Redis, a new key per request",
        bare="bare_post",
        idempotent=True,
    ),
)
INPROC_BLOCK_SIZE = 500  # benchmarks/inproc.py's default
FULL_SPEC = "benchmarks.apps_full:app"
FULL_MODULE = "benchmarks.apps_full"

# wrk: a new Idempotency-Key on every request (the first-time path: claim, run, store).
IDEMPOTENCY_LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, {{["Content-Type"] = "application/json",
                                ["Idempotency-Key"] = "{token}-" .. n}})
end
"""


class PrivateRedis:
    """A `redis-server` of this run on a free loopback port, pinned to core 1 (wrk's core)."""

    def __init__(self) -> None:
        import redis

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = [
            "taskset", "-c", "1", "redis-server", "--bind", "127.0.0.1",
            "--port", str(self.port), "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def commands(self) -> float:
        """Commands Redis has executed (those run inside Lua scripts included), except the
        INFO calls that read this figure."""
        stats = self.client.info("commandstats")
        return float(sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",)))

    def cpu_us(self) -> float:
        return cpu_seconds(self.proc.pid) * 1e6

    def flush(self) -> None:
        self.client.flushall()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def redis_for_run(url: str | None, run: str) -> Iterator[PrivateRedis | None]:
    """A private Redis for the run; with `url`, that Redis, cleared of this run's keys after."""
    if url is not None:
        try:
            yield None
        finally:
            _delete_run_keys(url, run)
        return
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.stop()


def _delete_run_keys(url: str, run: str) -> None:
    """Delete the keys of this run's servers (all of them carry `run` in their prefix)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"*{run}-*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def check_once(row: Row, base: str) -> list[str]:
    """What a probe request finds wrong with the configuration (nothing: an empty list)."""
    with httpx.Client(base_url=base, timeout=5, headers=dict(row.headers)) as client:
        del client.headers["accept-encoding"]  # as wrk: the same cache key as its requests
        if row.method == "GET":
            response = client.get(row.path)
            response = client.get(row.path)  # a cache fills on a miss: this one must HIT
        else:
            headers = {"idempotency-key": uuid.uuid4().hex} if row.idempotent else {}
            response = client.post(row.path, json={}, headers=headers)
            if row.idempotent:
                response = client.post(row.path, json={}, headers=headers)
    problems = [f"status {response.status_code}"] if response.status_code >= 300 else []
    if row.idempotent and response.headers.get("idempotent-replayed") != "true":
        problems.append("a repeated key was not replayed")
    for name, value in row.expect:
        got = response.headers.get(name)
        if got is None or (value is not None and got != value):
            problems.append(f"{name}: {got!r}, expected {value or 'a value'}")
    problems += [f"unexpected {name}" for name in row.absent if name in response.headers]
    return problems


def probe_for(row: Row) -> Callable[[str], None]:
    """A check, run after the warm-up, that the configuration does what its row says.

    A Redis command that outlasts the store's timeout (50 ms; a stall of this shared machine
    is enough) opens its breaker for 2 s, and the features fall back meanwhile; so a failed
    check is tried again after the cool-down before it counts.
    """

    def probe(base: str) -> None:
        for attempt in range(3):
            problems = check_once(row, base)
            if not problems:
                return
            print(f"  {row.label}: probe {attempt + 1}: {'; '.join(problems)}", file=sys.stderr)
            time.sleep(2.5)
        raise RuntimeError(f"{row.label}: {'; '.join(problems)}")

    return probe


def full_round(
    row: Row, args: argparse.Namespace, redis_url: str, redis: PrivateRedis | None, run: str
) -> dict[str, float]:
    counters: dict[str, Callable[[], float]] = {}
    if redis is not None:
        redis.flush()
        counters = {"redis_cmds": redis.commands, "redis_cpu_us": redis.cpu_us}

    fixed = "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in row.headers)

    def lua() -> str:  # new keys for every wrk run: the warm-up's keys are not replayed
        return fixed + (
            IDEMPOTENCY_LUA.format(token=uuid.uuid4().hex[:12]) if row.idempotent else ""
        )

    env = {"BENCH_REDIS_URL": redis_url, "BENCH_PREFIX": f"{run}-{uuid.uuid4().hex[:8]}"}
    # The rows of one feature on Redis keep their server's output (they log nothing per
    # request), to count the Redis breaker's openings: a blip must not open it.
    log = Path(f"/tmp/{run}-{row.label}.log") if row.config.endswith("_redis") else None
    r = measure(
        FULL_SPEC,
        row.config,
        row.path,
        duration=args.duration,
        connections=args.connections,
        method=row.method,
        env=env,
        lua=lua,
        probe=probe_for(row),
        counters=counters,
        log=log,
    )
    if log is not None:
        r["breaker_trips"] = float(log.read_text(errors="replace").count("store.unavailable"))
        log.unlink()
    return r


def measure_with_retries(
    row: Row, args: argparse.Namespace, redis_url: str, redis: PrivateRedis | None, run: str
) -> dict[str, float]:
    """One run of a row; a run that fails (a server starved for seconds by other work on
    this machine completes no request) is reported and run again, at most twice."""
    for attempt in range(3):
        try:
            return full_round(row, args, redis_url, redis, run)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            if attempt == 2:
                raise
            print(f"  {row.label}: run failed, again: {exc}", file=sys.stderr)
    raise AssertionError("unreachable")


def round_order(rows: tuple[Row, ...], round_no: int) -> list[Row]:
    """The rows rotated by the round number, with the GET baseline run a second time midway."""
    shift = round_no % len(rows)
    order = list(rows[shift:] + rows[:shift])
    bare = next((r for r in rows if r.label == "bare"), None)
    if bare is not None and len(order) > 2:
        order.insert(len(order) // 2, bare)
    return order


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _fmt(value: float, spec: str) -> str:
    return "—" if value != value else format(value, spec)  # NaN: not measured


def _redis_cmds(r: dict[str, list[float]]) -> str:
    """Redis commands per request under wrk (median), and one request at a time in process.

    Fewer under wrk means part of a run went without Redis: a command outlasted the store's
    timeout and its breaker stayed open for its cool-down. Such runs are counted after `!`.
    """
    runs, alone = r.get("redis_cmds", []), _med(r.get("inproc_redis_cmds", []))
    if not runs:
        return "—"
    short = sum(1 for x in runs if alone >= 0.5 and x < alone * 0.97)
    flag = f" !{short}/{len(runs)}" if short else ""
    return f"{_med(runs):.2f}{flag} ({_fmt(alone, '.2f')})"


def full_table(rows: tuple[Row, ...], results: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        "| configuration | what it adds | req/s median (min-max) | % of bare req/s "
        "| server CPU µs/req | Δ CPU µs/req vs bare | core util | Redis commands/req (in-process) "
        "| Redis CPU µs/req | p50 ms | p99 ms | in-process CPU µs/req | Δ in-process CPU µs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r, b = results[row.label], results[row.bare]
        rps, cpu, ip = _med(r["rps"]), _med(r["cpu_us"]), _med(r["inproc"])
        lines.append(
            f"| {row.label} | {row.what} "
            f"| {rps:.0f} ({min(r['rps']):.0f}-{max(r['rps']):.0f}) n={len(r['rps'])} "
            f"| {rps / _med(b['rps']) * 100:.0f} % | {cpu:.0f} | {cpu - _med(b['cpu_us']):+.0f} "
            f"| {_med([c * q / 1e6 for c, q in zip(r['cpu_us'], r['rps'], strict=True)]):.2f} "
            f"| {_redis_cmds(r)} "
            f"| {_fmt(_med(r.get('redis_cpu_us', [])), '.0f')} "
            f"| {_med(r['p50_ms']):.2f} | {_med(r['p99_ms']):.1f} "
            f"| {_fmt(ip, '.0f')} | {_fmt(ip - _med(b['inproc']), '+.0f')} |"
        )
    return "\n".join(lines)


def paired_ratios(
    results: dict[str, dict[str, list[float]]], num: str, den: str, rounds: int
) -> list[float]:
    """Per round: rps of `num` ÷ rps of `den` (the mean of its runs in that round)."""
    ratios = []
    for i in range(rounds):
        a, b = results[num]["round_rps"][i], results[den]["round_rps"][i]
        ratios.append(a / b)
    return ratios


def _ratio(value: float, bar: float) -> str:
    """A ratio as the target states it: a percentage below 1, else a multiple."""
    return f"{value * 100:.0f} %" if bar < 1 else f"{value:.1f}x"


def targets(results: dict[str, dict[str, list[float]]], rounds: int) -> str:
    lines = [
        "| target | pair | ratio of median req/s | per-round ratios (median; min-max) "
        "| CPU µs/req (Δ vs bare) | ratio by CPU µs/req | met (by req/s) |",
        "|---|---|---|---|---|---|---|",
    ]
    b_cpu = _med(results["bare"]["cpu_us"])
    checks = (
        ("≥ 80 % of bare, the perimeter on", "sdk_full", "bare", 0.80),
        ("≥ 10x the peer stack", "sdk_full", "peers_full", 10.0),
        ("≥ 10x the peer stack", "sdk_full_route", "peers_full_route", 10.0),
        ("≥ 10x the peer stack", "sdk_full", "peers_full_route", 10.0),
    )
    for name, num, den, bar in checks:
        if num not in results or den not in results:
            continue
        ratio = _med(results[num]["rps"]) / _med(results[den]["rps"])
        per_round = paired_ratios(results, num, den, rounds)
        cpu = " vs ".join(
            f"{_med(results[c]['cpu_us']):.0f} ({_med(results[c]['cpu_us']) - b_cpu:+.0f})"
            for c in (num, den)
        )
        lines.append(
            f"| {name} | {num} / {den} | {_ratio(ratio, bar)} "
            f"| {_ratio(_med(per_round), bar)}; "
            f"{_ratio(min(per_round), bar)}-{_ratio(max(per_round), bar)} "
            f"| {cpu} "
            f"| {_ratio(_med(results[den]['cpu_us']) / _med(results[num]['cpu_us']), bar)} "
            f"| {'yes' if ratio >= bar else 'no'} ({ratio / bar:.2f} of the bar) |"
        )
    return "\n".join(lines)


PERIMETER_CPU_BAR_US = 3.0


def cpu_targets(results: dict[str, dict[str, list[float]]], rounds: int) -> str:
    """The perimeter's own cost: server CPU µs per request added to the bare app."""
    lines = [
        "| target | configuration | Δ server CPU µs/req vs bare (median of runs) "
        "| per-round Δ (median; min-max) | Δ in-process CPU µs | met |",
        "|---|---|---|---|---|---|",
    ]
    bare = results.get("bare")
    for label in ("bare_headers", "sdk_perimeter", "sdk_perimeter_https"):
        if bare is None or label not in results:
            continue
        r = results[label]
        delta = _med(r["cpu_us"]) - _med(bare["cpu_us"])
        per_round = [r["round_cpu"][i] - bare["round_cpu"][i] for i in range(rounds)]
        inproc_delta = _med(r["inproc"]) - _med(bare["inproc"])
        reference = label == "bare_headers"
        met = "—" if reference else ("yes" if delta <= PERIMETER_CPU_BAR_US else "no")
        target = "reference" if reference else f"≤ {PERIMETER_CPU_BAR_US:g} µs of server CPU"
        lines.append(
            f"| {target} | {label} | {delta:+.1f} "
            f"| {_med(per_round):+.1f}; {min(per_round):+.1f} to {max(per_round):+.1f} "
            f"| {_fmt(inproc_delta, '+.1f')} | {met} |"
        )
    return "\n".join(lines)


def run_full(args: argparse.Namespace) -> None:
    wanted = set(args.rows.split(",")) if args.rows else None
    unknown = (wanted or set()) - {r.label for r in FULL_ROWS}
    if unknown:
        labels = ", ".join(r.label for r in FULL_ROWS)
        raise SystemExit(f"unknown rows {', '.join(sorted(unknown))}; choose from {labels}")
    rows = tuple(
        r for r in FULL_ROWS if wanted is None or r.label in wanted or r.label.startswith("bare")
    )
    results: dict[str, dict[str, list[float]]] = {
        r.label: {"inproc": [], "inproc_redis_cmds": [], "round_rps": [], "round_cpu": []}
        for r in rows
    }
    started = time.monotonic()
    run = f"bench-full-{uuid.uuid4().hex[:8]}"  # the key prefix of this run's servers
    with redis_for_run(args.redis_url, run) as redis:
        redis_url = args.redis_url or (redis.url if redis else "")
        for round_no in range(args.rounds):
            in_round: dict[str, list[float]] = {}
            cpu_in_round: dict[str, list[float]] = {}
            for row in round_order(rows, round_no):
                r = measure_with_retries(row, args, redis_url, redis, run)
                for key, value in r.items():
                    results[row.label].setdefault(key, []).append(value)
                in_round.setdefault(row.label, []).append(r["rps"])
                cpu_in_round.setdefault(row.label, []).append(r["cpu_us"])
                print(
                    f"  [{time.monotonic() - started:4.0f} s] round {round_no + 1} {row.label}: "
                    f"{r['rps']:.0f} req/s, {r['cpu_us']:.0f} CPU µs/req, "
                    f"p99 {r['p99_ms']:.1f} ms"
                    + (f", {r['redis_cmds']:.2f} Redis cmds/req" if "redis_cmds" in r else ""),
                    file=sys.stderr,
                )
            for label, values in in_round.items():
                results[label]["round_rps"].append(statistics.fmean(values))
                results[label]["round_cpu"].append(statistics.fmean(cpu_in_round[label]))
        for row in rows:
            for _ in range(args.inproc_rounds):
                before = 0.0
                if redis is not None:
                    redis.flush()
                    before = redis.commands()
                env = {"BENCH_REDIS_URL": redis_url, "BENCH_PREFIX": f"{run}-inproc"}
                _, cpu = inproc(
                    FULL_MODULE,
                    row.config,
                    row.method,
                    row.path,
                    args.inproc_blocks,
                    unique_key=row.idempotent,
                    env=env,
                    headers=row.headers,
                )
                results[row.label]["inproc"].append(cpu)
                if redis is not None:
                    served = (args.inproc_blocks + 1) * INPROC_BLOCK_SIZE
                    results[row.label]["inproc_redis_cmds"].append(
                        (redis.commands() - before) / served
                    )
    print()
    print("#### full: each feature alone, the whole SDK and the peer stack")
    print()
    print(full_table(rows, results))
    print()
    print(targets(results, args.rounds))
    print()
    print(cpu_targets(results, args.rounds))
    print()
    trips = {label: int(sum(r["breaker_trips"])) for label, r in results.items()
             if "breaker_trips" in r}  # fmt: skip
    if trips:
        runs = {label: len(results[label]["breaker_trips"]) for label in trips}
        shown = ", ".join(f"{label} {n} in {runs[label]} runs" for label, n in trips.items())
        print(f"Redis breaker openings at the default timeout (50 ms): {shown}")
        print()
    print(f"wall time: {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=[*ALL_SUITES, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=5, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--inproc-blocks", type=int, default=9)
    parser.add_argument("--inproc-rounds", type=int, default=3)
    parser.add_argument(
        "--redis-url", help="full suite: use this Redis instead of a private redis-server"
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="foundation and ratelimit: also run the SDK configurations of this source tree "
        "(`git worktree add` or `git archive` of an earlier commit), as `<config>@before`",
    )
    parser.add_argument(
        "--config",
        action="append",
        help="foundation and ratelimit: run these configurations of benchmarks/apps.py instead "
        "(bare always runs)",
    )
    parser.add_argument(
        "--rows", help="full suite: comma-separated row labels to run (the bare rows always run)"
    )
    args = parser.parse_args()
    suites = list(ALL_SUITES) if args.suite == "all" else [args.suite]
    print(f"command: python benchmarks/bench_overhead.py {' '.join(sys.argv[1:])}".rstrip())
    for suite in suites:
        if suite == "full":
            run_full(args)
        else:
            run_suite(suite, args)


if __name__ == "__main__":
    main()
