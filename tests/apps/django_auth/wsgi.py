"""The auth project under WSGI, through `launchready_django_wsgi()` (served with `--preload`:
the master migrates once, then forks the workers)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_auth.settings")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

call_command("migrate", verbosity=0)
if not User.objects.filter(username="demo").exists():
    User.objects.create_user("demo", "demo@example.com", "right-password")
connections.close_all()  # the workers open their own

from launchready_sdk.django import launchready_django_wsgi  # noqa: E402

application = launchready_django_wsgi()
