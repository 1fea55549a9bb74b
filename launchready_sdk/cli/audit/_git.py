"""Git as a subprocess: the repository's state, its files, and its history as added lines.

Every call has a time budget; a git that runs past it is killed. Paths are bytes as git gives
them (`-z`, `core.quotepath=off`), decoded for display with `display_path`.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

_GIT_CONFIG: Final = (
    "-c",
    "core.quotepath=off",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "color.ui=never",
    "-c",
    "diff.external=",
    "-c",
    "core.pager=cat",
)
_HUNK_RE: Final = re.compile(rb"^@@+ (?:-[0-9,]+ )+\+([0-9]+)(?:,([0-9]+))? @@")
_COMMIT_MARK: Final = b"\x01"
MAX_ADDED_BYTES: Final = 2_000_000  # added text kept per file and commit


class GitError(Exception):
    """git failed, is missing or ran past its budget."""


def display_path(raw: bytes) -> str:
    """A path for people and JSON: undecodable bytes shown as `\\xNN`."""
    return raw.decode("utf-8", "backslashreplace")


def git(repo: Path, *args: str, timeout_s: float = 30.0) -> bytes:
    """Run `git -C repo args...`; its stdout, or GitError with git's message."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *_GIT_CONFIG, *args],
            capture_output=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} ran past {timeout_s:g} s") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(message[-1] if message else f"git {args[0]} failed")
    return done.stdout


def work_tree(path: Path) -> Path | None:
    """The top of the git work tree holding `path`, or None when it is not in one."""
    try:
        out = git(path, "rev-parse", "--show-toplevel", timeout_s=10)
    except GitError:
        return None
    return Path(os.fsdecode(out.rstrip(b"\n")))


def is_shallow(repo: Path) -> bool:
    return git(repo, "rev-parse", "--is-shallow-repository", timeout_s=10).strip() == b"true"


def has_commits(repo: Path) -> bool:
    try:
        git(repo, "rev-parse", "--verify", "-q", "HEAD", timeout_s=10)
    except GitError:
        return False
    return True


def tracked(repo: Path) -> list[bytes]:
    return [p for p in git(repo, "ls-files", "-z").split(b"\0") if p]


def untracked(repo: Path) -> list[bytes]:
    """Files not tracked and not ignored: about to be committed."""
    out = git(repo, "ls-files", "-z", "--others", "--exclude-standard")
    return [p for p in out.split(b"\0") if p]


def added_paths(repo: Path, timeout_s: float) -> dict[bytes, tuple[str, int]]:
    """Every path ever added on any ref -> (oldest commit adding it, its commit time)."""
    out = git(
        repo,
        "log",
        "--all",
        "--diff-filter=A",
        "--name-only",
        "-z",
        "--format=%x01%H %ct",
        timeout_s=timeout_s,
    )
    paths: dict[bytes, tuple[str, int]] = {}
    commit, when = "", 0
    for item in out.split(b"\0"):
        item = item.strip(b"\n")
        if item.startswith(_COMMIT_MARK):
            head, _, item = item[1:].partition(b"\n")
            sha, _, ct = head.partition(b" ")
            commit, when = sha.decode(), int(ct or 0)
        if item:
            paths[item] = (commit, when)  # newest first: the last one seen is the oldest
    return paths


def reachable_from(repo: Path, commits: list[str]) -> dict[str, str]:
    """For each commit, a branch or tag it is reachable from (`git name-rev`, one call)."""
    if not commits:
        return {}
    try:
        out = git(repo, "name-rev", "--name-only", "--no-undefined", "--exclude=refs/stash",
                  *commits, timeout_s=30)  # fmt: skip
    except GitError:
        return {}
    names = [display_path(line).split("~")[0].split("^")[0] for line in out.splitlines()]
    pairs = zip(commits, names, strict=False)
    return {c: n.removeprefix("tags/").removeprefix("remotes/") for c, n in pairs}


def _unquote(raw: bytes) -> bytes:
    """A path from a diff header: C-quoted when it holds special characters."""
    if not raw.startswith(b'"'):
        return raw.rstrip(b"\t")  # git appends a tab to a path holding a space
    text = raw[1 : raw.rfind(b'"')]
    out = bytearray()
    i = 0
    escapes = {
        b"t": 9,
        b"n": 10,
        b'"': 34,
        b"\\": 92,
        b"a": 7,
        b"b": 8,
        b"f": 12,
        b"v": 11,
        b"r": 13,
    }
    while i < len(text):
        c = text[i : i + 1]
        if c == b"\\" and i + 1 < len(text):
            nxt = text[i + 1 : i + 2]
            if nxt.isdigit():
                out.append(int(text[i + 1 : i + 4], 8))
                i += 4
                continue
            out.append(escapes.get(nxt, nxt[0]))
            i += 2
            continue
        out += c
        i += 1
    return bytes(out)


@dataclass
class AddedText:
    """The lines one commit added to one file, with their line numbers in that commit."""

    commit: str
    when: int
    path: bytes
    lines: list[tuple[int, str]] = field(default_factory=list)
    size: int = 0
    truncated: bool = False


@dataclass
class HistoryStats:
    commits: int = 0
    files: int = 0
    binary: int = 0
    truncated: int = 0
    stopped: bool = False


def history(repo: Path, deadline: float, stats: HistoryStats) -> Iterator[AddedText]:
    """The added lines of every commit on every ref (`git log -p --all`, no context, no merges'
    combined diffs), file by file; stops (and sets `stats.stopped`) at `deadline`."""
    cmd = [
        "git",
        "-C",
        str(repo),
        *_GIT_CONFIG,
        "log",
        "-p",
        "--all",
        "-U0",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        "--format=%x01%H %ct",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
    )
    if proc.stdout is None:
        raise GitError("git log gave no output stream")
    try:
        yield from _parse(proc.stdout, deadline, stats)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait()


def _parse(stream: object, deadline: float, stats: HistoryStats) -> Iterator[AddedText]:
    commit, when = "", 0
    current: AddedText | None = None
    line_no = added_left = 0
    count = 0
    for line in stream:  # type: ignore[attr-defined]
        if added_left > 0:
            first = line[:1]
            if first == b"+":
                if current is not None:
                    _keep(current, line_no, line[1:].rstrip(b"\n"), stats)
                line_no += 1
                added_left -= 1
                continue
            if first in (b"-", b"\\"):
                continue
        count += 1
        if count % 1024 == 0 and time.monotonic() > deadline:
            stats.stopped = True
            break
        if line.startswith(_COMMIT_MARK):
            if current is not None and current.lines:
                yield current
            current, added_left = None, 0
            sha, _, ct = line[1:].rstrip(b"\n").partition(b" ")
            commit, when = sha.decode(), int(ct or 0)
            stats.commits += 1
        elif line.startswith(b"diff --git "):
            if current is not None and current.lines:
                yield current
            current, added_left = None, 0
        elif line.startswith(b"+++ "):
            target = line[4:].rstrip(b"\n")
            if target != b"/dev/null":
                path = _unquote(target)
                current = AddedText(commit, when, path[2:] if path.startswith(b"b/") else path)
                stats.files += 1
        elif line.startswith(b"@@"):
            m = _HUNK_RE.match(line)
            if m is not None:
                line_no, added_left = int(m.group(1)), int(m.group(2) or b"1")
        elif line.startswith(b"Binary files "):
            stats.binary += 1
    if current is not None and current.lines and not stats.stopped:
        yield current


def _keep(current: AddedText, number: int, raw: bytes, stats: HistoryStats) -> None:
    if current.truncated:
        return
    if current.size + len(raw) > MAX_ADDED_BYTES:
        current.truncated = True
        stats.truncated += 1
        return
    current.size += len(raw) + 1
    current.lines.append((number, raw.decode("utf-8", "replace")))
