"""An exception as safe, bounded text: its type, redacted message, folded frames, fingerprint.

Capturing walks the traceback once and keeps file names, line numbers and function names only
(no locals, no source lines): that is all an error storm pays. Source lines are read from
`linecache` later, when the traceback is formatted for the page or for Redis, and every line
of the result goes through the redactor.
"""

from __future__ import annotations

import functools
import hashlib
import linecache
import os
import re
import sys
import sysconfig
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import launchready_sdk

MAX_MESSAGE_CHARS = 1000
MAX_TRACEBACK_CHARS = 8000
MAX_CHAIN = 3  # links of `raise ... from ...` / "during handling" shown
_SCAN_CHARS = 4096  # of a message, what the redactor reads before it is cut
_HEAD_FRAMES = 10
_TAIL_FRAMES = 30
_FINGERPRINT_FRAMES = 3
_MAX_TYPE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
Redact = Callable[[object], object]


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a traceback: where, not what (no locals, no source text)."""

    filename: str
    lineno: int
    function: str
    package: str  # the top-level package of its module: "starlette", "shop"
    app: bool  # the app's own code (not the standard library, a package, or the SDK)


@dataclass(frozen=True, slots=True)
class Link:
    """One exception of a chain: its type, redacted message and kept frames."""

    type: str
    message: str
    frames: tuple[Frame, ...]
    skipped: int  # frames left out between the first and the last ones kept
    note: str  # how it leads to the next link ("" for the last one)


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(os.path.dirname(os.path.abspath(launchready_sdk.__file__)))
    roots.add(os.path.dirname(os.__file__))
    return tuple(sorted(r + os.sep for r in roots if r))


_LIBRARY_ROOTS = _library_roots()


@functools.lru_cache(maxsize=4096)
def is_app_file(filename: str) -> bool:
    """Whether a file is the app's code rather than the standard library, a package or the SDK."""
    if not filename or filename.startswith("<"):
        return False
    if f"{os.sep}site-packages{os.sep}" in filename or f"{os.sep}dist-packages{os.sep}" in filename:
        return False
    return not filename.startswith(_LIBRARY_ROOTS)


def type_name(exc: BaseException) -> str:
    """`ValueError` for built-ins, `shop.payments.PaymentDeclined` for the app's own."""
    try:
        kind = type(exc)
        module = str(getattr(kind, "__module__", "") or "")
        name = str(getattr(kind, "__qualname__", "") or kind.__name__)
        full = name if module in ("builtins", "__main__", "") else f"{module}.{name}"
    except Exception:
        full = "<unnamed exception type>"
    return clean_text(full)[:_MAX_TYPE_CHARS]


def clean_text(text: str) -> str:
    """Text that encodes as UTF-8 and holds no control characters (newlines and tabs kept)."""
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub("\ufffd", text)


def safe_message(exc: BaseException, redact: Redact) -> str:
    """The exception's message, redacted, cut to `MAX_MESSAGE_CHARS`; never raises.

    The redactor reads the first 4 KiB (cut at a space where one is near), so a secret is
    judged whole before the text is shortened.
    """
    try:
        raw = str(exc)
    except Exception:  # a __str__ that raises
        return "<the message could not be read: its __str__ raised>"
    if not isinstance(raw, str):
        return "<the message could not be read>"
    return shorten_message(raw, redact)


def shorten_message(raw: str, redact: Redact) -> str:
    """Redact the start of `raw` and cut it to `MAX_MESSAGE_CHARS`."""
    if len(raw) > _SCAN_CHARS:
        cut = raw.rfind(" ", _SCAN_CHARS - 256, _SCAN_CHARS)
        raw = raw[: cut if cut > 0 else _SCAN_CHARS]
    text = clean_text(str(redact(clean_text(raw))))
    if len(text) > MAX_MESSAGE_CHARS:
        cut = text.rfind(" ", MAX_MESSAGE_CHARS - 100, MAX_MESSAGE_CHARS)
        text = text[: cut if cut > 0 else MAX_MESSAGE_CHARS] + " …"
    return text


def frames_of(tb: TracebackType | None) -> tuple[tuple[Frame, ...], int]:
    """The first and last frames of a traceback (outermost first) and how many were left out."""
    head: list[Frame] = []
    tail: deque[Frame] = deque(maxlen=_TAIL_FRAMES)
    total = 0
    while tb is not None:
        frame = _frame(tb)
        if len(head) < _HEAD_FRAMES:
            head.append(frame)
        else:
            tail.append(frame)
        total += 1
        tb = tb.tb_next
    return (*head, *tail), total - len(head) - len(tail)


def _frame(tb: TracebackType) -> Frame:
    code = tb.tb_frame.f_code
    module = tb.tb_frame.f_globals.get("__name__")
    package = module.partition(".")[0] if isinstance(module, str) else "?"
    function = getattr(code, "co_qualname", code.co_name)
    return Frame(code.co_filename, tb.tb_lineno, function, package, is_app_file(code.co_filename))


def chain_of(exc: BaseException, redact: Redact) -> tuple[Link, ...]:
    """The exception and up to `MAX_CHAIN - 1` causes, the root cause first (as Python prints)."""
    links: list[Link] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    note = ""
    while current is not None and id(current) not in seen and len(links) < MAX_CHAIN:
        seen.add(id(current))
        frames, skipped = frames_of(current.__traceback__)
        links.append(Link(type_name(current), safe_message(current, redact), frames, skipped, note))
        cause = current.__cause__
        if cause is not None:
            note, current = "The above exception was the direct cause of the following:", cause
        elif current.__context__ is not None and not current.__suppress_context__:
            note = "During handling of the above exception, another exception occurred:"
            current = current.__context__
        else:
            current = None
    # Printed root cause first; each link's note says how it led to the one printed after it.
    return tuple(reversed(links))


def fingerprint(kind: str, frames: tuple[Frame, ...]) -> str:
    """A stable group id: the type and the app's innermost frames (file and function, not line
    numbers, so an edit elsewhere in the file keeps the group)."""
    chosen = [f for f in frames if f.app][-_FINGERPRINT_FRAMES:] or list(
        frames[-_FINGERPRINT_FRAMES:]
    )
    parts = [kind, *(f"{_short_path(f.filename)}:{f.function}" for f in chosen)]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "replace")).hexdigest()[:16]


def format_chain(chain: tuple[Link, ...], redact: Redact) -> str:
    """The chain as a Python-style traceback: library frames folded, source lines redacted."""
    lines: list[str] = []
    for link in chain:
        lines.append("Traceback (most recent call last):")
        lines += _format_frames(link, redact)
        lines.append(f"{link.type}: {link.message}" if link.message else link.type)
        if link.note:
            lines += ["", link.note, ""]
    text = "\n".join(lines)
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "…\n" + text[-MAX_TRACEBACK_CHARS:]
    return text


def _format_frames(link: Link, redact: Redact) -> list[str]:
    out: list[str] = []
    folded: list[Frame] = []
    previous: tuple[str, int, str] | None = None
    repeats = 0
    for i, frame in enumerate(link.frames):
        if link.skipped and i == _HEAD_FRAMES:
            _fold(out, folded)
            out.append(f"  … {link.skipped} more frames …")
        if not frame.app:
            folded.append(frame)
            continue
        _fold(out, folded)
        key = (frame.filename, frame.lineno, frame.function)
        if key == previous:
            repeats += 1
            continue
        _repeated(out, repeats)
        previous, repeats = key, 0
        out.append(
            f'  File "{_short_path(frame.filename)}", line {frame.lineno}, in {frame.function}'
        )
        source = linecache.getline(frame.filename, frame.lineno).strip()
        if source:
            out.append("    " + clean_text(str(redact(source[:300]))))
    _repeated(out, repeats)
    _fold(out, folded)
    return out


def _fold(out: list[str], folded: list[Frame]) -> None:
    if folded:
        packages = ", ".join(dict.fromkeys(f.package for f in folded))
        noun = "frame" if len(folded) == 1 else "frames"
        out.append(f"  … {len(folded)} {noun} in {packages} (library, folded)")
        folded.clear()


def _repeated(out: list[str], repeats: int) -> None:
    if repeats:
        out.append(f"  [Previous line repeated {repeats} more times]")


@functools.lru_cache(maxsize=4096)
def _short_path(filename: str) -> str:
    """A file name relative to the working directory or the import path that holds it."""
    if filename.startswith("<"):
        return filename
    best = filename
    for root in (os.getcwd(), *sys.path):
        if root and filename.startswith(root.rstrip(os.sep) + os.sep):
            candidate = filename[len(root.rstrip(os.sep)) + 1 :]
            if len(candidate) < len(best):
                best = candidate
    return best
