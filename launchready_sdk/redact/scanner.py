"""The text half of `Redactor`: strings, JSON held in strings, and free-text scanning.

`_scan_once` fixes the order of the rules, and runs each only after its hint is found.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import orjson

from launchready_sdk.redact.credentials import (
    _BASIC_RE,
    _BEARER_RE,
    _JWT_RE,
    _KV_REVERSED_RE,
    _KV_VALUE_RE,
    _PEM_RE,
    _SAFE_VALUES,
    _USERINFO_RE,
    _may_hold_pair,
    _replace_auth,
    _replace_jwt,
    _replace_userinfo,
)
from launchready_sdk.redact.keys import _MISSING, _KeyRules
from launchready_sdk.redact.markers import (
    _EMAIL_MARKER,
    _MARKER_RE,
    OVERSIZE_MARKER,
    _cut_point,
    _marker,
    _splice,
)
from launchready_sdk.redact.patterns import _EXTRA_OVERLAP, _EXTRA_WINDOW, _overlaps
from launchready_sdk.redact.personal import (
    _EMAIL_DOMAIN_RE,
    _EMAIL_LOCAL_RE,
    EmailMode,
    _redact_cards,
)
from launchready_sdk.redact.prefilter import _needs_scan
from launchready_sdk.redact.tokens import (
    _CAPITAL_A_RULES,
    _CAPITAL_S_RULES,
    _DASH_RULES,
    _DOLLAR_RULES,
    _SLACK_WEBHOOK,
    _UNDERSCORE_RULES,
    _apply_rules,
)

_CLEAN_CACHE_SIZE: Final = 4096
_CLEAN_MAX_LEN: Final = 256
_MIN_SECRET: Final = 5  # the shortest text a built-in rule can change (`pwd=x`)
_MAX_PASSES: Final = 4


class _TextScanner(_KeyRules):
    """The text methods of `Redactor`; `_walk` comes from the walker that subclasses this."""

    _extra: tuple[tuple[str, re.Pattern[str]], ...]
    _email: EmailMode
    _max_depth: int
    _max_string: int
    _clean: dict[str, None]
    _walk: Callable[[object, int, set[int]], object]

    def _text(self, text: str, depth: int) -> str:
        if text in self._clean:
            return text
        if len(text) > self._max_string:
            return self._oversize(text)
        n = len(text)
        if self._extra or n > _CLEAN_MAX_LEN or (n >= _MIN_SECRET and _needs_scan(text)):
            result = self._json_or_scan(text, depth)
            if result != text:
                return self._cut(result) if len(result) > self._max_string else result
        self._remember(text)
        return text

    def _remember(self, text: str) -> None:
        """Note a string that needs no redaction, so that seeing it again costs one lookup.

        JSON-looking strings are not noted: how deep they sit decides whether they are decoded.
        """
        if len(text) <= _CLEAN_MAX_LEN and text[:1] not in ("{", "["):
            if len(self._clean) >= _CLEAN_CACHE_SIZE:
                self._clean.clear()
            self._clean[text] = None

    def _json_or_scan(self, text: str, depth: int) -> str:
        if text[:1] in ("{", "[") and depth < self._max_depth:
            decoded = self._json_text(text, depth)
            if decoded is not None:
                return decoded
        return self._scan(text)

    def _oversize(self, text: str) -> str:
        """The redacted head of a string longer than `max_string`, marked as cut."""
        limit = self._max_string - len(OVERSIZE_MARKER) - 1
        return self._cut(self._scan(text[: _cut_point(text, limit)]))

    def _cut(self, text: str) -> str:
        """Already redacted text cut to `max_string`, at a space when there is one nearby."""
        limit = self._max_string - len(OVERSIZE_MARKER) - 1
        return f"{text[: _cut_point(text, limit)]} {OVERSIZE_MARKER}"

    def _json_text(self, text: str, depth: int) -> str | None:
        """A JSON document in a string, redacted and re-serialised; None when it is not JSON."""
        last = text.rstrip()[-1:]
        if last not in ("}", "]") or text.startswith("[REDACTED"):
            return None
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        if type(data) is not dict and type(data) is not list:
            return None
        redacted = self._walk(data, depth + 1, set())
        if redacted == data:
            return text
        return orjson.dumps(redacted).decode()

    def _scan(self, text: str) -> str:
        """`_scan_once` repeated until nothing changes, so that redaction is idempotent.

        A marker can change what a rule sees next to it (a word boundary, an e-mail's end);
        each pass only turns unmarked text into markers, so this ends after a pass or two.
        """
        for _ in range(_MAX_PASSES):
            scanned = self._scan_once(text)
            if scanned == text:
                break
            text = scanned
        return text

    def _scan_once(self, text: str) -> str:
        """Free text with every value rule applied; each rule runs only when its hint occurs.

        A one-character test (a fast memchr) guards each longer hint, since on long text every
        substring test costs a pass over it.
        """
        if "B" in text and "-----BEGIN" in text and "PRIVATE KEY" in text:
            text = _PEM_RE.sub(_marker("private_key"), text)
        if "J" in text and "eyJ" in text:
            text = _JWT_RE.sub(_replace_jwt, text)
        if "@" in text and "://" in text:
            text = _USERINFO_RE.sub(_replace_userinfo, text)
        text = self._auth_schemes(text)
        if len(text) >= 13:  # before the formats: a marker must not change their boundaries
            text = _redact_cards(text)
        text = self._formats(text)
        if _may_hold_pair(text):
            text = self._pairs(text)
        if "@" in text and self._email != "off":
            text = self._emails(text)
        if self._extra:
            text = self._apply_extra(text)
        return text

    @staticmethod
    def _auth_schemes(text: str) -> str:
        lower = text.lower()
        if "bearer" in lower:
            text = _BEARER_RE.sub(_replace_auth, text)
        if "basic" in lower:
            text = _BASIC_RE.sub(_replace_auth, text)
        return text

    @staticmethod
    def _formats(text: str) -> str:
        if "-" in text:
            text = _apply_rules(text, _DASH_RULES)
        if "_" in text:
            text = _apply_rules(text, _UNDERSCORE_RULES)
        if "A" in text:
            text = _apply_rules(text, _CAPITAL_A_RULES)
        if "S" in text:
            text = _apply_rules(text, _CAPITAL_S_RULES)
        if "$" in text:
            text = _apply_rules(text, _DOLLAR_RULES)
        if "hooks.slack.com" in text:
            text = _SLACK_WEBHOOK.apply(text)
        return text

    def _pairs(self, text: str) -> str:
        """`key=value`, `key: value` and `"key": "value"` with the value masked by key rule.

        Separators and their keys are found in one search over the reversed text; only the
        pairs whose key is sensitive reach Python, then values are matched left to right.
        """
        n, keys = len(text), self._keys
        spans: list[tuple[int, int, str]] = []
        pos = 0
        for m in reversed(list(_KV_REVERSED_RE.finditer(text[::-1]))):
            key = m.group(m.lastindex or 0)[::-1]
            rule = keys.get(key, _MISSING)
            if rule is _MISSING:
                rule = self._key_rule(key)
            if rule is None or n - m.end(1) < pos:
                continue
            value = _KV_VALUE_RE.match(text, n - m.start(1))
            if value is None:
                continue
            pos = value.end()
            group = value.lastindex or 0
            inner = value.group(group)
            if inner.lower() not in _SAFE_VALUES and not _MARKER_RE.fullmatch(inner):
                spans.append((value.start(group), value.end(group), _marker(str(rule))))
        return _splice(text, spans) if spans else text

    def _emails(self, text: str) -> str:
        """Addresses found from their `@`; the local part is read backwards from it."""
        keep_domain = self._email == "domain"
        spans: list[tuple[int, int, str]] = []
        pos = 0
        for m in _EMAIL_DOMAIN_RE.finditer(text):
            at, end = m.start(), m.end()
            local = _EMAIL_LOCAL_RE.search(text, max(pos, at - 64), at)
            if local is None or (text[end : end + 1] == ":" and text[end + 1 : end + 2].isalpha()):
                continue  # no local part, or an scp-style remote (`git@github.com:org/repo`)
            spans.append((local.start(), at if keep_domain else end, _EMAIL_MARKER))
            pos = at + 1 if keep_domain else end  # a kept domain may be the next local part
        return _splice(text, spans) if spans else text

    def _apply_extra(self, text: str) -> str:
        """User patterns, in windows of 16 KiB, never inside an existing marker."""
        for marker, pattern in self._extra:
            protected = [m.span() for m in _MARKER_RE.finditer(text)] if "[REDACTED" in text else []
            spans: list[tuple[int, int, str]] = []
            for offset in range(0, max(len(text), 1), _EXTRA_WINDOW - _EXTRA_OVERLAP):
                window_end = min(len(text), offset + _EXTRA_WINDOW)
                for m in pattern.finditer(text, offset, window_end):
                    start, end = m.span()
                    if end > start and not _overlaps(start, end, protected, spans):
                        spans.append((start, end, marker))
                if window_end == len(text):
                    break
            if spans:
                text = _splice(text, sorted(spans))
        return text
