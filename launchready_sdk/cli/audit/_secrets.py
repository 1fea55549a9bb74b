"""Secrets in the working tree and in the whole git history, and committed `.env` files.

The working tree is every tracked file and every untracked file git does not ignore (a
directory walk when the path is not a git repository). The history is `git log -p --all`: the
lines each commit added, on every branch, tag and stash, so a secret committed then deleted is
found with the commit that added it. Each secret is reported once (by rule and value), at its
first place; the value itself only as `preview()`.

Security stance: nothing leaves the machine and nothing is verified against a provider. A secret
in the history is a launch blocker whatever HEAD says: anyone with a clone has it, so the fix is
to rotate it. Accepted findings live in a baseline file of fingerprints (a hash of rule, path
and a hash of the value), never of the values themselves; a line holding `launchready:allow`
(or `gitleaks:allow`, or `pragma: allowlist secret`) is skipped.

Limits, candidly:

- Binary files and files over 2 MB in the tree, binary diffs and the part of one commit's
  additions to one file past 2 MB are not read; merge commits' own resolutions are not diffed.
- A shallow clone has no history before its graft: the run says so.
- The fingerprint holds a 64-bit truncated hash of the value, so a weak password in a baseline
  can be brute-forced from it; strong credentials cannot.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from launchready_sdk.cli.audit import _git
from launchready_sdk.cli.audit._model import Options, PartResult
from launchready_sdk.redaction.secrets import find_secrets, preview

MAX_FILE_BYTES: Final = 2_000_000
BASELINE_NAME: Final = ".launchready-audit-baseline.json"
_ALLOW_RE: Final = re.compile(
    r"launchready:\s?allow|gitleaks:allow|pragma:\s?allowlist secret", re.IGNORECASE
)
SKIP_DIRS: Final = frozenset(
    (
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        ".venv",
        "venv",
        "env",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        "dist",
        "build",
        "site-packages",
    )
)
_ENV_SAFE_SUFFIXES: Final = frozenset(
    ["example", "sample", "template", "dist", "defaults", "default", "tpl", "schema"]
)
RULE_LABELS: Final = {
    "aws_access_key": "AWS access key ID",
    "stripe_key": "Stripe secret key",
    "stripe_webhook_secret": "Stripe webhook signing secret",
    "stripe_client_secret": "Stripe client secret",
    "github_token": "GitHub token",
    "npm_token": "npm token",
    "gitlab_token": "GitLab token",
    "slack_token": "Slack token",
    "slack_webhook": "Slack webhook URL",
    "anthropic_key": "Anthropic API key",
    "openai_key": "OpenAI API key",
    "pypi_token": "PyPI token",
    "google_api_key": "Google API key",
    "sendgrid_key": "SendGrid API key",
    "twilio_key": "Twilio API key",
    "private_key": "private key",
    "jwt": "JSON Web Token",
    "bearer": "Bearer credential",
    "basic_auth": "Basic-auth credential",
}


def label(rule: str) -> str:
    """A rule's name for people: provider formats by name, assignments by key category."""
    return RULE_LABELS.get(rule, f"hard-coded {rule.replace('_', ' ')}")


def fingerprint(rule: str, path: str, value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return hashlib.sha256(f"{rule}:{path}:{digest}".encode()).hexdigest()[:16]


def is_env_file(path: str) -> bool:
    """`.env`, `.env.production`, `prod.env`, `.envrc`; not `.env.example` and its kin."""
    name = path.rsplit("/", 1)[-1]
    if name in (".env", ".envrc"):
        return True
    if name.startswith(".env."):
        return not _ENV_SAFE_SUFFIXES.intersection(name[5:].lower().split("."))
    if name.endswith(".env") and len(name) > 4:
        return not _ENV_SAFE_SUFFIXES.intersection(name[:-4].lower().split("."))
    return False


@dataclass
class Place:
    path: str
    line: int
    commit: str = ""
    when: int = 0


@dataclass
class Sighting:
    """One secret (rule and value) and where it was seen."""

    rule: str
    value: str
    first: Place
    count: int = 1


def _lines_of(text: str) -> list[int]:
    starts = [0]
    for i, c in enumerate(text):
        if c == "\n":
            starts.append(i + 1)
    return starts


def scan_text(text: str) -> Iterator[tuple[str, str, int]]:
    """(rule, value, 0-based line index) of each secret in `text` not on an allowed line."""
    starts: list[int] | None = None
    for m in find_secrets(text):
        if starts is None:
            starts = _lines_of(text)
        index = bisect.bisect_right(starts, m.start) - 1
        end = text.find("\n", starts[index])
        if _ALLOW_RE.search(text[starts[index] : end if end >= 0 else len(text)]):
            continue
        yield m.rule, text[m.start : m.end], index


def _walk(root: Path) -> Iterator[bytes]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        rel = os.path.relpath(dirpath, root)
        for name in filenames:
            yield os.fsencode(name if rel == "." else os.path.join(rel, name))


class SecretScan:
    """One run over a repository: tree, history, `.env` files, baseline."""

    def __init__(self, root: Path, options: Options, deadline: float, result: PartResult) -> None:
        self.root = root
        self.options = options
        self.deadline = deadline
        self.result = result
        self.tree: dict[tuple[str, str], Sighting] = {}
        self.past: dict[tuple[str, str], Sighting] = {}
        self.accepted = self._load_baseline()
        self.written: list[dict[str, str]] = []

    # -- baseline ---------------------------------------------------------------------------

    def _baseline_path(self) -> Path | None:
        if self.options.baseline is not None:
            return self.options.baseline
        default = self.root / BASELINE_NAME
        return default if default.is_file() else None

    def _load_baseline(self) -> set[str]:
        path = self._baseline_path()
        if path is None:
            return set()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {str(item["fingerprint"]) for item in data["accepted"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.result.skipped.append(f"baseline {path} unreadable ({exc}); nothing accepted")
            return set()

    def _accepted(self, fp: str, rule: str, path: str) -> bool:
        self.written.append({"fingerprint": fp, "rule": rule, "path": path})
        return fp in self.accepted or self.options.write_baseline is not None

    def write_baseline(self) -> None:
        target = self.options.write_baseline
        if target is None:
            return
        unique = {item["fingerprint"]: item for item in self.written}
        doc = {"version": 1, "accepted": sorted(unique.values(), key=lambda i: i["path"])}
        target.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        self.result.notes.append(f"wrote {len(unique)} accepted fingerprints to {target}")

    # -- scanning ---------------------------------------------------------------------------

    def _note(
        self,
        table: dict[tuple[str, str], Sighting],
        rule: str,
        value: str,
        place: Place,
        oldest_wins: bool = False,
    ) -> None:
        key = (rule, value)
        seen = table.get(key)
        if seen is None:
            table[key] = Sighting(rule, value, place)
            return
        seen.count += 1
        if oldest_wins:
            seen.first = place  # history comes newest first

    def scan_tree(self, paths: Iterable[bytes]) -> None:
        skipped_big = skipped_binary = 0
        for raw in paths:
            if time.monotonic() > self.deadline:
                self.result.skipped.append("working tree: stopped at the time budget")
                break
            full = self.root / os.fsdecode(raw)
            try:
                if not full.is_file() or full.is_symlink():
                    continue
                if full.stat().st_size > MAX_FILE_BYTES:
                    skipped_big += 1
                    continue
                data = full.read_bytes()
            except OSError:
                continue
            if b"\0" in data[:8192]:
                skipped_binary += 1
                continue
            path = _git.display_path(raw)
            for rule, value, index in scan_text(data.decode("utf-8", "replace")):
                self._note(self.tree, rule, value, Place(path, index + 1))
        if skipped_big:
            self.result.notes.append(f"{skipped_big} file{_s(skipped_big)} over 2 MB not read")
        if skipped_binary:
            self.result.notes.append(f"{skipped_binary} binary file{_s(skipped_binary)} not read")

    def scan_history(self) -> None:
        stats = _git.HistoryStats()
        for added in _git.history(self.root, self.deadline, stats):
            text = "\n".join(line for _, line in added.lines)
            path = _git.display_path(added.path)
            for rule, value, index in scan_text(text):
                place = Place(path, added.lines[index][0], added.commit, added.when)
                self._note(self.past, rule, value, place, oldest_wins=True)
        self.result.notes.append(
            f"history: {stats.commits} commits, {stats.files} file changes read"
            + (f", {stats.binary} binary diffs skipped" if stats.binary else "")
            + (f", {stats.truncated} oversized additions cut at 2 MB" if stats.truncated else "")
        )
        if stats.stopped:
            self.result.skipped.append(
                f"history: stopped at the time budget after {stats.commits} commits; "
                "older commits were not scanned"
            )

    # -- findings ---------------------------------------------------------------------------

    def report(self) -> None:
        for (rule, value), seen in sorted(self.tree.items(), key=lambda kv: kv[1].first.path):
            self.result.secrets.add(value)
            place = seen.first
            if self._accepted(fingerprint(rule, place.path, value), rule, place.path):
                continue
            committed = self.past.get((rule, value))
            more = f" and {seen.count - 1} more places" if seen.count > 1 else ""
            if committed is not None:
                c = committed.first
                where = (
                    f"{place.path}:{place.line}{more}; "
                    f"committed in {c.commit[:12]} ({_day(c.when)})"
                )
                fix = (
                    f"Rotate this {label(rule)} now (it is in the git history, so every clone "
                    "has it), then read it from an environment variable or a secret manager."
                )
            else:
                where = f"{place.path}:{place.line}{more}; not committed"
                fix = (
                    f"Move this {label(rule)} out of the file into an environment variable or "
                    "a secret manager before it is committed."
                )
            title = f"{label(rule)} {preview(value)} in the working tree"
            self.result.add("secret-in-tree", "blocker", title, where, fix)
        shown: list[tuple[str, str, Place]] = []
        for (rule, value), seen in sorted(self.past.items(), key=lambda kv: kv[1].first.when):
            self.result.secrets.add(value)
            c = seen.first
            if (rule, value) in self.tree:
                continue
            if not self._accepted(fingerprint(rule, c.path, value), rule, c.path):
                shown.append((rule, value, c))
        refs = _git.reachable_from(self.root, sorted({c.commit for _, _, c in shown}))
        for rule, value, c in shown:
            on = f", reachable from {refs[c.commit]}" if c.commit in refs else ""
            where = f"{c.path}:{c.line} in commit {c.commit[:12]} ({_day(c.when)}{on})"
            title = f"{label(rule)} {preview(value)} in the git history (deleted since)"
            fix = (
                f"Rotate this {label(rule)}: deleting it from the files does not remove it from "
                "the history, and every clone has it. Then revoke the old one."
            )
            self.result.add("secret-in-history", "blocker", title, where, fix)

    def env_files(self, tracked: list[bytes] | None) -> None:
        now_tracked = {_git.display_path(p) for p in tracked or ()}
        ever: dict[str, tuple[str, int]] = {}
        if tracked is not None:
            for raw, (commit, when) in _git.added_paths(self.root, 30).items():
                ever[_git.display_path(raw)] = (commit, when)
        for path in sorted(set(ever) | now_tracked):
            if not is_env_file(path):
                continue
            if self._accepted(fingerprint("env_file", path, ""), "env_file", path):
                continue
            commit, when = ever.get(path, ("", 0))
            since = f" since {commit[:12]} ({_day(when)})" if commit else ""
            if path in now_tracked:
                where = f"{path}: tracked in HEAD{since}"
                title = f"{path} is committed"
            else:
                where = f"{path}: in the history{since}, deleted since"
                title = f"{path} was committed (deleted since, still in the history)"
            fix = (
                f"git rm --cached {path}; add it to .gitignore; commit a {path}.example with "
                "the names only; rotate every secret it held (the history keeps them)."
            )
            self.result.add("env-file-committed", "blocker", title, where, fix)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _day(when: int) -> str:
    if not when:
        return "date unknown"
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d")


def run(options: Options, deadline: float) -> PartResult:
    """The secrets part: tree, history and `.env` files of `options.repo`."""
    result = PartResult()
    if options.repo is None:
        raise ValueError("--repo is required")
    top = _git.work_tree(options.repo)
    root = top if top is not None else options.repo
    scan = SecretScan(root, options, deadline, result)
    if top is None:
        result.skipped.append(f"history: {options.repo} is not a git repository")
        scan.scan_tree(_walk(root))
        scan.report()
        scan.write_baseline()
        return result
    tracked = _git.tracked(root)
    scan.scan_tree([*tracked, *_git.untracked(root)])
    if not _git.has_commits(root):
        result.skipped.append("history: the repository has no commits yet")
    else:
        if _git.is_shallow(root):
            result.skipped.append(
                "history: this is a shallow clone; commits before its graft were not scanned "
                "(git fetch --unshallow, or fetch-depth: 0 in CI)"
            )
        scan.scan_history()
    scan.report()
    scan.env_files(tracked)
    scan.write_baseline()
    return result
