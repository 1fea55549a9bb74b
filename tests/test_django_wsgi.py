"""Django under WSGI: the bundled shop and the auth project under gunicorn with 2 sync workers.

The shop runs every shared flow (`tests/shopflows.py`) and the Django shop's own tests, on
SQLite and PostgreSQL, sharing limits, the cache and idempotency records through the real
Redis (each run under its own key prefix). Bad input travels over raw sockets: a chunked body,
a client that leaves mid-body, a worker killed mid-request.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

import tests.test_django_shop as asgi_shop
from tests.conftest import RUN_PREFIX, SHARED_REDIS_URL, GunicornServer
from tests.shopflows import (
    Shop,
    assert_problem,
    fill_cart,
    new_ip,
    postgres_database,
    running_shop,
    signup,
    wait_for,
)
from tests.test_dropin import csrf_token

SPEC = "examples.django_shop.wsgi:application"


def _shop_server(prefix: str) -> type[GunicornServer]:
    class ShopGunicorn(GunicornServer):
        redis_prefix = prefix

        def __init__(self, spec: str, env: dict[str, str], log_path: Path) -> None:
            env = {
                **env,
                "LAUNCHREADY_REDIS_URL": SHARED_REDIS_URL,
                "LAUNCHREADY_REDIS_PREFIX": prefix,
                "LAUNCHREADY_REDIS_TIMEOUT_S": "0.5",
            }
            super().__init__(spec, env, log_path)

    return ShopGunicorn


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    folder: Path = tmp_path_factory.mktemp(f"django-wsgi-{request.param}")
    server = _shop_server(f"{RUN_PREFIX}-wsgi-{uuid.uuid4().hex[:6]}")
    if request.param == "sqlite":
        with running_shop(SPEC, folder, None, server=server) as shop:
            yield shop
    else:
        with postgres_database() as url, running_shop(SPEC, folder, url, server=server) as shop:
            yield shop


class TestDjangoShopUnderGunicorn(asgi_shop.TestDjangoShop):
    """Every flow the ASGI shop passes, under gunicorn sync workers."""

    def test_both_workers_serve_with_request_ids(self, shop: Shop) -> None:
        """Requests reach both workers; every response and access line has its request id."""
        with shop.client() as c:
            ids = [c.get("/products").headers["x-request-id"] for _ in range(30)]
        lines = {r["request_id"]: r for r in shop.access_lines()}
        assert all(rid in lines for rid in ids)
        assert isinstance(shop.server, GunicornServer)
        assert len(shop.server.worker_pids()) == 2

    def test_a_chunked_body_reaches_the_view(self, shop: Shop) -> None:
        """A chunked signup (a limited route) and a chunked cart line (no layer) both reach
        Django whole."""
        email = f"chunked-{uuid.uuid4().hex[:8]}@example.com"
        body = f'{{"email": "{email}", "password": "correct horse battery"}}'.encode()
        status, reply = _raw(shop, "POST", "/signup", _chunked(body), chunked=True)
        assert status == 201, reply
        token = re.search(rb'"token":\s*"([^"]+)"', reply)
        assert token
        line = b'{"product_id": 3, "quantity": 2}'
        auth = {"Authorization": "Bearer " + token.group(1).decode()}
        status, reply = _raw(shop, "POST", "/cart/items", _chunked(line), chunked=True, **auth)
        assert status == 201, reply
        with shop.client(token=token.group(1).decode()) as c:
            assert c.get("/cart").json()["items"][0]["quantity"] == 2

    def test_a_malformed_chunked_body_is_a_400(self, shop: Shop) -> None:
        """A chunked body with a bad chunk size is refused before Django; the worker serves
        on."""
        status, _ = _raw(shop, "POST", "/cart/items", b"zz\r\nhello\r\n0\r\n\r\n", chunked=True)
        assert status == 400
        with shop.client() as c:
            assert c.get("/healthz").status_code == 200

    def test_a_client_that_leaves_mid_body_leaves_no_claim(self, shop: Shop) -> None:
        """A checkout whose client leaves mid-body makes no order and holds no claim: the
        retry with the same key goes through once."""
        _, token = signup(shop)
        with shop.client(token=token) as c:
            fill_cart(c, (9, 1))
        key = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        _leave_mid_body(shop, "/checkout", b'{"note": "', 200, headers)
        with shop.client(token=token) as c:
            placed = c.post("/checkout", headers={"Idempotency-Key": key})
            again = c.post("/checkout", headers={"Idempotency-Key": key})
        assert placed.status_code == 201, placed.text
        assert again.headers.get("idempotent-replayed") == "true"
        assert wait_for(lambda: [r for r in shop.access_lines() if r["status"] == 499])

    def test_a_worker_killed_mid_request_leaves_only_a_lease(self, shop: Shop) -> None:
        """Workers killed while a checkout waits on the payment provider: gunicorn starts new
        ones, the same key is refused with 409 while its lease runs (never a 500 or a hang),
        the lease has a TTL, and the shop serves on."""
        _, token = signup(shop)
        with shop.client(token=token) as c:
            fill_cart(c, (11, 1))
        key = uuid.uuid4().hex
        outcome: list[Any] = []
        shop.control(hang=True)
        try:

            def checkout() -> None:
                try:
                    with shop.client(token=token) as c:
                        outcome.append(c.post("/checkout", headers={"Idempotency-Key": key}))
                except httpx.HTTPError as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=checkout)
            pids = shop.server.worker_pids()
            thread.start()
            time.sleep(0.8)  # the checkout now waits on the hanging provider
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            thread.join(30)
        finally:
            shop.control(hang=False)
        assert isinstance(outcome[0], httpx.HTTPError)
        assert wait_for(lambda: len(set(shop.server.worker_pids()) - set(pids)) == 2, 30)
        shop.server.wait_ready("/readyz", timeout_s=30)
        with shop.client(token=token) as c:
            retry = c.post("/checkout", headers={"Idempotency-Key": key})
            assert_problem(retry, 409)
            fill_cart(c, (12, 1))  # the killed checkout's order took the cart's lines
            other = c.post("/checkout", headers={"Idempotency-Key": uuid.uuid4().hex})
        assert other.status_code == 201, other.text
        client = redis.Redis.from_url(SHARED_REDIS_URL)
        prefix = getattr(shop.server, "redis_prefix", "")
        leases = [client.ttl(k) for k in client.scan_iter(match=f"{prefix}*idem*", count=1000)]
        client.close()
        assert leases
        assert all(ttl > 0 for ttl in leases)


def _chunked(body: bytes, size: int = 7) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
             for i in range(0, len(body), size)]  # fmt: skip
    return b"".join(parts) + b"0\r\n\r\n"


def _connect(shop: Shop) -> socket.socket:
    port = int(shop.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=20)


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"X-Forwarded-For: {new_ip()}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _raw(
    shop: Shop, method: str, path: str, body: bytes, *, chunked: bool = False, **headers: str
) -> tuple[int, bytes]:
    """Send one request over a raw socket; its status and the whole reply."""
    headers = {"Content-Type": "application/json", "Connection": "close", **headers}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(len(body))
    with _connect(shop) as sock:
        sock.sendall(_head(method, path, headers) + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


def _leave_mid_body(
    shop: Shop, path: str, part: bytes, length: int, headers: dict[str, str]
) -> None:
    headers = {"Content-Type": "application/json", **headers, "Content-Length": str(length)}
    with _connect(shop) as sock:
        sock.sendall(_head("POST", path, headers) + part)
        time.sleep(0.3)  # the worker is reading the body now


# --- the auth project -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    """The Django auth project under gunicorn (preloaded, 2 sync workers), limits in Redis."""
    folder = tmp_path_factory.mktemp("django-auth-wsgi")
    env = {
        "LAUNCHREADY_TRUSTED_PROXIES": "127.0.0.1/32",
        "DJANGO_AUTH_DB": str(folder / "db.sqlite3"),
        "LAUNCHREADY_REDIS_URL": SHARED_REDIS_URL,
        "LAUNCHREADY_REDIS_PREFIX": f"{RUN_PREFIX}-auth-{uuid.uuid4().hex[:6]}",
    }
    server = GunicornServer(
        "tests.apps.django_auth.wsgi:application", env, folder / "wsgi.log", ["--preload"]
    )
    server.wait_ready(timeout_s=60)
    yield server
    server.stop()


def test_django_logins_are_limited_under_gunicorn(auth_project: GunicornServer) -> None:
    """The default limits reach `/accounts/login/` and `/admin/login/` across both workers;
    GETs of the forms never spend the budget."""
    with httpx.Client(base_url=auth_project.url, timeout=10) as c:
        ip = "198.51.100.70"
        for _ in range(15):
            token = csrf_token(c, "/accounts/login/", ip)
        codes = [
            c.post(
                "/accounts/login/",
                data={"username": "demo", "password": "wrong", "csrfmiddlewaretoken": token},
                headers={"X-Forwarded-For": ip, "Referer": auth_project.url},
            ).status_code
            for _ in range(11)
        ]
        admin = [
            c.post("/admin/login/", data={"username": "x", "password": "y"},
                   headers={"X-Forwarded-For": "198.51.100.71"}).status_code
            for _ in range(11)
        ]  # fmt: skip
        form = c.get("/admin/login/", headers={"X-Forwarded-For": "198.51.100.71"})
    assert codes[:10] == [200] * 10
    assert codes[10] == 429
    assert admin[10] == 429
    assert form.status_code == 200  # the form itself is still shown
    report = [r for r in auth_project.log_lines() if r.get("event") == "ratelimit.protected"]
    routes = {item["route"] for item in report[0]["routes"]}
    assert {"/accounts/login/", "/admin/login/"} <= routes


def test_django_routes_and_ids_under_gunicorn(auth_project: GunicornServer) -> None:
    """Access lines name Django's route templates and carry the response's request id;
    Django's own 404 page stays HTML for a browser."""
    page = httpx.get(auth_project.url + "/nope", headers={"Accept": "text/html"})
    api = httpx.get(auth_project.url + "/nope", headers={"Accept": "application/json"})
    login = httpx.get(auth_project.url + "/accounts/login/")
    assert page.headers["content-type"].startswith("text/html")
    assert api.headers["content-type"] == "application/problem+json"
    rid = login.headers["x-request-id"]
    lines = wait_for(
        lambda: [r for r in auth_project.log_lines() if r.get("request_id") == rid
                 and r.get("logger") == "launchready.access"]
    )  # fmt: skip
    assert lines[0]["route"] == "/accounts/login/"


def test_gthread_workers_and_a_graceful_exit(tmp_path: Path) -> None:
    """Under gthread workers (4 threads each) concurrent requests, limited and not, all carry
    their request id; at a graceful stop the workers flush their latency figures to Redis
    (the periodic flush is an hour away here, so only the exit can have written them)."""
    prefix = f"{RUN_PREFIX}-gthread-{uuid.uuid4().hex[:6]}"
    env = {
        "LAUNCHREADY_TRUSTED_PROXIES": "127.0.0.1/32",
        "DJANGO_AUTH_DB": str(tmp_path / "db.sqlite3"),
        "LAUNCHREADY_REDIS_URL": SHARED_REDIS_URL,
        "LAUNCHREADY_REDIS_PREFIX": prefix,
        "LAUNCHREADY_LATENCY_FLUSH_INTERVAL_S": "3600",
    }
    server = GunicornServer(
        "tests.apps.django_auth.wsgi:application",
        env,
        tmp_path / "gthread.log",
        ["--preload", "--worker-class", "gthread", "--threads", "4"],
    )
    client = redis.Redis.from_url(SHARED_REDIS_URL)
    key = f"{prefix}:django-auth:latency:total"
    try:
        server.wait_ready(timeout_s=60)
        paths = ["/accounts/login/", "/healthz", "/login-history", "/nope"] * 10

        def get(path: str) -> httpx.Response:
            return httpx.get(server.url + path, headers={"X-Forwarded-For": new_ip()}, timeout=20)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(get, paths))
        assert [a.status_code for a in answers[:4]] == [200, 200, 200, 404]
        assert len({a.headers["x-request-id"] for a in answers}) == len(paths)
        assert client.hlen(key) == 0
    finally:
        server.stop()
    assert server.proc.returncode == 0
    assert client.hlen(key) >= 1  # one entry per worker that served a request
    client.close()
