"""The Django test project served by uvicorn, through `launchready_django()`."""

from __future__ import annotations

import os
import threading

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.apps.django_proj.settings"

import django

django.setup()


def _prepare() -> None:
    from django.core.management import call_command

    from tests.apps.django_proj.models import Author, Book

    call_command("migrate", run_syncdb=True, verbosity=0)
    if not Book.objects.exists():
        for i in range(30):
            author = Author.objects.create(name=f"author {i}")
            Book.objects.create(title=f"secret-title-{i}", author=author)


# uvicorn imports the app inside its event loop, where Django refuses database work.
_thread = threading.Thread(target=_prepare)
_thread.start()
_thread.join()

from launchready_sdk.django import launchready_django  # noqa: E402

application = launchready_django()
