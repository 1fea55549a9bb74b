"""The public surface: what `launchready_sdk` exports, and that importing it is cheap."""

from __future__ import annotations

import subprocess
import sys

import launchready_sdk


def test_all_is_pinned_and_sorted() -> None:
    """__all__ lists exactly the contract names, sorted."""
    assert launchready_sdk.__all__ == [
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
    assert sorted(launchready_sdk.__all__) == launchready_sdk.__all__


def test_every_exported_name_resolves() -> None:
    """Each name in __all__ can be imported from the package root."""
    for name in launchready_sdk.__all__:
        assert getattr(launchready_sdk, name) is not None


def test_redact_from_the_root_redacts_whatever_was_imported_first() -> None:
    """`from launchready_sdk import LaunchReady, redact` gives the function, whatever the log
    pipeline imported first."""
    code = (
        "from launchready_sdk import LaunchReady, redact\n"
        "import launchready_sdk.logs\n"
        "from launchready_sdk import redact as again\n"
        "print(redact({'password': 'hunter2'})['password'] != 'hunter2', "
        "'hunter2' not in str(again('password=hunter2')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_import_is_cheap() -> None:
    """`import launchready_sdk` pulls in no framework, Redis, OpenTelemetry or structlog."""
    code = (
        "import sys, launchready_sdk; "
        "heavy = [m for m in ('structlog', 'redis', 'opentelemetry', 'starlette', 'django', "
        "'httpx', 'limits') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
