"""The risk list: a terminal table, the JSON report and the Markdown a founder pastes into a
ticket. All three come from the same sorted findings.

Security stance: every string that reaches an output is scrubbed of the secret values the run
saw (replaced by their preview), and the reasons and notes, which can quote error messages,
also pass through the log redactor: a secret is never printed whole, even when it slipped into
a path or an error message.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

from launchready_sdk.cli.audit._model import SEVERITIES, SEVERITY_LABELS, Finding
from launchready_sdk.redaction import redact
from launchready_sdk.redaction.secrets import preview

_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


class Scrubber:
    """Replaces known secret values (longest first) by their preview; `message` also runs the
    log redactor, for text that came from elsewhere (error messages)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, preview(secret))
        return text

    def message(self, text: str) -> str:
        out = redact(self(text))
        return out if isinstance(out, str) else self(text)

    def finding(self, f: Finding) -> Finding:
        return Finding(f.id, f.severity, self(f.title), self(f.where), self(f.fix))


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Blockers first, then soon, then later; by id and place inside a severity."""
    return sorted(findings, key=lambda f: (_ORDER[f.severity], f.id, f.where, f.title))


def summary(findings: list[Finding]) -> str:
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    verdict = "FAIL: launch blockers found" if counts["blocker"] else "PASS: no launch blocker"
    return (
        f"{verdict} ({counts['blocker']} blocker{'s' if counts['blocker'] != 1 else ''}, "
        f"{counts['soon']} to fix soon, {counts['later']} can wait)"
    )


def render_table(
    findings: list[Finding], skipped: Mapping[str, list[str]], notes: Mapping[str, list[str]]
) -> str:
    """The terminal table: severity, id and what; then where and the fix under each row."""
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 140))
    lines: list[str] = []
    if findings:
        id_w = max(len(f.id) for f in findings)
        lines.append(f"{'SEVERITY':<8}  {'ID':<{id_w}}  WHAT")
        indent = " " * (10 + id_w + 2)
        for f in findings:
            head = f"{f.severity.upper():<8}  {f.id:<{id_w}}  "
            lines += textwrap.wrap(f.title, width, initial_indent=head, subsequent_indent=indent)
            lines += textwrap.wrap(
                f.where,
                width,
                initial_indent=indent + "where: ",
                subsequent_indent=indent + "       ",
            )
            lines += textwrap.wrap(
                f.fix,
                width,
                initial_indent=indent + "fix:   ",
                subsequent_indent=indent + "       ",
            )
    else:
        lines.append("No findings.")
    not_checked = [(part, reason) for part, reasons in skipped.items() for reason in reasons]
    if not_checked:
        lines += ["", "Not checked:"]
        for part, reason in not_checked:
            lines += textwrap.wrap(
                f"{part}: {reason}", width, initial_indent="  - ", subsequent_indent="    "
            )
    info = [(part, note) for part, items in notes.items() for note in items]
    if info:
        lines += ["", "Checked:"]
        for part, note in info:
            lines += textwrap.wrap(
                f"{part}: {note}", width, initial_indent="  - ", subsequent_indent="    "
            )
    lines += ["", summary(findings)]
    return "\n".join(lines) + "\n"


def json_report(findings: list[Finding]) -> dict[str, object]:
    blockers = sum(f.severity == "blocker" for f in findings)
    return {
        "findings": [f.as_dict() for f in findings],
        "blockers": blockers,
        "passed": blockers == 0,
    }


def _md(text: str) -> str:
    """Text safe inside Markdown: no HTML, links or emphasis from file names or records."""
    out = text.replace("\\", "\\\\")
    for c in "`*_[]<>|#":
        out = out.replace(c, "\\" + c)
    return out.replace("\n", " ")


def markdown_report(findings: list[Finding], skipped: Mapping[str, list[str]], target: str) -> str:
    """The risk list as Markdown: one checklist per severity, then what was not checked."""
    lines = [f"# Launch audit: {_md(target)}", "", summary(findings), ""]
    for severity in SEVERITIES:
        group = [f for f in findings if f.severity == severity]
        if not group:
            continue
        lines += [f"## {SEVERITY_LABELS[severity].capitalize()} ({len(group)})", ""]
        for f in group:
            lines.append(f"- [ ] **{_md(f.title)}** (`{f.id}`)")
            lines.append(f"  - Where: {_md(f.where)}")
            lines.append(f"  - Fix: {_md(f.fix)}")
        lines.append("")
    not_checked = [(part, reason) for part, reasons in skipped.items() for reason in reasons]
    if not_checked:
        lines += ["## Not checked", ""]
        lines += [f"- {_md(part)}: {_md(reason)}" for part, reason in not_checked]
        lines.append("")
    return "\n".join(lines)


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def write_json(path: Path, findings: list[Finding]) -> None:
    write(path, json.dumps(json_report(findings), indent=2, ensure_ascii=False) + "\n")
