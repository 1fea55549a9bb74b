"""The `launchready` command. `main(argv)` returns the exit status.

    launchready bench --app examples.fastapi_shop.app:app
    launchready bench --url http://127.0.0.1:8000 --scenario flows.toml --json report.json
    launchready smoke --app examples.fastapi_shop.app:app

Sub-commands import what they need when they run, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The `launchready` parser with its sub-commands."""
    from launchready_sdk.cli import audit, bench, probe, smoke

    parser = argparse.ArgumentParser(
        prog="launchready", description="Launch-readiness checks for an ASGI app."
    )
    parser.add_argument("--version", action="version", version=f"launchready {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    bench.add_parser(commands)
    audit.add_parser(commands)
    probe.add_parser(commands)
    smoke.add_parser(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("launchready-sdk")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: the process arguments) and run the command; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    status: int = handler(args)
    return status
