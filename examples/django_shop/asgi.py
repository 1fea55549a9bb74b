"""The Django shop's ASGI application: `uvicorn examples.django_shop.asgi:application`.

Importing it migrates and seeds the database on first start, starts the fake providers when
`PAYMENT_URL` is unset, and wraps Django in the SDK configured from `settings.LAUNCHREADY`.
"""

from __future__ import annotations

import os

# The shop's own settings, whatever another project left in the environment.
os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_shop.settings"

import django

django.setup()

from examples.django_shop.startup import prepare, report  # noqa: E402
from launchready_sdk.django import launchready_django  # noqa: E402

_prepared = prepare()
application = launchready_django()
report(_prepared)
