"""Settings of the small Django project the integration tests serve (tests/test_django.py)."""

from __future__ import annotations

import json
import os

SECRET_KEY = "django-proj-test-key-not-secret"
DEBUG = os.environ.get("DJANGO_PROJ_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["django.contrib.contenttypes", "tests.apps.django_proj"]
MIDDLEWARE: list[str] = []  # launchready_django() puts its middleware in
ROOT_URLCONF = "tests.apps.django_proj.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ADMINS = [("Ops", "ops@example.com")]

_postgres = os.environ.get("DJANGO_PROJ_PG_NAME")
if _postgres:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _postgres,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DJANGO_PROJ_DB", ":memory:"),
            "OPTIONS": {"timeout": 30},
        }
    }

LAUNCHREADY = json.loads(os.environ.get("DJANGO_PROJ_LAUNCHREADY") or "{}")

if os.environ.get("DJANGO_PROJ_SECURITY") == "1":  # the perimeter's coexistence test
    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]
    SECURE_HSTS_SECONDS = 600
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REFERRER_POLICY = "same-origin"
    SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "SAMEORIGIN"
