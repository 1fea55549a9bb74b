"""`launchready audit`: the quick launch audit as one risk list ranked by severity.

    launchready audit --repo . --domain shop.example --url https://shop.example \\
        --dkim-selector s1 --webhook-path /webhooks/stripe --json audit.json --markdown audit.md

Parts and what each needs: secrets and committed `.env` files (`--repo`), the environment
inventory (`--repo`), DNS and e-mail authentication (`--domain`), redirects, webhooks, TLS,
security headers, CORS and slow routes (`--url`). A part whose input is missing is listed as not
checked, with the reason. Each part runs in its own thread with its own time budget; one that
fails or runs out of time is reported as not checked, and the others still run.

Exit status: 1 when a finding is a launch blocker, 0 otherwise, 2 on usage errors, 130 when
interrupted. The table goes to stdout; `--json` and `--markdown` write the same list.

Security stance: secrets are never sent anywhere nor verified against a provider, and never
printed whole in any output. The network checks send a few GET/HEAD requests and, per
`--webhook-path`, one POST of `{}` without a signature (a webhook answers it with a 4xx).

Limits, candidly: the checks read what the site does from this machine, through this
resolver; a CDN that answers differently elsewhere is not seen. Third-party imports (dnspython,
checkdmarc, cryptography) happen inside the parts, so `launchready --help` stays fast; they come
with the `audit` extra.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launchready_sdk.cli.audit._model import FINDING_IDS, Finding, Options, PartResult

__all__ = ["FINDING_IDS", "add_parser", "run"]

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class _Part:
    name: str
    needs: str  # the option that turns it on
    budget_s: float
    module: str


# Budgets are per part; the network parts stop far earlier, each operation having --timeout.
_PARTS = (
    _Part("secrets", "repo", 180.0, "_secrets"),
    _Part("environment", "repo", 60.0, "_env"),
    _Part("dns", "domains", 30.0, "_dns"),
    _Part("email", "domains", 45.0, "_email"),
    _Part("redirects", "url", 45.0, "_redirects"),
    _Part("tls", "url", 45.0, "_tls"),
    _Part("headers", "url", 30.0, "_headers"),
    _Part("slow routes", "url", 20.0, "_slow"),
)
_MISSING = {"repo": "no --repo given", "domains": "no --domain given", "url": "no --url given"}


class UsageError(Exception):
    """A bad command line: the message says what is wrong."""


def _resolver(text: str) -> tuple[str, int]:
    """`IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address."""
    host, port = text.strip(), 53
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        host = inner
        if rest:
            if not rest.startswith(":"):
                raise argparse.ArgumentTypeError(f"{text!r} is not IP[:PORT]")
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, _, raw = host.partition(":")
        port = _port(raw, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IP address (optionally with :PORT), e.g. 127.0.0.1:5353"
        ) from None
    return host, port


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 1 to 65535")
    return int(raw)


def _domain(text: str) -> str:
    name = text.strip().rstrip(".").lower()
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a domain name") from None
    labels = ascii_name.split(".")
    if len(labels) < 2 or not all(
        0 < len(label) < 64 and label.replace("-", "").isalnum() for label in labels
    ):
        raise argparse.ArgumentTypeError(f"{text!r} is not a domain name, e.g. shop.example")
    return ascii_name


def _url(text: str) -> str:
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http(s) URL, e.g. https://shop.example"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} has a bad port") from None
    return text.strip()


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 120:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 120")
    return value


def _path_arg(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a path starting with /")
    return text


def add_parser(commands: Any) -> None:
    """Register `audit` on the `launchready` sub-command parser."""
    p = commands.add_parser(
        "audit",
        help="the launch audit: secrets, env, DNS, redirects, TLS, e-mail, headers, slow routes",
        description="Audit a repository, a domain and a running site for launch risks, ranked "
        "blocker, soon, later. Each part runs when its input is given. Exits 1 when a finding "
        "is a launch blocker, 0 otherwise, 2 on usage errors.",
    )
    add = p.add_argument
    add(
        "--url",
        type=_url,
        metavar="URL",
        help="the site (redirects, TLS, headers, CORS, "
        "webhooks, slow routes from the SDK's /metrics)",
    )
    add(
        "--domain",
        type=_domain,
        action="append",
        default=[],
        metavar="NAME",
        help="a domain (DNS, SPF, DMARC, DKIM, MX); repeatable",
    )
    add(
        "--repo",
        type=Path,
        metavar="PATH",
        help="a repository (secrets, history, .env files, environment inventory)",
    )
    add(
        "--dkim-selector",
        action="append",
        default=[],
        metavar="S",
        help="a DKIM selector the domain signs with (they cannot be discovered); repeatable",
    )
    add(
        "--resolver",
        type=_resolver,
        metavar="IP[:PORT]",
        help="DNS server for every lookup (default: the system's)",
    )
    add(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="trust these CA certificates instead of the system's",
    )
    add(
        "--webhook-path",
        type=_path_arg,
        action="append",
        default=[],
        metavar="PATH",
        help="a webhook route whose POSTs must not be redirected; repeatable",
    )
    add(
        "--env-example",
        type=Path,
        metavar="FILE",
        help="the documented variables (default: .env.example or its kin at the repository's top)",
    )
    add(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="accepted secret findings (default: "
        ".launchready-audit-baseline.json in the repository, when present)",
    )
    add(
        "--write-baseline",
        type=Path,
        metavar="FILE",
        help="accept every secret finding of this run: write their fingerprints to FILE",
    )
    add(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="per network operation (default %(default)g)",
    )
    add("--json", type=Path, metavar="PATH", help="write the JSON report here")
    add("--markdown", type=Path, metavar="PATH", help="write the Markdown risk list here")
    p.set_defaults(handler=run)


def _options(args: argparse.Namespace) -> Options:
    if not (args.url or args.domain or args.repo):
        raise UsageError("nothing to audit: give --repo PATH, --domain NAME or --url URL")
    if args.dkim_selector and not args.domain:
        raise UsageError("--dkim-selector needs --domain (selectors are looked up under it)")
    if args.webhook_path and not args.url:
        raise UsageError("--webhook-path needs --url")
    if args.repo is not None and not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: not a directory")
    for name in ("ca_file", "env_example", "baseline"):
        value = getattr(args, name)
        if value is not None and not value.is_file():
            raise UsageError(f"--{name.replace('_', '-')} {value}: no such file")
    for name in ("json", "markdown", "write_baseline"):
        value = getattr(args, name)
        if value is not None and not value.resolve().parent.is_dir():
            raise UsageError(f"--{name.replace('_', '-')} {value}: its directory does not exist")
    if args.ca_file is not None:
        import ssl

        try:
            ssl.create_default_context(cafile=str(args.ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(f"--ca-file {args.ca_file}: not a PEM CA bundle ({exc})") from None
    for selector in args.dkim_selector:
        if not selector or not all(
            part.replace("-", "").replace("_", "").isalnum() for part in selector.split(".")
        ):
            raise UsageError(f"--dkim-selector {selector!r}: not a DNS label")
    return Options(
        url=args.url,
        domains=tuple(dict.fromkeys(args.domain)),
        repo=args.repo,
        dkim_selectors=tuple(dict.fromkeys(args.dkim_selector)),
        resolver=args.resolver,
        ca_file=args.ca_file,
        webhook_paths=tuple(dict.fromkeys(args.webhook_path)),
        env_example=args.env_example,
        baseline=args.baseline,
        write_baseline=args.write_baseline,
        timeout_s=args.timeout,
    )


class _Runner(threading.Thread):
    """One part in a daemon thread: a part stuck past its budget cannot hold the exit."""

    def __init__(
        self,
        part: _Part,
        func: Callable[[Options, float], PartResult],
        options: Options,
        deadline: float,
    ) -> None:
        super().__init__(name=f"audit-{part.name}", daemon=True)
        self.part, self.func, self.options, self.deadline = part, func, options, deadline
        self.result: PartResult | None = None
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.result = self.func(self.options, self.deadline)
        except Exception as exc:  # one part failing never stops the others
            self.error = f"failed: {type(exc).__name__}: {exc}"


def _load(part: _Part) -> Callable[[Options, float], PartResult]:
    import importlib

    module = importlib.import_module(f"launchready_sdk.cli.audit.{part.module}")
    func: Callable[[Options, float], PartResult] = module.run
    return func


def audit(
    options: Options,
) -> tuple[list[Finding], dict[str, list[str]], dict[str, list[str]], set[str]]:
    """Run every part whose input is given; (findings, skipped, notes, secrets seen) by part."""
    skipped: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}
    runners: list[_Runner] = []
    start = time.monotonic()
    for part in _PARTS:
        if not getattr(options, part.needs):
            skipped.setdefault(part.name, []).append(_MISSING[part.needs])
            continue
        try:
            func = _load(part)
        except ImportError as exc:
            skipped.setdefault(part.name, []).append(
                f"needs {exc.name or 'a package'}: pip install 'launchready-sdk[audit]'"
            )
            continue
        runner = _Runner(part, func, options, start + part.budget_s)
        runner.start()
        runners.append(runner)
    findings: list[Finding] = []
    secrets: set[str] = set()
    for runner in runners:
        runner.join(max(0.0, start + runner.part.budget_s + 2.0 - time.monotonic()))
        name = runner.part.name
        if runner.is_alive():
            skipped.setdefault(name, []).append(
                f"did not finish within its {runner.part.budget_s:g} s budget"
            )
            continue
        if runner.error is not None:
            skipped.setdefault(name, []).append(runner.error)
            continue
        result = runner.result or PartResult()
        findings += result.findings
        secrets |= result.secrets
        if result.skipped:
            skipped.setdefault(name, []).extend(result.skipped)
        if result.notes:
            notes.setdefault(name, []).extend(result.notes)
    return findings, skipped, notes, secrets


def run(args: argparse.Namespace) -> int:
    """The `audit` handler: parse, run the parts, print and write the reports; exit status."""
    from launchready_sdk.cli.audit import _report

    try:
        options = _options(args)
    except UsageError as exc:
        print(f"launchready audit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        found, skipped, notes, secrets = audit(options)
    except KeyboardInterrupt:
        print("launchready audit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    scrub = _report.Scrubber(secrets)
    findings = _report.sort_findings(scrub.finding(f) for f in found)
    skipped = {part: [scrub.message(r) for r in reasons] for part, reasons in skipped.items()}
    notes = {part: [scrub.message(n) for n in items] for part, items in notes.items()}
    sys.stdout.write(_report.render_table(findings, skipped, notes))
    target = " ".join(
        filter(None, [options.url, *options.domains, str(options.repo) if options.repo else ""])
    )
    try:
        if args.json is not None:
            _report.write_json(args.json, findings)
        if args.markdown is not None:
            _report.write(args.markdown, _report.markdown_report(findings, skipped, target))
    except OSError as exc:
        print(f"launchready audit: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_FAIL if any(f.severity == "blocker" for f in findings) else EXIT_PASS
