"""The scale-out test shop as served by uvicorn or gunicorn (LAUNCHREADY_* variables)."""

from __future__ import annotations

from tests.apps.scale_app import build

lr, app = build()
