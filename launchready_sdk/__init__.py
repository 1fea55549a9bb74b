"""launchready-sdk: make a FastAPI, Starlette or Django app ready for public traffic in one line.

    from launchready_sdk import LaunchReady
    app = LaunchReady().wrap(app)

Names are imported lazily, so `import launchready_sdk` costs almost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launchready_sdk.app import LaunchReady, LaunchReadyMiddleware
    from launchready_sdk.cache import cached
    from launchready_sdk.context import get_request_id
    from launchready_sdk.errors import LaunchReadyError, SettingsError, StoreUnavailable
    from launchready_sdk.logs import get_logger
    from launchready_sdk.outbound import resilient
    from launchready_sdk.redaction import redact
    from launchready_sdk.settings import Settings

__all__ = [
    "LaunchReady",
    "LaunchReadyError",
    "LaunchReadyMiddleware",
    "Settings",
    "SettingsError",
    "StoreUnavailable",
    "cached",
    "get_logger",
    "get_request_id",
    "redact",
    "resilient",
]

_WHERE = {
    "LaunchReady": "app",
    "LaunchReadyMiddleware": "app",
    "LaunchReadyError": "errors",
    "SettingsError": "errors",
    "StoreUnavailable": "errors",
    "Settings": "settings",
    "cached": "cache",
    "get_logger": "logs",
    "get_request_id": "context",
    "redact": "redaction",
    "resilient": "outbound",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'launchready_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"launchready_sdk.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
