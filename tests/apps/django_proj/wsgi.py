"""The Django test project under WSGI (gunicorn), through `launchready_django_wsgi()`."""

from __future__ import annotations

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.apps.django_proj.settings"

import django

django.setup()

from django.core.management import call_command  # noqa: E402

call_command("migrate", run_syncdb=True, verbosity=0)

from launchready_sdk.django import launchready_django_wsgi  # noqa: E402

application = launchready_django_wsgi()
