"""Findings, severities, the run's options and what a part returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final, Literal

Severity = Literal["blocker", "soon", "later"]
SEVERITIES: Final[tuple[Severity, ...]] = ("blocker", "soon", "later")
SEVERITY_LABELS: Final[dict[Severity, str]] = {
    "blocker": "launch blocker",
    "soon": "should fix soon",
    "later": "can wait",
}
# The stable finding ids (the public contract); every Finding's id is one of them.
FINDING_IDS: Final = (
    "secret-in-tree",
    "secret-in-history",
    "env-file-committed",
    "env-undocumented",
    "dns-unresolved",
    "dns-inconsistent",
    "https-redirect-missing",
    "redirect-chain",
    "redirect-temporary",
    "webhook-redirected",
    "tls-invalid",
    "tls-expiring",
    "hsts-missing",
    "security-headers",
    "cors-wildcard-credentials",
    "spf-missing",
    "spf-invalid",
    "dmarc-missing",
    "dmarc-none",
    "dkim-missing",
    "slow-route",
)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One risk: what (`title`), where, and the fix; `id` is one of FINDING_IDS."""

    id: str
    severity: Severity
    title: str
    where: str
    fix: str

    def __post_init__(self) -> None:
        if self.id not in FINDING_IDS:
            raise ValueError(f"unknown finding id {self.id!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "where": self.where,
            "fix": self.fix,
        }


@dataclasses.dataclass
class PartResult:
    """What one part of the audit found, what it could not check and why, and the secret
    values it saw (kept only to scrub them from every output)."""

    findings: list[Finding] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    secrets: set[str] = dataclasses.field(default_factory=set)

    def add(self, id: str, severity: Severity, title: str, where: str, fix: str) -> None:
        self.findings.append(Finding(id, severity, title, where, fix))


@dataclasses.dataclass(frozen=True)
class Options:
    """The parsed command line."""

    url: str | None = None
    domains: tuple[str, ...] = ()
    repo: Path | None = None
    dkim_selectors: tuple[str, ...] = ()
    resolver: tuple[str, int] | None = None
    ca_file: Path | None = None
    webhook_paths: tuple[str, ...] = ()
    env_example: Path | None = None
    baseline: Path | None = None
    write_baseline: Path | None = None
    timeout_s: float = 5.0
    metrics_path: str = "/metrics"
