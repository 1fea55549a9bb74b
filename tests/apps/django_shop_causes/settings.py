"""The bundled Django shop's settings, with the injected causes' URLs."""

from examples.django_shop.settings import *  # noqa: F403

ROOT_URLCONF = "tests.apps.django_shop_causes.urls"
