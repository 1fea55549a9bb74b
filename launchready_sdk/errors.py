"""The SDK's exceptions.

LaunchReadyError
├── SettingsError        a setting is missing or malformed (raised at start-up)
└── StoreUnavailable     Redis is down or its breaker is open (callers fail open or closed)
"""

from __future__ import annotations


class LaunchReadyError(Exception):
    """Base class of every error the SDK raises."""


class SettingsError(LaunchReadyError, ValueError):
    """A setting is invalid. `name` is the field or environment variable at fault."""

    def __init__(self, name: str, problem: str, example: str | None = None) -> None:
        self.name = name
        self.problem = problem
        self.example = example
        message = f"{name}: {problem}"
        if example:
            message += f" (for example {example})"
        super().__init__(message)


class StoreUnavailable(LaunchReadyError):
    """Redis did not answer, or its breaker is open; the caller applies its failure policy."""
