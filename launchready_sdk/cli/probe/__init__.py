"""`launchready probe`: uptime checks that alert within 2 minutes, once per incident.

    launchready probe https://shop.example/healthz https://shop.example/ \\
        --webhook https://hooks.example/launchready --state /var/lib/launchready/probe.json

Every target is checked every `--interval` seconds; a failure is re-checked `--retry-interval`
seconds after it ended; `--failures` failures in a row open an incident and send one `down`
alert; the first success afterwards (`--recoveries` in a row) closes it and sends one `up`
with the outage's duration, to the channels that got the `down`. One line per check goes
through the SDK's redacting logs (`--json`: JSON lines).

Exit status: with `--once`, 0 when every target is up and 1 otherwise; 2 for usage and
start-up errors (bad URL, duplicate target, unwritable or locked state); 130 when interrupted;
0 after SIGTERM.

Security stance: channel URLs are credentials. `--webhook`, `--slack-webhook` and
`--smtp-url` can instead come from `LAUNCHREADY_PROBE_WEBHOOK`,
`LAUNCHREADY_PROBE_SLACK_WEBHOOK` and `LAUNCHREADY_PROBE_SMTP_URL` (so they stay out of `ps`),
the webhook's signing secret only from `LAUNCHREADY_PROBE_WEBHOOK_SECRET`; none is logged or
echoed in an error, and httpx's own request lines (whole URLs) are kept below the log level.

Limits, candidly: no maintenance windows and no reminders while an incident stays open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import math
import os
import resource
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from launchready_sdk.cli.probe._channels import (
    SEND_DEADLINE_S,
    Channel,
    EmailChannel,
    SlackChannel,
    SmtpServer,
    WebhookChannel,
    check_channel_url,
    http_client,
)
from launchready_sdk.cli.probe._check import Checker, tls_verify
from launchready_sdk.cli.probe._runner import ProbeConfig, Prober, ping
from launchready_sdk.cli.probe._state import (
    DEFAULT_FAILURES,
    DEFAULT_INTERVAL_S,
    DEFAULT_RECOVERIES,
    DEFAULT_RETRY_INTERVAL_S,
    DEFAULT_TIMEOUT_S,
    DETECT_WITHIN_S,
    Outcome,
    Phase,
    Policy,
    Step,
    TargetState,
    adopted,
    advance,
    needs_canary,
)
from launchready_sdk.cli.probe._store import (
    STORE_TIMEOUT_S,
    FileStore,
    IncidentStore,
    RedisIncidentStore,
    StateError,
)
from launchready_sdk.cli.probe._targets import (
    ConfigError,
    Target,
    check_unique,
    check_url,
    from_urls,
    load_targets,
)
from launchready_sdk.errors import SettingsError
from launchready_sdk.logs import configure_logging, get_logger
from launchready_sdk.settings import Settings

__all__ = [
    "DETECT_WITHIN_S",
    "SEND_BUDGET_S",
    "Checker",
    "Outcome",
    "Phase",
    "Policy",
    "Step",
    "Target",
    "TargetState",
    "add_parser",
    "adopted",
    "advance",
    "needs_canary",
    "run",
]

EXIT_UP, EXIT_DOWN, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
# Opening the incident in the store, claiming the delivery, then the channels' own deadline.
SEND_BUDGET_S = SEND_DEADLINE_S + 2 * STORE_TIMEOUT_S
ENV_WEBHOOK = "LAUNCHREADY_PROBE_WEBHOOK"
ENV_SLACK = "LAUNCHREADY_PROBE_SLACK_WEBHOOK"
ENV_SMTP = "LAUNCHREADY_PROBE_SMTP_URL"
ENV_SECRET = "LAUNCHREADY_PROBE_WEBHOOK_SECRET"

_log = get_logger("launchready.probe")


def _number(kind: Callable[[str], float], low: float, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or value > 86400:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


def add_parser(commands: Any) -> None:
    """Register `probe` on the `launchready` sub-command parser."""
    seconds = _number(float, 0.001, "a number of seconds (fractions allowed) up to 86400")
    count = _number(int, 1, "a whole number from 1")
    p = commands.add_parser(
        "probe",
        help="uptime checks with alerts within 2 minutes, once per incident",
        description="Check URLs on a schedule; failures in a row open an incident and send "
        "one down alert, the first success sends one up alert. With --once: one round with "
        "its retries, exit 0 when every target is up, 1 otherwise.",
    )
    add = p.add_argument
    add("urls", nargs="*", metavar="URL", help="URLs to check (GET, any status below 400 is up)")
    add("--targets", type=Path, metavar="FILE", help="TOML file of targets (see the README)")
    add(
        "--interval",
        type=seconds,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help="seconds between checks of a target (default %(default)g)",
    )
    add(
        "--retry-interval",
        type=seconds,
        default=DEFAULT_RETRY_INTERVAL_S,
        metavar="S",
        help="seconds after a failed check before it is checked again (default %(default)g)",
    )
    add(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help="the whole check, redirects and body read included (default %(default)g)",
    )
    add(
        "--failures",
        type=count,
        default=DEFAULT_FAILURES,
        metavar="N",
        help="failed checks in a row that open an incident (default %(default)d)",
    )
    add(
        "--recoveries",
        type=count,
        default=DEFAULT_RECOVERIES,
        metavar="N",
        help="passing checks in a row that close it (default %(default)d)",
    )
    add(
        "--webhook",
        action="append",
        metavar="URL",
        help=f"POST JSON alerts here (repeatable; or ${ENV_WEBHOOK})",
    )
    add(
        "--slack-webhook",
        action="append",
        metavar="URL",
        help=f"Slack incoming webhook (repeatable; or ${ENV_SLACK})",
    )
    add(
        "--smtp-url",
        metavar="URL",
        help=f"smtp://user:password@host:587 or smtps://host:465 (or ${ENV_SMTP})",
    )
    add("--email-to", action="append", metavar="ADDRESS", help="email alerts here (repeatable)")
    add("--email-from", metavar="ADDRESS", help="sender (default launchready-probe@<hostname>)")
    add(
        "--state",
        type=Path,
        metavar="PATH",
        help="file keeping open incidents across restarts (default: Redis when "
        "LAUNCHREADY_REDIS_URL is set, else memory)",
    )
    add(
        "--canary",
        metavar="URL",
        help="a URL that should always answer; when it fails "
        "too, the probe's own network is down and nothing is paged",
    )
    add(
        "--heartbeat",
        metavar="URL",
        help="GET this URL every interval (a dead man's switch "
        "such as healthchecks.io); <URL>/fail when the probe stops on an error",
    )
    add("--ca-file", metavar="PEM", help="verify TLS against these CA certificates")
    add("--once", action="store_true", help="one round with its retries; exit 0 if all up")
    add("--json", action="store_true", help="JSON log lines (default: one readable line each)")
    p.set_defaults(handler=run)


def run(
    args: argparse.Namespace,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the command; returns the exit status."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    env = os.environ if environ is None else environ
    try:
        settings = Settings.from_env(env, log_format="json" if args.json else "console")
        config = _config(args, env)
        channels_spec = _channels_spec(args, env)
        store = _store(args, settings)
    except (ConfigError, SettingsError, StateError) as exc:
        print(f"launchready probe: error: {exc}", file=err)
        return EXIT_ERROR
    configure_logging(settings, stream=out)
    for name in ("httpx", "httpcore"):  # their request lines carry whole URLs (channel tokens)
        logging.getLogger(name).setLevel(logging.WARNING)
    _raise_file_limit(len(config.targets))
    _remember_missing_sniffio()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_main(args, config, channels_spec, store))
    except KeyboardInterrupt:
        print("launchready probe: interrupted", file=err)
        return EXIT_INTERRUPTED


def _config(args: argparse.Namespace, env: Mapping[str, str]) -> ProbeConfig:
    targets: list[Target] = from_urls(args.urls or [], env)
    if args.targets is not None:
        targets += load_targets(args.targets, env)
    if not targets:
        raise ConfigError("give at least one URL, or --targets FILE")
    check_unique(targets)
    canary = None
    if args.canary:
        url = check_url(args.canary, "--canary")
        canary = Target(name="canary", url=url, request_url=url)
    if args.heartbeat:
        check_channel_url(args.heartbeat, "--heartbeat")
    if args.ca_file and not os.path.isfile(args.ca_file):
        raise ConfigError(f"--ca-file {args.ca_file}: no such file")
    policy = Policy(
        interval_s=args.interval,
        retry_interval_s=args.retry_interval,
        timeout_s=args.timeout,
        failures=args.failures,
        recoveries=args.recoveries,
    )
    return ProbeConfig(tuple(targets), policy, canary, args.heartbeat, args.once)


def _channels_spec(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """The channels asked for, checked; built later inside the event loop."""
    webhooks = args.webhook or ([env[ENV_WEBHOOK]] if env.get(ENV_WEBHOOK) else [])
    slacks = args.slack_webhook or ([env[ENV_SLACK]] if env.get(ENV_SLACK) else [])
    for url in webhooks:
        check_channel_url(url, "--webhook")
    for url in slacks:
        check_channel_url(url, "--slack-webhook")
    if len(set(webhooks)) != len(webhooks) or len(set(slacks)) != len(slacks):
        raise ConfigError("the same webhook is given twice; each alert would go there twice")
    smtp_url = args.smtp_url or env.get(ENV_SMTP)
    recipients = args.email_to or []
    smtp = SmtpServer.parse(smtp_url) if smtp_url else None
    if smtp is not None and not recipients:
        raise ConfigError("--smtp-url needs at least one --email-to ADDRESS")
    if recipients and smtp is None:
        raise ConfigError(f"--email-to needs --smtp-url (or ${ENV_SMTP})")
    sender = args.email_from or f"launchready-probe@{socket.gethostname() or 'localhost'}"
    for address in [*recipients, sender]:
        if "@" not in address or any(c.isspace() or c in "<>,;" for c in address):
            raise ConfigError(f"{address!r} is not an email address (name@example.com)")
    return {
        "webhooks": webhooks,
        "slacks": slacks,
        "smtp": smtp,
        "recipients": recipients,
        "sender": sender,
        "secret": env.get(ENV_SECRET) or None,
    }


def _store(args: argparse.Namespace, settings: Settings) -> IncidentStore:
    if args.state is not None:
        store = FileStore(args.state)
        store.acquire()
        return store
    if settings.redis_url:
        from launchready_sdk.store import RedisStore

        redis = RedisStore(
            settings.redis_url,
            timeout_s=STORE_TIMEOUT_S,
            cooldown_s=settings.redis_cooldown_s,
            prefix=f"{settings.redis_prefix}:probe",
        )
        return RedisIncidentStore(redis, token=uuid.uuid4().hex)
    return FileStore(None)


async def _main(
    args: argparse.Namespace, config: ProbeConfig, spec: dict[str, Any], store: IncidentStore
) -> int:
    verify = tls_verify(args.ca_file)
    client = http_client(verify)
    checker = Checker(config.policy.timeout_s, verify=verify)
    channels = _build_channels(spec, client, verify)
    prober = Prober(config, checker=checker, store=store, channels=channels, client=client)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        if task is not None:
            task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop)
    _started(config, channels, store)
    status = EXIT_DOWN
    try:
        status = await prober.run()
    except asyncio.CancelledError:
        if not stopped:
            raise
        _log.info("probe.stopped", why="SIGTERM")
        status = EXIT_UP
    except Exception:
        _log.exception("probe.crashed")
        if config.heartbeat:
            await ping(client, config.heartbeat.rstrip("/") + "/fail")
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
        if config.once:
            _summary(prober)
            if config.heartbeat:
                suffix = "" if status == EXIT_UP else "/fail"
                await ping(client, config.heartbeat.rstrip("/") + suffix)
        await checker.aclose()
        await client.aclose()
        await store.aclose()
    return status


def _build_channels(spec: dict[str, Any], client: Any, verify: Any) -> list[Channel]:
    channels: list[Channel] = [WebhookChannel(u, client, spec["secret"]) for u in spec["webhooks"]]
    channels += [SlackChannel(u, client) for u in spec["slacks"]]
    if spec["smtp"] is not None:
        tls = verify if not isinstance(verify, bool) else None
        channels.append(EmailChannel(spec["smtp"], spec["sender"], spec["recipients"], tls))
    return channels


def _started(config: ProbeConfig, channels: list[Channel], store: IncidentStore) -> None:
    policy = config.policy
    worst = round(policy.worst_case_alert_s(SEND_BUDGET_S), 1)
    _log.info(
        "probe.started",
        targets=len(config.targets),
        interval_s=policy.interval_s,
        retry_interval_s=policy.retry_interval_s,
        timeout_s=policy.timeout_s,
        failures=policy.failures,
        recoveries=policy.recoveries,
        worst_case_alert_s=worst,
        channels=[c.label for c in channels],
        state=store.description,
        canary=config.canary.url if config.canary else None,
    )
    if worst > DETECT_WITHIN_S:
        _log.warning(
            "probe.detection_slow",
            worst_case_alert_s=worst,
            bound_s=DETECT_WITHIN_S,
            formula="interval + timeout + (failures - 1) * (retry_interval + timeout) + send",
            fix="lower --interval, --retry-interval or --timeout",
        )
    if not channels and not config.once:
        _log.warning("probe.no_channels", consequence="incidents are only logged")
    if store.description.startswith("memory") and not config.once:
        _log.warning(
            "probe.state_in_memory",
            consequence="a restart forgets open incidents",
            fix="--state PATH, or LAUNCHREADY_REDIS_URL",
        )


def _summary(prober: Prober) -> None:
    up = [w.target.name for w in prober.watches if w.state.phase.value == "up" and not w.blind]
    blind = [w.target.name for w in prober.watches if w.blind]
    down = [w.target.name for w in prober.watches if w.target.name not in up + blind]
    _log.info("probe.summary", up=up, down=down, blind=blind, passed=not down and not blind)


def _raise_file_limit(targets: int) -> None:
    """Each check holds a socket; let a thousand hanging targets have theirs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * targets + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def _remember_missing_sniffio() -> None:
    """httpcore runs `import sniffio` for every connection; without sniffio installed (recent
    anyio no longer needs it) each try is a fresh search of sys.path, a third of a check's
    CPU. Record the miss once, as Python does for a module set to None in sys.modules."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
