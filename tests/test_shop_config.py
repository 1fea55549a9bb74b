"""The bundled shops' configuration (examples/shopcore.py, examples/shopinput.py): development
mode, secrets that must not be empty, the admin token file, payment events checked against the
order, and the shared input rules. Start-up is tried on both shops through real uvicorn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.shopcore import (
    DEV_SECRET_KEY,
    MIN_SECRET_CHARS,
    PaymentEvent,
    Problem,
    ShopConfig,
    ShopConfigError,
    check_payment,
    require_admin,
)
from examples.shopinput import SIGNUP, Invalid, read
from tests.conftest import ROOT, Server
from tests.shopflows import postgres_database

SHOPS = {
    "fastapi": "examples.fastapi_shop.app:app",
    "django": "examples.django_shop.asgi:application",
}
PRODUCTION = {
    "SHOP_SECRET_KEY": "k" * 32,
    "SHOP_WEBHOOK_SECRET": "w" * 32,
    "SHOP_DEMO_PASSWORD": "demo-password-of-our-own",
    "SHOP_ADMIN_TOKEN": "a" * 32,
    "PAYMENT_URL": "http://127.0.0.1:9",
}


def config(tmp_path: Path, **env: str) -> ShopConfig:
    return ShopConfig.from_env("shop", {"SHOP_DATA_DIR": str(tmp_path), **env})


# --- development mode and secrets ----------------------------------------------------------


def test_production_settings_start(tmp_path: Path) -> None:
    """Every secret and a payment URL: the shop starts outside development mode."""
    shop = config(tmp_path, **PRODUCTION)
    assert not shop.dev_mode
    assert not shop.using_dev_secrets
    assert shop.admin_token == "a" * 32
    assert shop.payment_url == "http://127.0.0.1:9"


def test_without_development_mode_the_public_defaults_are_refused(tmp_path: Path) -> None:
    """No secrets and no payment URL, no SHOP_DEV_MODE: one error naming every variable."""
    with pytest.raises(ShopConfigError) as info:
        config(tmp_path)
    message = str(info.value)
    for name in ("SHOP_SECRET_KEY", "SHOP_WEBHOOK_SECRET", "SHOP_DEMO_PASSWORD", "PAYMENT_URL"):
        assert name in message
    assert "SHOP_DEV_MODE=1" in message


@pytest.mark.parametrize(
    "missing", ["SHOP_SECRET_KEY", "SHOP_WEBHOOK_SECRET", "SHOP_DEMO_PASSWORD", "PAYMENT_URL"]
)
def test_each_missing_variable_is_refused_alone(tmp_path: Path, missing: str) -> None:
    """Forgetting one variable is enough to refuse: the fake provider or a public secret."""
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ShopConfigError, match=f"{missing} is not set"):
        config(tmp_path, **env)


@pytest.mark.parametrize("dev", ["0", "1"])
@pytest.mark.parametrize("blank", ["", " ", "\t\n", "short"])
@pytest.mark.parametrize("name", ["SHOP_SECRET_KEY", "SHOP_WEBHOOK_SECRET", "SHOP_ADMIN_TOKEN"])
def test_a_blank_or_short_secret_is_refused_even_in_development(
    tmp_path: Path, name: str, blank: str, dev: str
) -> None:
    """A zero-byte, whitespace-only or short secret variable is a mistake, in any mode; it is
    never read as "use the default"."""
    with pytest.raises(ShopConfigError, match=name):
        config(tmp_path, **{**PRODUCTION, name: blank, "SHOP_DEV_MODE": dev})


@pytest.mark.parametrize("value", ["", " ", "ftp://x", "127.0.0.1:9"])
def test_a_blank_or_bad_payment_url_is_refused(tmp_path: Path, value: str) -> None:
    """PAYMENT_URL set to nothing is not "use the fake provider"."""
    with pytest.raises(ShopConfigError, match="PAYMENT_URL must be an http"):
        config(tmp_path, **{**PRODUCTION, "PAYMENT_URL": value, "SHOP_DEV_MODE": "1"})


def test_development_mode_allows_the_defaults(tmp_path: Path) -> None:
    """SHOP_DEV_MODE=1: the development secrets and the fake provider, with a generated token."""
    shop = config(tmp_path, SHOP_DEV_MODE="1")
    assert shop.dev_mode
    assert shop.using_dev_secrets
    assert shop.secret_key == DEV_SECRET_KEY
    assert shop.payment_url is None
    assert len(shop.admin_token) >= MIN_SECRET_CHARS
    assert (tmp_path / "shop.admin-token").read_text() == shop.admin_token


def test_a_typo_in_development_mode_is_refused(tmp_path: Path) -> None:
    """SHOP_DEV_MODE=yes-please is neither on nor off: an error, not a guess."""
    with pytest.raises(ShopConfigError, match="SHOP_DEV_MODE must be 1 or 0"):
        config(tmp_path, SHOP_DEV_MODE="yes-please")


# --- the admin token -------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", " ", "\n\n", "   \t ", "adm_short"])
def test_an_empty_or_short_token_file_is_replaced(tmp_path: Path, content: str) -> None:
    """A token file a crash or a full disk left empty (or blank, or short) never becomes the
    admin token: a new one replaces it, and the empty header stays refused."""
    (tmp_path / "shop.admin-token").write_text(content)
    shop = config(tmp_path, SHOP_DEV_MODE="1")
    assert len(shop.admin_token) >= MIN_SECRET_CHARS
    assert (tmp_path / "shop.admin-token").read_text() == shop.admin_token
    for header in (None, "", "Bearer ", "Bearer " + content):
        with pytest.raises(Problem) as info:
            require_admin(shop, header)
        assert info.value.status == 401
    require_admin(shop, f"Bearer {shop.admin_token}")


def test_a_valid_token_file_is_kept(tmp_path: Path) -> None:
    """Restarts and other workers share the token already in the file."""
    (tmp_path / "shop.admin-token").write_text("adm_" + "x" * 30 + "\n")
    assert config(tmp_path, SHOP_DEV_MODE="1").admin_token == "adm_" + "x" * 30


@pytest.mark.parametrize("secret", ["", " ", "short"])
def test_an_empty_configured_secret_refuses_everyone(secret: str) -> None:
    """Even if an empty admin token reached the config, no header would match it."""
    shop = ShopConfig("sqlite://", "k" * 32, "w" * 32, secret, "pw", None, None, False)
    for header in (None, "", "Bearer", "Bearer ", f"Bearer {secret}"):
        with pytest.raises(Problem):
            require_admin(shop, header)


# Reads a data folder per line and prints the admin token a shop starting there would use.
_WORKER = """
import sys
from examples.shopcore import ShopConfig
for line in sys.stdin:
    env = {"SHOP_DATA_DIR": line.strip(), "SHOP_DEV_MODE": "1"}
    print(repr(ShopConfig.from_env("shop", env).admin_token), flush=True)
"""


def test_workers_starting_together_share_one_whole_token(tmp_path: Path) -> None:
    """Four processes reading the token of a fresh folder at the same instant, 50 times: every
    one gets the same complete token, never an empty or half-written one."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for trial in range(50):
            folder = tmp_path / str(trial)
            folder.mkdir()
            for w in workers:  # as close together as the pipes allow
                assert w.stdin is not None
                w.stdin.write(f"{folder}\n")
                w.stdin.flush()
            tokens = [w.stdout.readline().strip() for w in workers if w.stdout is not None]
            assert len(set(tokens)) == 1, (trial, tokens)
            assert len(tokens[0]) >= MIN_SECRET_CHARS + 2  # quoted by repr()
            assert repr((folder / "shop.admin-token").read_text()) == tokens[0]
            assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    finally:
        for w in workers:
            w.communicate(timeout=30)  # closes its pipes


# --- payment events ----------------------------------------------------------------------------


def event(**changes: Any) -> PaymentEvent:
    fields = {
        "id": "evt_1",
        "kind": "charge.succeeded",
        "order_id": "ord_1",
        "charge_id": "ch_1",
        "amount_cents": 1234,
        "currency": "usd",
        **changes,
    }
    return PaymentEvent(**fields)


def test_a_payment_event_must_be_the_orders_own_charge() -> None:
    """Amount, currency and charge id are checked; 409 while the charge id is not stored yet."""
    check_payment(event(), 1234, "ch_1")
    for wrong in (event(amount_cents=1), event(currency="eur"), event(charge_id="ch_2")):
        with pytest.raises(Problem) as info:
            check_payment(wrong, 1234, "ch_1")
        assert info.value.status == 422
    with pytest.raises(Problem) as info:
        check_payment(event(), 1234, None)
    assert info.value.status == 409


# --- the shared input rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    ["victim@x.io\n", "victim@x.io\r", "victim@x.io ", "vic tim@x.io", "a@b@c", "@x.io", "x@"],
)
def test_the_shared_email_rule_matches_the_whole_value(email: str) -> None:
    """One rule for both shops, matched whole: a trailing newline is not a new address."""
    with pytest.raises(Invalid):
        read(SIGNUP, {"email": email, "password": "long enough"}, "body")


def test_the_shared_rules_collect_every_error() -> None:
    """All bad fields are named at once, with where they were."""
    with pytest.raises(Invalid) as info:
        read(SIGNUP, {"email": 5, "password": "short", "name": "x" * 201}, "body")
    assert [e["loc"] for e in info.value.errors] == [
        ["body", "email"],
        ["body", "password"],
        ["body", "name"],
    ]


# --- start-up, through uvicorn -------------------------------------------------------------------


@pytest.mark.parametrize("shop", sorted(SHOPS))
def test_a_shop_without_development_mode_refuses_the_defaults(tmp_path: Path, shop: str) -> None:
    """Outside development mode a shop with no secrets and no PAYMENT_URL exits at start-up,
    naming the variables, instead of warning and serving."""
    server = Server(SHOPS[shop], {"SHOP_DATA_DIR": str(tmp_path)}, tmp_path / "shop.log")
    try:
        with pytest.raises(RuntimeError, match="server exited"):
            server.wait_ready("/readyz", timeout_s=60)
        log = server.raw_log()
    finally:
        server.stop()
    assert "ShopConfigError" in log
    assert "SHOP_SECRET_KEY is not set" in log
    assert "PAYMENT_URL is not set" in log


@pytest.mark.parametrize("shop", sorted(SHOPS))
def test_an_empty_token_file_never_opens_the_admin(tmp_path: Path, shop: str) -> None:
    """A shop started over an empty token file writes a new token; the empty header and the
    empty string are refused, the new token is accepted."""
    (tmp_path / f"{shop}_shop.admin-token").write_text("")
    env = {"SHOP_DATA_DIR": str(tmp_path), "SHOP_DEV_MODE": "1"}
    server = Server(SHOPS[shop], env, tmp_path / "s.log")
    try:
        server.wait_ready("/readyz", timeout_s=60)
        token = (tmp_path / f"{shop}_shop.admin-token").read_text()
        with httpx.Client(base_url=server.url, timeout=20) as c:
            refused = [
                c.get("/admin/orders", headers=h).status_code
                for h in ({}, {"Authorization": ""}, {"Authorization": "Bearer"})
            ]
            allowed = c.get("/admin/orders", headers={"Authorization": f"Bearer {token}"})
        assert any(r.get("event") == "shop.dev_mode" for r in server.log_lines())
    finally:
        server.stop()
    assert len(token) >= MIN_SECRET_CHARS
    assert refused == [401, 401, 401]
    assert allowed.status_code == 200, allowed.text


def test_a_fresh_token_is_random(tmp_path: Path) -> None:
    """Two data folders get two different generated tokens."""
    a = config(tmp_path / "a", SHOP_DEV_MODE="1").admin_token
    b = config(tmp_path / "b", SHOP_DEV_MODE="1").admin_token
    assert a != b
    assert a.startswith("adm_")


# --- 64-bit money columns in a database an older version created ------------------------------


async def test_the_fastapi_shop_widens_an_older_postgresql_database() -> None:
    """A PostgreSQL database whose money columns are 32-bit (as older versions made them) is
    widened at start-up, so a total over 2**31 cents fits; a second start changes nothing."""
    from examples.fastapi_shop.db import create_and_seed, make_engine

    money = (("products", "price_cents"), ("orders", "total_cents"), ("order_items", "price_cents"))
    query = (
        "SELECT table_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND column_name IN ('price_cents', 'total_cents')"
    )
    with postgres_database() as url:
        engine = make_engine(url)
        try:
            await create_and_seed(engine, "demo-password")
            async with engine.begin() as conn:
                for table, column in money:
                    await conn.exec_driver_sql(
                        f"ALTER TABLE {table} ALTER COLUMN {column} TYPE INTEGER"
                    )
            for _ in range(2):
                await create_and_seed(engine, "demo-password")
                async with engine.connect() as conn:
                    kinds = dict((await conn.exec_driver_sql(query)).all())
                assert kinds == dict.fromkeys(("products", "orders", "order_items"), "bigint")
        finally:
            await engine.dispose()
