"""What the FastAPI and Django shops share: seed data, passwords, session tokens, webhook
signatures and configuration read from the environment. Framework-free on purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from launchready_sdk import get_logger, get_request_id

CATEGORIES = ("apparel", "books", "electronics", "garden", "home", "kitchen", "sports", "toys")
PRODUCT_COUNT = 240
DEMO_EMAIL = "demo@example.com"
TOKEN_LIFETIME_S = 7 * 24 * 3600
WEBHOOK_TOLERANCE_S = 300

# Development defaults, for a laptop and the bundled bench only. Set the variables in production.
DEV_SECRET_KEY = "dev-only-secret-key-change-me"
DEV_WEBHOOK_SECRET = "whsec_dev_only_change_me"
DEV_DEMO_PASSWORD = "demo-password-123"

_ADJECTIVES = ("Classic", "Compact", "Deluxe", "Everyday", "Rugged", "Smart", "Urban", "Vintage")
_NOUNS = ("Kit", "Set", "Pack", "Edition", "Bundle", "Model", "Series", "Collection")


log = get_logger("shop")


class Problem(Exception):
    """An answer of the shop's own: rendered as problem+json by either framework."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail


def problem_body(status: int, title: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    """An RFC 9457 body carrying the request id."""
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail or title,
        "request_id": get_request_id(),
        **extra,
    }


@dataclass(frozen=True, slots=True)
class ShopConfig:
    """The shop's configuration, from the environment."""

    database_url: str
    secret_key: str
    webhook_secret: str
    admin_token: str
    demo_password: str
    payment_url: str | None
    email_url: str | None
    using_dev_secrets: bool

    @classmethod
    def from_env(cls, name: str) -> ShopConfig:
        """`name` names the shop's files under `.launchready/` in the current directory."""
        env = os.environ
        admin = env.get("SHOP_ADMIN_TOKEN") or _generated_admin_token(name)
        payment = env.get("PAYMENT_URL") or None
        return cls(
            database_url=env.get("DATABASE_URL") or f"sqlite:///{_data_dir() / name}.sqlite3",
            secret_key=env.get("SHOP_SECRET_KEY") or DEV_SECRET_KEY,
            webhook_secret=env.get("SHOP_WEBHOOK_SECRET") or DEV_WEBHOOK_SECRET,
            admin_token=admin,
            demo_password=env.get("SHOP_DEMO_PASSWORD") or DEV_DEMO_PASSWORD,
            payment_url=payment.rstrip("/") if payment else None,
            email_url=(env.get("EMAIL_URL") or payment or "").rstrip("/") or None,
            using_dev_secrets=not env.get("SHOP_SECRET_KEY") or not env.get("SHOP_WEBHOOK_SECRET"),
        )


def _generated_admin_token(name: str) -> str:
    """A development admin token, kept in a private file so every worker and restart shares it."""
    path = _data_dir() / f"{name}.admin-token"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    token = "adm_" + secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    # Shown once on a terminal, never through the application log nor into a log file.
    if sys.stderr.isatty():
        print(f"shop: admin token: {token} (kept in {path}; set SHOP_ADMIN_TOKEN)", file=sys.stderr)
    else:
        print(
            f"shop: a development admin token is in {path} (or set SHOP_ADMIN_TOKEN)",
            file=sys.stderr,
        )
    return token


def _data_dir() -> Path:
    folder = Path(os.environ.get("SHOP_DATA_DIR") or Path.cwd() / ".launchready")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sdk_overrides(service_name: str, **more: Any) -> dict[str, Any]:
    """The shop's SDK settings, each applied only where no `LAUNCHREADY_*` variable is set."""
    wanted: dict[str, Any] = {
        "service_name": service_name,
        "idempotent_routes": ("/checkout",),
        "cache_routes": {"/": 30, "/products": 30, "/products/{id}": 60},
        **more,
    }
    return {k: v for k, v in wanted.items() if f"LAUNCHREADY_{k.upper()}" not in os.environ}


def seed_products() -> list[dict[str, Any]]:
    """The catalog both shops start with: deterministic, so benches and tests can rely on it."""
    products = []
    for i in range(1, PRODUCT_COUNT + 1):
        category = CATEGORIES[(i - 1) % len(CATEGORIES)]
        name = f"{_ADJECTIVES[i % 8]} {category.title()} {_NOUNS[(i // 8) % 8]} {i}"
        products.append(
            {
                "id": i,
                "sku": f"SKU-{i:04d}",
                "name": name,
                "category": category,
                "price_cents": 500 + (i * 137) % 20000,
                "stock": 1000,
                "featured": i % 20 == 1,
                "description": f"The {name.lower()}, for anyone who likes {category}.",
            }
        )
    return products


# Passwords: scrypt, a memory-hard KDF from the standard library.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        ("scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, _unb64(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def sign_token(secret: str, user_id: int, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + TOKEN_LIFETIME_S)
    payload = f"{user_id}.{expires}"
    return f"{payload}.{_mac(secret, payload)}"


def read_token(secret: str, token: str, now: float | None = None) -> int | None:
    """The user id a session token names, or None when it is forged, malformed or expired."""
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii() or not (parts[0] + parts[1]).isdigit():
        return None
    payload = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(parts[2].encode(), _mac(secret, payload).encode()):
        return None
    if int(parts[1]) < (time.time() if now is None else now):
        return None
    return int(parts[0])


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


def sign_webhook(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `Payment-Signature` header value for a webhook body."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_webhook(secret: str, body: bytes, header: str | None, now: float | None = None) -> bool:
    """Whether a `Payment-Signature` header is valid for `body` and recent enough."""
    if not header or len(header) > 512 or not header.isascii():
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > WEBHOOK_TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))


def dummy_password_hash() -> str:
    """A hash to check against when the account does not exist, so a login for an unknown
    email costs the same time as one for a known email."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_hex(8))
    return _DUMMY_HASH


_DUMMY_HASH: str | None = None


def customer_of(config: ShopConfig, authorization: str | None) -> int:
    """The signed-in customer's id, from an `Authorization: Bearer` session token; 401 else."""
    token = bearer(authorization)
    user_id = read_token(config.secret_key, token) if token else None
    if user_id is None:
        raise Problem(401, "Not signed in", "Send Authorization: Bearer <token> from /login.")
    return user_id


def require_admin(config: ShopConfig, authorization: str | None) -> None:
    """Refuse (401) anything but the admin token, compared in constant time."""
    token = bearer(authorization) or ""
    if not hmac.compare_digest(token.encode(), config.admin_token.encode()):
        raise Problem(401, "Admin token required")


class PaymentEvent(NamedTuple):
    """A verified payment webhook event."""

    id: str
    kind: str
    order_id: str

    @property
    def once_key(self) -> str:
        """The key under which `lr.idempotency.once()` remembers this event."""
        return f"payment-event:{self.id}"

    @property
    def order_status(self) -> str | None:
        """The status the event moves its order to; None for a kind the shop ignores."""
        return {"charge.succeeded": "paid", "charge.failed": "payment_failed"}.get(self.kind)


EVENT_TTL_S = 7 * 86400  # how long a payment event is remembered, past any provider's retries
CONFIRMATION_TEXT = "Thank you for your order."


def confirmation_subject(order_id: str) -> str:
    return f"Order {order_id} confirmed"


def payment_event(config: ShopConfig, raw: bytes, signature: str | None) -> PaymentEvent:
    """The event of a webhook body whose `Payment-Signature` is valid: 400 for a bad or stale
    signature, 422 for a body that is not an event."""
    if not verify_webhook(config.webhook_secret, raw, signature):
        raise Problem(400, "Invalid webhook signature")
    try:
        event = json.loads(raw)
        fields = (event["id"], event["type"], event["data"]["order_id"])
    except (ValueError, KeyError, TypeError, RecursionError):
        raise Problem(422, "Invalid webhook event") from None
    if not all(isinstance(v, str) and 0 < len(v) <= 128 for v in fields):
        raise Problem(422, "Invalid webhook event")
    return PaymentEvent(*fields)


def new_order_id() -> str:
    return "ord_" + secrets.token_hex(12)


def product_body(p: Any) -> dict[str, Any]:
    """A product row (either ORM's) as the API shows it."""
    return {
        "id": p.id,
        "sku": p.sku,
        "name": p.name,
        "category": p.category,
        "price_cents": p.price_cents,
        "stock": p.stock,
        "description": p.description,
    }


def order_body(order: Any, items: Any) -> dict[str, Any]:
    """An order row and its item rows (either ORM's) as the API shows them."""
    return {
        "id": order.id,
        "status": order.status,
        "total_cents": order.total_cents,
        "charge_id": order.charge_id,
        "items": [
            {
                "product_id": i.product_id,
                "name": i.name,
                "quantity": i.quantity,
                "price_cents": i.price_cents,
            }
            for i in items
        ],
    }


# The providers' API: the request each call sends, and how its answer or failure is read.
CHARGE_PATH = "/payments/charges"
EMAIL_PATH = "/email/messages"


def charge_request(order_id: str, total_cents: int, webhook_url: str) -> dict[str, Any]:
    """Keyword arguments of the charge POST; the key lets the client retry it safely."""
    return {
        "json": {
            "amount_cents": total_cents,
            "currency": "usd",
            "order_id": order_id,
            "webhook_url": webhook_url,
        },
        "headers": {"Idempotency-Key": f"charge-{order_id}"},
    }


def charge_id_of(response: httpx.Response) -> str:
    """The charge id in the provider's answer; raises `httpx.HTTPStatusError` for an error
    status and `ValueError` when the answer holds no charge id."""
    response.raise_for_status()
    body = response.json()
    charge_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(charge_id, str):
        raise ValueError("no charge id")
    return charge_id


PROVIDER_ERRORS = (httpx.HTTPError, TimeoutError, ValueError)


def payment_problem(exc: Exception, order_id: str) -> Problem:
    """The checkout's answer when the charge failed: 504 for the deadline, else 502."""
    timed_out = isinstance(exc, TimeoutError | httpx.TimeoutException)
    event = "checkout.payment_timeout" if timed_out else "checkout.payment_failed"
    log.warning(event, order_id=order_id, error=type(exc).__name__)
    if timed_out:
        return Problem(504, "Payment provider timed out", "No order was placed.")
    return Problem(502, "Payment provider failed", "No order was placed.")


def email_request(to: str, subject: str, text: str) -> dict[str, Any]:
    return {"json": {"to": to, "subject": subject, "text": text}}


def email_failed(exc: Exception, subject: str) -> bool:
    """Log a failed email (the order stands; the message is lost); always False."""
    log.warning("email.failed", subject=subject, error=type(exc).__name__)
    return False


def own_webhook_url(server: Any) -> str:
    """The payment webhook's URL at the address this server listens on (the ASGI `server`
    pair), never at the client's Host header."""
    host, port = server or ("127.0.0.1", 8000)
    host = f"[{host}]" if ":" in str(host) else host
    return f"http://{host}:{port}/webhooks/payment"


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
