"""/metrics: access (allow-list, token), reuse of the rendered text, bounded labels, and the
figures of every worker behind one port (uvicorn --workers, gunicorn)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from launchready_sdk import LaunchReady, Settings
from launchready_sdk.latency import LatencyTracker, MetricsEndpoint
from tests.conftest import ROOT, free_port

TOKEN = "t" * 40


def samples(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def requests_total(text: str, route: str | None = None) -> float:
    return sum(
        s.value
        for s in samples(text).get("launchready_http_requests_total", [])
        if route is None or s.labels["route"] == route
    )


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def wrapped(**overrides: Any) -> tuple[LaunchReady, Any]:
    lr = LaunchReady(Settings(configure_logging=False, access_log=False, **overrides))
    return lr, lr.wrap(ok)


async def test_token_admits_and_its_absence_gets_401(asgi_client: Any) -> None:
    """With metrics_token, a scrape without the bearer token gets 401 with a challenge."""
    _, app = wrapped(metrics_token=TOKEN)
    c = asgi_client(app)
    refused = await c.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "launchready" not in refused.text
    wrong = await c.get("/metrics", headers={"authorization": "Bearer " + "x" * 40})
    assert wrong.status_code == 401
    good = await c.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200
    assert "launchready_latency_dropped_total" in good.text


async def test_allow_list_uses_the_trusted_proxy_address(asgi_client: Any) -> None:
    """metrics_allow admits clients in its networks (as the trusted proxy reports them);
    others get 404, as if there were no endpoint; a spoofed header from a stranger fails."""
    _, app = wrapped(metrics_allow=("10.1.0.0/16",), trusted_proxies=("127.0.0.1",))
    inside = asgi_client(app, client=("10.1.2.3", 4000))
    assert (await inside.get("/metrics")).status_code == 200
    outside = asgi_client(app, client=("203.0.113.9", 4000))
    assert (await outside.get("/metrics")).status_code == 404
    spoof = await outside.get("/metrics", headers={"x-forwarded-for": "10.1.2.3"})
    assert spoof.status_code == 404
    proxied = asgi_client(app, client=("127.0.0.1", 4000))
    via = await proxied.get("/metrics", headers={"x-forwarded-for": "10.1.9.9"})
    assert via.status_code == 200
    other = await proxied.get("/metrics", headers={"x-forwarded-for": "198.51.100.1"})
    assert other.status_code == 404


async def test_allow_list_or_token(asgi_client: Any) -> None:
    """With both set, either the network or the token admits."""
    _, app = wrapped(metrics_allow=("10.0.0.0/8",), metrics_token=TOKEN)
    outside = asgi_client(app, client=("203.0.113.9", 4000))
    assert (await outside.get("/metrics")).status_code == 401
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert (await outside.get("/metrics", headers=auth)).status_code == 200
    inside = asgi_client(app, client=("10.9.9.9", 4000))
    assert (await inside.get("/metrics")).status_code == 200


async def test_rendered_text_is_reused_for_cache_s(asgi_client: Any) -> None:
    """Scrapes within metrics_cache_s get the same text; after it, the new figures."""
    _, app = wrapped(metrics_cache_s=0.3)
    c = asgi_client(app)
    await c.get("/a")
    first = (await c.get("/metrics")).text
    await c.get("/a")
    assert (await c.get("/metrics")).text == first
    await asyncio.sleep(0.35)
    assert requests_total((await c.get("/metrics")).text) == requests_total(first) + 1


async def test_concurrent_scrapes_share_one_render() -> None:
    """Many scrapes at once of a large page render it once (in a thread), not once each."""
    tracker = LatencyTracker(max_routes=400)
    for r in range(400):
        tracker.observe("GET", f"/r{r}", 200, 0.01)
    endpoint = MetricsEndpoint(ok, tracker=tracker, include_default_registry=False)
    renders = 0
    original = endpoint.render_bytes

    def counted() -> bytes:
        nonlocal renders
        renders += 1
        return original()

    endpoint.render_bytes = counted  # type: ignore[method-assign]
    bodies = await asyncio.gather(*(endpoint.body() for _ in range(20)))
    assert renders == 1
    assert len(set(bodies)) == 1


async def test_labels_are_bounded_whatever_clients_send(asgi_client: Any) -> None:
    """Odd methods and statuses never become labels: fixed methods, 1xx-5xx and other."""
    tracker = LatencyTracker(max_routes=3)
    for method in ("GET", "get", "PURGE", "BREW", "X" * 300):
        for status in (200, 418, 599, 600, 999, 0, 42):
            tracker.observe(method, "/x", status, 0.001)
    for n in range(50):
        tracker.observe("GET", f"/route{n}", 200, 0.001)
    endpoint = MetricsEndpoint(ok, tracker=tracker, include_default_registry=False)
    text = endpoint.render_bytes().decode()
    found = samples(text)["launchready_http_requests_total"]
    assert {s.labels["status"] for s in found} <= {"1xx", "2xx", "3xx", "4xx", "5xx", "other"}
    assert {s.labels["method"] for s in found} <= {"GET", "OTHER"}
    assert {s.labels["route"] for s in found} <= {"/x", "/route0", "/route1", "<overflow>"}
    assert len({(s.labels["method"], s.labels["route"], s.labels["status"]) for s in found}) == len(
        found
    )
    assert sum(s.value for s in found) == 5 * 7 + 50


# --- several workers behind one port ------------------------------------------------------


class Served:
    """A server command on a free port with its log; stopped with SIGTERM then SIGKILL."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log.open("wb")
        self.log_path = log
        self.proc = subprocess.Popen(
            argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            cwd=ROOT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 40.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(self.log_path.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def uvicorn_workers(tmp_path: Path, workers: int, env: dict[str, str], name: str = "u") -> Served:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.apps.scale_server:app", "--host",
            "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--no-access-log"]  # fmt: skip
    return Served(argv, env, tmp_path / f"{name}.log", port)


def gunicorn_workers(
    tmp_path: Path,
    workers: int,
    env: dict[str, str],
    worker_class: str = "uvicorn_worker.UvicornWorker",
) -> Served:
    port = free_port()
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn, "gunicorn is in the dev extra"
    argv = [gunicorn, "tests.apps.scale_server:app", "-k", worker_class,
            "-w", str(workers), "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"]  # fmt: skip
    return Served(argv, env, tmp_path / "gunicorn.log", port)


def drive(url: str, n: int) -> set[str]:
    """`n` GET /ping, each on a new connection (so the kernel spreads them over workers);
    the worker pids that answered."""
    pids = set()
    for _ in range(n):
        with httpx.Client(base_url=url, timeout=5) as c:
            response = c.get("/ping")
            assert response.status_code == 200
            pids.add(response.text)
    return pids


def scrape_until(url: str, want: float, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        with httpx.Client(base_url=url, timeout=5) as c:
            text = c.get("/metrics").text
        if requests_total(text, "/ping") >= want:
            return text
        time.sleep(0.2)
    return text


BASE_ENV = {"LAUNCHREADY_ACCESS_LOG": "false", "LAUNCHREADY_LOG_LEVEL": "WARNING",
            "LAUNCHREADY_METRICS_CACHE_S": "0"}  # fmt: skip


@pytest.mark.slow
def test_uvicorn_two_workers_every_scrape_reports_the_full_count(tmp_path: Path) -> None:
    """uvicorn --workers 2: after 200 requests spread over both workers, each of 10
    consecutive scrapes (whichever worker takes it) reports all 200."""
    server = uvicorn_workers(tmp_path, 2, BASE_ENV)
    try:
        server.wait_ready()
        pids = drive(server.url, 200)
        assert len(pids) == 2, "the kernel sent every connection to one worker"
        scrape_until(server.url, 200)
        time.sleep(1.2)  # every worker has published its last figures
        counts = []
        for _ in range(10):
            with httpx.Client(base_url=server.url, timeout=5) as c:
                counts.append(requests_total(c.get("/metrics").text, "/ping"))
        assert counts == [200.0] * 10
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    "worker_class",
    # the uvicorn-worker package's class, and uvicorn's own, which uvicorn deprecates for it
    ["uvicorn_worker.UvicornWorker", "uvicorn.workers.UvicornWorker"],
)
def test_gunicorn_four_workers_and_two_instances_never_double_count(
    tmp_path: Path, worker_class: str
) -> None:
    """gunicorn -w 4 with uvicorn workers reports the instance's full count; a second
    instance on the same host reports only its own, so summing the two is exact."""
    first = gunicorn_workers(tmp_path, 4, BASE_ENV, worker_class)
    second = uvicorn_workers(tmp_path, 2, BASE_ENV, name="second")
    try:
        first.wait_ready()
        second.wait_ready()
        assert len(drive(first.url, 300)) >= 2
        drive(second.url, 50)
        time.sleep(1.5)
        assert requests_total(scrape_until(first.url, 300), "/ping") == 300
        assert requests_total(scrape_until(second.url, 50), "/ping") == 50
        for _ in range(5):
            with httpx.Client(base_url=first.url, timeout=5) as c:
                assert requests_total(c.get("/metrics").text, "/ping") == 300
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
async def test_bench_reads_every_worker(tmp_path: Path) -> None:
    """The bench's scrapes of a two-worker server count exactly the requests made between
    them, whichever worker answers each scrape."""
    from launchready_sdk.cli import servertime
    from launchready_sdk.cli.client import Origin, Pool
    from launchready_sdk.cli.metrics import delta

    server = uvicorn_workers(tmp_path, 2, {**BASE_ENV, "LAUNCHREADY_METRICS_CACHE_S": "1"})
    try:
        await asyncio.to_thread(server.wait_ready)
        # Both workers serve before the first scrape (a worker joins the instance's figures
        # with its first request; on a busy host one worker can take a short burst alone).
        warmed: set[str] = set()
        for _ in range(10):
            warmed |= await asyncio.to_thread(drive, server.url, 20)
            if len(warmed) == 2:
                break
        assert len(warmed) == 2
        pool = Pool(Origin.parse(server.url))
        before = await servertime.settled(pool, "/metrics")
        pids = await asyncio.to_thread(drive, server.url, 150)
        assert len(pids) == 2
        after = await servertime.settled(pool, "/metrics")
        assert isinstance(before, servertime.Scrape)
        assert isinstance(after, servertime.Scrape)
        counted = delta(before.buckets, after.buckets)["GET /ping"][float("inf")]
        assert counted == 150
        assert (before.workers, after.workers) == (2, 2)
        assert not servertime.went_backwards(before, after), "one instance, whichever worker"
        assert after.breakdown, "the breakdown families come from every worker too"
        await pool.close()
    finally:
        server.stop()


async def test_gzip_for_scrapers_that_accept_it(asgi_client: Any) -> None:
    """A scraper accepting gzip gets the same text compressed; `gzip;q=0` gets it plain."""
    import gzip

    _, app = wrapped()
    c = asgi_client(app)
    await c.get("/a")
    plain = await c.get("/metrics", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    raw = await c.send(c.build_request("GET", "/metrics", headers={"accept-encoding": "gzip"}),
                       stream=True)  # fmt: skip
    body = b"".join([chunk async for chunk in raw.aiter_raw()])
    assert raw.headers["content-encoding"] == "gzip"
    assert int(raw.headers["content-length"]) == len(body)
    assert gzip.decompress(body) == plain.content
    refused = await c.get("/metrics", headers={"accept-encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


async def test_breaker_openings_are_on_metrics(
    asgi_client: Any, redis_url: str, redis_prefix: str
) -> None:
    """With Redis, /metrics counts the Redis breaker's openings."""
    _, app = wrapped(redis_url=redis_url, redis_prefix=redis_prefix)
    text = (await asgi_client(app).get("/metrics")).text
    assert samples(text)["launchready_redis_breaker_opened_total"][0].value == 0


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True])
def test_memory_limits_split_over_workers_are_said_once(
    tmp_path: Path, shared: bool, redis_url: str, redis_prefix: str
) -> None:
    """uvicorn --workers 2 without Redis: each worker keeps its own rate-limit budgets, so a
    client gets twice each rate; a worker says so once, naming the number of workers. With
    Redis (one shared budget) nothing is said."""
    env = {**BASE_ENV}
    if shared:
        env |= {"LAUNCHREADY_REDIS_URL": redis_url, "LAUNCHREADY_REDIS_PREFIX": redis_prefix}
    server = uvicorn_workers(tmp_path, 2, env)
    try:
        server.wait_ready()
        warmed: set[str] = set()
        for _ in range(10):
            warmed |= drive(server.url, 20)
            if len(warmed) == 2:
                break
        assert len(warmed) == 2
        lines: list[dict[str, Any]] = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            time.sleep(0.3)
            lines = [
                json.loads(line)
                for line in server.log_path.read_text().splitlines()
                if "ratelimit.per_worker_budgets" in line
            ]
            if lines and not shared:
                break
    finally:
        server.stop()
    if shared:
        assert lines == []
    else:
        assert lines, server.log_path.read_text()[-2000:]
        assert {line["workers"] for line in lines} == {2}
        assert len(lines) <= 2  # once per worker at most
