"""Django settings of the bundled shop. Every secret comes from the environment (see
`examples/README.md`); the development defaults are for a laptop and the bench only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import django
from django.core.exceptions import ImproperlyConfigured

from examples.shopcore import ShopConfig, public_hosts, sdk_overrides
from launchready_sdk.ratelimit import DEFAULT_RATE_LIMITS

SHOP = ShopConfig.from_env("django_shop")


def database_settings(url: str) -> dict[str, Any]:
    """`DATABASES["default"]` for a `sqlite:///path` or `postgresql://user@host:port/name` URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("//") else parts.path.lstrip("/")
        options: dict[str, Any] = {"timeout": 30}
        if django.VERSION >= (5, 1):
            # Writers take the lock when their transaction begins, so two of them never
            # deadlock upgrading a read lock; the busy timeout queues them instead.
            options["transaction_mode"] = "IMMEDIATE"
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path or ":memory:",
            "OPTIONS": options,
        }
    if scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
            "CONN_MAX_AGE": 0,  # under ASGI each request's sync code runs in a thread of its own
        }
    raise ImproperlyConfigured("DATABASE_URL must be a sqlite:/// or postgresql:// URL")


BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "django:" + SHOP.secret_key
DEBUG = os.environ.get("SHOP_DEBUG") == "1"
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("SHOP_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
] + list(public_hosts())  # SHOP_PUBLIC_HOST and its twin (the SDK checks hosts first)
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "examples.django_shop.shop",
]
# What the admin needs, and no more: each classic middleware costs a thread hop under ASGI.
# launchready_django() puts its own middleware first.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "examples.django_shop.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {"default": database_settings(SHOP.database_url)}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"  # 32-bit ids, as in the FastAPI shop
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True

# The SDK: the shop's own choices, each applied only where no LAUNCHREADY_* variable is set.
LAUNCHREADY = sdk_overrides(
    "django-shop",
    # The staff login of the Django admin is a password form too.
    rate_limits={**DEFAULT_RATE_LIMITS, "POST /admin/login": "10/minute;100/hour"},
)
