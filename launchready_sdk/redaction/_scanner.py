"""The text half of `Redactor`: strings, JSON held in strings, and free-text scanning.

`_scan_once` fixes the order of the rules, and runs each only after its hint is found.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import orjson

from launchready_sdk.redaction._credentials import (
    BASIC_RE,
    BEARER_RE,
    CLI_FLAG_RE,
    JWT_RE,
    MYSQL_PASSWORD_RE,
    PEM_RE,
    PYDANTIC_VALUE_RE,
    USERINFO_RE,
    XML_ELEMENT_RE,
    may_hold_pair,
    replace_auth,
    replace_jwt,
    replace_userinfo,
    sensitive_pairs,
)
from launchready_sdk.redaction._keys import KeyRules
from launchready_sdk.redaction._markers import (
    EMAIL_MARKER,
    MARKER_RE,
    OVERSIZE_MARKER,
    cut_point,
    marker_for,
    splice,
)
from launchready_sdk.redaction._patterns import EXTRA_OVERLAP, EXTRA_WINDOW, overlaps
from launchready_sdk.redaction._personal import (
    EMAIL_DOMAIN_RE,
    EMAIL_LOCAL_RE,
    EmailMode,
    redact_cards,
)
from launchready_sdk.redaction._tokens import (
    CAPITAL_A_RULES,
    CAPITAL_S_RULES,
    DASH_RULES,
    DISCORD_MIDDLE,
    DISCORD_TOKEN,
    DOLLAR_RULES,
    SLACK_WEBHOOK,
    TELEGRAM_TOKEN,
    UNDERSCORE_RULES,
    WEBHOOK_URL_RULES,
    apply_rules,
)
from launchready_sdk.redaction.prefilter import needs_scan

_CLEAN_CACHE_SIZE: Final = 4096
_CLEAN_MAX_LEN: Final = 256
MIN_SECRET: Final = 5  # the shortest text a built-in rule can change (`pwd=x`)
_MAX_PASSES: Final = 4


class TextScanner(KeyRules):
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
        if self._extra or n > _CLEAN_MAX_LEN or (n >= MIN_SECRET and needs_scan(text)):
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
        return self._cut(self._scan(text[: cut_point(text, limit)]))

    def _cut(self, text: str) -> str:
        """Already redacted text cut to `max_string`, at a space when there is one nearby."""
        limit = self._max_string - len(OVERSIZE_MARKER) - 1
        return f"{text[: cut_point(text, limit)]} {OVERSIZE_MARKER}"

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
            text = PEM_RE.sub(marker_for("private_key"), text)
        if "J" in text and "eyJ" in text:
            text = JWT_RE.sub(replace_jwt, text)
        if "@" in text and "://" in text:
            text = USERINFO_RE.sub(replace_userinfo, text)
        text = self._auth_schemes(text)
        if len(text) >= 13:  # before the formats: a marker must not change their boundaries
            text = redact_cards(text)
        text = self._formats(text)
        if "<" in text and "</" in text:
            text = self._elements(text)
        if "-" in text:
            if "--" in text:
                text = self._cli_flags(text)
            if "-p" in text and ("mysql" in text or "mariadb" in text):
                text = MYSQL_PASSWORD_RE.sub(_mask_group_1("password"), text)
        if "=" in text and "input_value=" in text:
            text = self._validation_errors(text)
        if may_hold_pair(text):
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
            text = BEARER_RE.sub(replace_auth, text)
        if "basic" in lower:
            text = BASIC_RE.sub(replace_auth, text)
        return text

    @staticmethod
    def _formats(text: str) -> str:
        if "-" in text:
            text = apply_rules(text, DASH_RULES)
        if "_" in text:
            text = apply_rules(text, UNDERSCORE_RULES)
        if "A" in text:
            text = apply_rules(text, CAPITAL_A_RULES)
            if ":AA" in text:
                text = TELEGRAM_TOKEN.apply(text)
        if "S" in text:
            text = apply_rules(text, CAPITAL_S_RULES)
        if "$" in text:
            text = apply_rules(text, DOLLAR_RULES)
        if "hook" in text:
            if "hooks.slack.com" in text:
                text = SLACK_WEBHOOK.apply(text)
            if "/webhook" in text:
                text = apply_rules(text, WEBHOOK_URL_RULES)
        if len(text) >= 59 and _may_hold_discord_token(text):
            text = DISCORD_TOKEN.apply(text)
        return text

    def _elements(self, text: str) -> str:
        """`<password>hunter2</password>`: an element named like a secret has its text masked."""

        def replace(m: re.Match[str]) -> str:
            rule = self._key_rule(m.group(1))
            if rule is None or MARKER_RE.fullmatch(m.group(2)):
                return m.group()
            return m.group().replace(m.group(2), marker_for(rule), 1)

        return XML_ELEMENT_RE.sub(replace, text)

    def _cli_flags(self, text: str) -> str:
        """`--password hunter2`: a flag named like a secret has its argument masked."""

        def replace(m: re.Match[str]) -> str:
            rule = self._key_rule(m.group(1))
            if rule is None or MARKER_RE.fullmatch(m.group(2)):
                return m.group()
            return m.group()[: m.start(2) - m.start()] + marker_for(rule)

        return CLI_FLAG_RE.sub(replace, text)

    def _validation_errors(self, text: str) -> str:
        """pydantic's `str(ValidationError)`: each error's location stands alone on the line
        above its message, which ends `[type=..., input_value=..., input_type=...]`. The
        rejected value is masked when the location names a secret (`password`,
        `body.password`)."""
        lines = text.split("\n")
        location = ""
        changed = False
        for i, line in enumerate(lines):
            if not line.startswith(" "):
                location = line.strip()
                continue
            if "input_value=" not in line or not location:
                continue
            rule = self._key_rule(location)
            if rule is not None:
                lines[i] = PYDANTIC_VALUE_RE.sub(f"input_value={marker_for(rule)}", line)
                changed = True
        return "\n".join(lines) if changed else text

    def _pairs(self, text: str) -> str:
        """`key=value`, `key: value` and `"key": "value"` with the value masked by key rule."""
        spans = sensitive_pairs(text, self._key_rule, self._keys)
        if not spans:
            return text
        return splice(text, [(start, end, marker_for(rule)) for start, end, rule in spans])

    def _emails(self, text: str) -> str:
        """Addresses found from their `@`; the local part is read backwards from it."""
        keep_domain = self._email == "domain"
        spans: list[tuple[int, int, str]] = []
        pos = 0
        for m in EMAIL_DOMAIN_RE.finditer(text):
            at, end = m.start(), m.end()
            local = EMAIL_LOCAL_RE.search(text, max(pos, at - 64), at)
            if local is None or (text[end : end + 1] == ":" and text[end + 1 : end + 2].isalpha()):
                continue  # no local part, or an scp-style remote (`git@github.com:org/repo`)
            spans.append((local.start(), at if keep_domain else end, EMAIL_MARKER))
            pos = at + 1 if keep_domain else end  # a kept domain may be the next local part
        return splice(text, spans) if spans else text

    def _apply_extra(self, text: str) -> str:
        """User patterns, in windows of 16 KiB, never inside an existing marker."""
        for marker, pattern in self._extra:
            protected = [m.span() for m in MARKER_RE.finditer(text)] if "[REDACTED" in text else []
            spans: list[tuple[int, int, str]] = []
            for offset in range(0, max(len(text), 1), EXTRA_WINDOW - EXTRA_OVERLAP):
                window_end = min(len(text), offset + EXTRA_WINDOW)
                for m in pattern.finditer(text, offset, window_end):
                    start, end = m.span()
                    if end > start and not overlaps(start, end, protected, spans):
                        spans.append((start, end, marker))
                if window_end == len(text):
                    break
            if spans:
                text = splice(text, sorted(spans))
        return text


def _mask_group_1(rule: str) -> Callable[[re.Match[str]], str]:
    marker = marker_for(rule)

    def replace(m: re.Match[str]) -> str:
        if MARKER_RE.fullmatch(m.group(1)):
            return m.group()
        return m.group()[: m.start(1) - m.start()] + marker + m.group()[m.end(1) - m.start() :]

    return replace


def _may_hold_discord_token(text: str) -> bool:
    """A Discord bot token is looked for in a bare value (no space) or after `Bot `; in prose
    the regex would cost more than all the other rules together."""
    if " " in text and not ("B" in text and "Bot " in text):
        return False
    return "." in text and DISCORD_MIDDLE.search(text) is not None
