"""The auth project under ASGI, through `launchready_django()`."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_auth.settings")

import django

django.setup()


def _prepare() -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not User.objects.filter(username="demo").exists():
        User.objects.create_user("demo", "demo@example.com", "right-password")


_thread = threading.Thread(target=_prepare)  # migrations outside uvicorn's event loop
_thread.start()
_thread.join()

from launchready_sdk.django import launchready_django  # noqa: E402

application = launchready_django()
