"""Settings from the `LAUNCHREADY` dict of Django's settings."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping

from launchready_sdk.errors import SettingsError
from launchready_sdk.settings import Settings

SETTING_NAME = "LAUNCHREADY"


def settings_from_django(environ: Mapping[str, str] | None = None) -> Settings:
    """`Settings` from the `LAUNCHREADY` dict of Django's settings, the environment filling in.

    A dict key wins over its `LAUNCHREADY_*` variable. Errors name `LAUNCHREADY["field"]` when
    the dict holds the bad value, the variable when the environment does.
    """
    from django.conf import settings as django_settings

    raw = getattr(django_settings, SETTING_NAME, None)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SettingsError(
            SETTING_NAME,
            f"expected a dict of launchready Settings fields, got {type(raw).__name__}",
            '{"service_name": "shop"}',
        )
    known = [field.name for field in dataclasses.fields(Settings)]
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SettingsError(_dict_key(key), f"not a launchready setting{hint}")
    try:
        return Settings.from_env(environ, **raw)
    except SettingsError as exc:
        if exc.name in raw:
            raise SettingsError(_dict_key(exc.name), exc.problem, exc.example) from None
        raise


def _dict_key(key: object) -> str:
    return f"{SETTING_NAME}[{key!r}]".replace("'", '"')
