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

from examples.django_shop.startup import prepare  # noqa: E402
from launchready_sdk import get_logger  # noqa: E402
from launchready_sdk.django import launchready_django  # noqa: E402

_prepared = prepare()
application = launchready_django()

_log = get_logger("shop")
if _prepared.seeded:
    _log.info("shop.seeded")
if _prepared.fake_providers:
    _log.info("shop.fake_providers", url=_prepared.payment_url)
if django.conf.settings.SHOP.using_dev_secrets or _prepared.fake_providers:
    _log.warning(
        "shop.dev_mode",
        hint="development mode: public secrets or the fake payment provider; "
        "set SHOP_SECRET_KEY, SHOP_WEBHOOK_SECRET, SHOP_DEMO_PASSWORD and PAYMENT_URL",
    )
