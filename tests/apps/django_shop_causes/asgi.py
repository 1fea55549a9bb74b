"""The Django shop with injected causes (`tests.apps.django_shop_causes.asgi:application`)."""

from __future__ import annotations

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.apps.django_shop_causes.settings"

import django

django.setup()

from examples.django_shop.startup import prepare  # noqa: E402
from launchready_sdk.django import launchready_django  # noqa: E402

prepare()
application = launchready_django()
