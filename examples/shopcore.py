"""What the FastAPI and Django shops share: seed data, passwords, session tokens, webhook
signatures and configuration read from the environment. Framework-free on purpose.

Security stance: outside development mode (`SHOP_DEV_MODE=1`) a shop refuses to start on the
public development secrets or with the in-process fake payment provider, which confirms every
order. A secret variable that is set must hold at least 16 characters: an empty or
whitespace-only one is a mistake, never "use the default". The admin token is never compared
against an empty or short secret; a generated one is written to its file atomically (a
temporary file renamed over it, under a lock), so a crash or two workers starting together never
leave an empty token that an empty `Authorization` header would match. A payment event changes
an order only when its amount, currency and charge id are the order's.

Limits, candidly: development mode is one variable; a deploy that sets it runs on public
secrets again, and the shop logs a warning at every start to say so.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from launchready_sdk import get_logger, get_request_id
from launchready_sdk.perimeter import check_canonical_host, check_host_entry

CATEGORIES = ("apparel", "books", "electronics", "garden", "home", "kitchen", "sports", "toys")
PRODUCT_COUNT = 240
DEMO_EMAIL = "demo@example.com"
TOKEN_LIFETIME_S = 7 * 24 * 3600
WEBHOOK_TOLERANCE_S = 300

# Development defaults, for a laptop and the bundled bench only: used in development mode
# (SHOP_DEV_MODE=1) alone. Outside it the shop refuses to start without the variables.
DEV_MODE_VAR = "SHOP_DEV_MODE"
DEV_SECRET_KEY = "dev-only-secret-key-change-me"
DEV_WEBHOOK_SECRET = "whsec_dev_only_change_me"
DEV_DEMO_PASSWORD = "demo-password-123"
MIN_SECRET_CHARS = 16  # session key, webhook secret, admin token
MIN_PASSWORD_CHARS = 8
SHOP_CURRENCY = "usd"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")

_ADJECTIVES = ("Classic", "Compact", "Deluxe", "Everyday", "Rugged", "Smart", "Urban", "Vintage")
_NOUNS = ("Kit", "Set", "Pack", "Edition", "Bundle", "Model", "Series", "Collection")


log = get_logger("shop")


class ShopConfigError(Exception):
    """The shop's environment is unsafe or wrong; the message names each variable."""


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
    dev_mode: bool = False

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] | None = None) -> ShopConfig:
        """`name` names the shop's files under `.launchready/` in the current directory.

        Raises `ShopConfigError` naming every variable that is wrong: set but empty, too short,
        or (outside development mode) missing where only a public development default exists.
        """
        env = os.environ if environ is None else environ
        dev = dev_mode(env)
        problems: list[str] = []

        def secret(var: str, default: str, min_chars: int = MIN_SECRET_CHARS) -> str:
            value = (env.get(var) or "").strip()
            if var not in env:
                if not dev:
                    problems.append(f"{var} is not set")
                return default
            if not value:
                problems.append(f"{var} is set but empty (unset it or give it a value)")
            elif len(value) < min_chars:
                problems.append(f"{var} is shorter than {min_chars} characters")
            return value

        secret_key = secret("SHOP_SECRET_KEY", DEV_SECRET_KEY)
        webhook_secret = secret("SHOP_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET)
        demo_password = secret("SHOP_DEMO_PASSWORD", DEV_DEMO_PASSWORD, MIN_PASSWORD_CHARS)
        admin = secret("SHOP_ADMIN_TOKEN", "") if "SHOP_ADMIN_TOKEN" in env else None
        payment = _url(env, "PAYMENT_URL", problems)
        email = _url(env, "EMAIL_URL", problems) or payment
        if payment is None and not dev:
            problems.append(
                "PAYMENT_URL is not set (the in-process fake provider confirms every order)"
            )
        if problems:
            raise ShopConfigError(
                "; ".join(problems) + f". Outside development mode ({DEV_MODE_VAR}=1, for a "
                "laptop or the bench) the shop runs only on secrets and providers of its own; "
                "see examples/README.md"
            )
        return cls(
            database_url=env.get("DATABASE_URL") or f"sqlite:///{_data_dir(env) / name}.sqlite3",
            secret_key=secret_key,
            webhook_secret=webhook_secret,
            admin_token=admin if admin is not None else _generated_admin_token(name, env),
            demo_password=demo_password,
            payment_url=payment,
            email_url=email,
            using_dev_secrets=secret_key == DEV_SECRET_KEY
            or webhook_secret == DEV_WEBHOOK_SECRET
            or demo_password == DEV_DEMO_PASSWORD,
            dev_mode=dev,
        )


def dev_mode(env: Mapping[str, str]) -> bool:
    """Whether `SHOP_DEV_MODE` turns development mode on; ShopConfigError for a typo."""
    value = env.get(DEV_MODE_VAR, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ShopConfigError(f"{DEV_MODE_VAR} must be 1 or 0, not {env[DEV_MODE_VAR]!r}")


def _url(env: Mapping[str, str], var: str, problems: list[str]) -> str | None:
    if var not in env:
        return None
    value = env[var].strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        problems.append(f"{var} must be an http:// or https:// URL")
        return None
    return value


def _generated_admin_token(name: str, env: Mapping[str, str] | None = None) -> str:
    """An admin token kept in a private file, so every worker and restart shares it.

    Under an exclusive lock: a valid token in the file is used; a missing, empty, whitespace or
    short one (a crash, a full disk) is replaced by a new token, written to a temporary file
    that is then renamed over the old one, so no reader ever sees half a token.
    """
    folder = _data_dir(env)
    path = folder / f"{name}.admin-token"
    with _locked(folder / f"{name}.admin-token.lock"):
        with contextlib.suppress(FileNotFoundError):
            existing = path.read_text(encoding="utf-8", errors="replace").strip()
            if len(existing) >= MIN_SECRET_CHARS:
                return existing
        token = "adm_" + secrets.token_urlsafe(24)
        _write_atomically(path, token)
    # Shown once on a terminal, never through the application log nor into a log file.
    if sys.stderr.isatty():
        print(f"shop: admin token: {token} (kept in {path}; set SHOP_ADMIN_TOKEN)", file=sys.stderr)
    else:
        print(
            f"shop: a development admin token is in {path} (or set SHOP_ADMIN_TOKEN)",
            file=sys.stderr,
        )
    return token


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to a private temporary file beside `path`, flush it to disk, then rename
    it over `path`: readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp makes it 0600
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    folder = Path(env.get("SHOP_DATA_DIR") or Path.cwd() / ".launchready")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sdk_overrides(service_name: str, **more: Any) -> dict[str, Any]:
    """The shop's SDK settings, each applied only where no `LAUNCHREADY_*` variable is set."""
    wanted: dict[str, Any] = {
        "service_name": service_name,
        "idempotent_routes": ("/checkout",),
        "cache_routes": {"/": 30, "/products": 30, "/products/{id}": 60},
        **perimeter_settings(),
        **more,
    }
    return {k: v for k, v in wanted.items() if f"LAUNCHREADY_{k.upper()}" not in os.environ}


def public_hosts(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The hosts the shop answers for when told its public host: `SHOP_PUBLIC_HOST` (the
    canonical one, e.g. www.shop.example), its apex or www twin, and `SHOP_ALLOWED_HOSTS`."""
    env = os.environ if env is None else env
    public = (env.get("SHOP_PUBLIC_HOST") or "").strip().lower().rstrip(".")
    if not public:
        return ()
    if public.startswith("[") or public.replace(".", "").isdigit():
        twin = ""  # an address has no www twin
    else:
        twin = public[4:] if public.startswith("www.") else "www." + public
    extra = [h.strip() for h in env.get("SHOP_ALLOWED_HOSTS", "").split(",") if h.strip()]
    return tuple(dict.fromkeys(h for h in (public, twin, *extra) if h))


def perimeter_settings(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The shop's perimeter, as a real shop turns it on.

    Security headers and the Content-Security-Policy are the SDK's defaults, always on. Told
    its public host (`SHOP_PUBLIC_HOST=www.shop.example`), the shop redirects plain HTTP to
    HTTPS and other hosts to that one, and answers no host but its own (400); the payment
    webhook is exempt, as the SDK's defaults say. Told its staff networks
    (`SHOP_ADMIN_ALLOW=10.0.0.0/8`), the admin routes answer only there (404 elsewhere).
    """
    env = os.environ if env is None else env
    settings: dict[str, Any] = {}
    hosts = public_hosts(env)
    if hosts:
        try:
            canonical = check_canonical_host(hosts[0])
            for host in hosts:
                check_host_entry(host)
        except ValueError as exc:
            raise ShopConfigError(f"SHOP_PUBLIC_HOST or SHOP_ALLOWED_HOSTS: {exc}") from None
        settings.update(canonical_host=canonical, https_redirect=True, allowed_hosts=hosts)
    allow = [n.strip() for n in env.get("SHOP_ADMIN_ALLOW", "").split(",") if n.strip()]
    if allow:
        settings.update(admin_paths=("/admin/*",), admin_allow=tuple(allow))
    return settings


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
    """Refuse (401) anything but the admin token, compared in constant time, and everything
    when the configured token is empty or short: an empty secret matches an empty header."""
    token = bearer(authorization)
    expected = config.admin_token.strip()
    if (
        not token
        or len(expected) < MIN_SECRET_CHARS
        or not hmac.compare_digest(token.encode(), expected.encode())
    ):
        raise Problem(401, "Admin token required")


class PaymentEvent(NamedTuple):
    """A verified payment webhook event."""

    id: str
    kind: str
    order_id: str
    charge_id: str
    amount_cents: int
    currency: str

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
        data = event["data"]
        texts = (event["id"], event["type"], data["order_id"], data["charge_id"])
        amount, currency = data["amount_cents"], data["currency"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise Problem(422, "Invalid webhook event") from None
    if not all(isinstance(v, str) and 0 < len(v) <= 128 for v in texts):
        raise Problem(422, "Invalid webhook event")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount < 2**63:
        raise Problem(422, "Invalid webhook event", "amount_cents must be a whole number.")
    if not isinstance(currency, str) or not 0 < len(currency) <= 8:
        raise Problem(422, "Invalid webhook event", "currency must be a currency code.")
    return PaymentEvent(*texts, amount, currency.lower())


def check_payment(event: PaymentEvent, total_cents: int, charge_id: str | None) -> None:
    """Refuse an event that does not describe the order's own charge: 409 while the checkout
    has not stored the charge id yet (the provider delivers it again), 422 when its charge id,
    amount or currency differ from the order's."""
    if charge_id is None:
        raise Problem(
            409, "Payment not recorded yet", "The order's charge is still being recorded; retry."
        )
    wrong = [
        field
        for field, ok in (
            ("charge_id", hmac.compare_digest(event.charge_id.encode(), charge_id.encode())),
            ("amount_cents", event.amount_cents == total_cents),
            ("currency", event.currency == SHOP_CURRENCY),
        )
        if not ok
    ]
    if wrong:
        log.warning("payment.mismatch", order_id=event.order_id, fields=wrong, event_id=event.id)
        raise Problem(
            422,
            "Webhook event does not match the order",
            f"Its {', '.join(wrong)} differ from the order's; the order is unchanged.",
        )


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
            "currency": SHOP_CURRENCY,
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
