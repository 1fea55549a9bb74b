"""`Redactor`, its configuration and structlog processor, and `redact()` with the defaults."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final

from launchready_sdk.errors import SettingsError
from launchready_sdk.redaction._keys import key_words
from launchready_sdk.redaction._markers import ERROR_MARKER
from launchready_sdk.redaction._patterns import compile_extra
from launchready_sdk.redaction._personal import CARD_MIN, EmailMode
from launchready_sdk.redaction._scanner import MIN_SECRET
from launchready_sdk.redaction._walker import Walker
from launchready_sdk.redaction.prefilter import SAFE_SHAPES, plain_classes

_MAX_DEPTH_LIMIT: Final = 256
_MIN_STRING_LIMIT: Final = 1024


class Redactor(Walker):
    """A configured redactor; call it on any value, or use `processor` in a structlog chain.

    Args:
        extra_keys: more key names to redact, matched word by word (`"dob"` also matches
            `user_dob`), marked with the key's words joined by `_`.
        extra_patterns: `(rule_name, regex)` pairs for your own token formats, marked
            `[REDACTED:<rule_name>]`. Start each with a literal prefix; see the module notes.
        email: `"domain"` keeps the domain of an address, `"full"` hides it all, `"off"` keeps it.
        max_depth: containers nested deeper than this become `[REDACTED:depth]` (1 to 256).
        max_string: longer text is cut to this many characters, ending with `[REDACTED:oversize]`.
    """

    def __init__(
        self,
        *,
        extra_keys: Iterable[str] = (),
        extra_patterns: Iterable[tuple[str, str]] = (),
        email: EmailMode = "domain",
        max_depth: int = 32,
        max_string: int = 1_000_000,
    ) -> None:
        if email not in ("domain", "full", "off"):
            raise SettingsError("email", f"must be 'domain', 'full' or 'off', not {email!r}")
        if not 1 <= max_depth <= _MAX_DEPTH_LIMIT:
            raise SettingsError("max_depth", f"must be between 1 and {_MAX_DEPTH_LIMIT}", "32")
        if max_string < _MIN_STRING_LIMIT:
            raise SettingsError("max_string", f"must be at least {_MIN_STRING_LIMIT}", "1000000")
        self._extra_keys = tuple(self._key_phrase(key) for key in extra_keys)
        self._extra = compile_extra(extra_patterns)
        self._email = email
        self._max_depth = max_depth
        self._max_string = max_string
        self._keys: dict[object, str | None] = {}
        self._safe_keys: set[str] = set()
        self._clean: dict[str, None] = {}
        self._short = 0 if self._extra else MIN_SECRET

    @staticmethod
    def _key_phrase(key: str) -> tuple[str, ...]:
        words = key_words(str(key))
        if not words:
            raise SettingsError("extra_keys", f"{key!r} has no letters or digits", "'dob'")
        return words

    def __call__(self, value: object) -> object:
        """A redacted deep copy of `value`; never raises."""
        try:
            return self._child(value, -1, set())
        except Exception:
            return ERROR_MARKER

    def processor(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """structlog processor: a redacted copy of `event_dict`; the original is not modified."""
        try:
            copy = self._plain_copy(event_dict)
            return copy if copy is not None else self._mapping(event_dict, 0, {id(event_dict)})
        except Exception:
            try:
                return dict.fromkeys(list(event_dict), ERROR_MARKER)
            except Exception:
                return {"event": ERROR_MARKER}

    def _plain_copy(self, event_dict: Mapping[str, Any]) -> dict[str, Any] | None:
        """A plain copy of an event no rule can change, or None when it needs the full walk.

        The fast path of every log line: keys already known safe, strings seen before (one
        lookup each), numbers, and new strings (request IDs, timestamps, paths) that pass
        `plain_classes` or `SAFE_SHAPES` together. Anything else takes the full walk.
        """
        if (
            self._extra
            or "value" in event_dict
            or "loc" in event_dict
            or not self._safe_keys.issuperset(event_dict)
        ):
            return None
        clean = self._clean
        texts = []
        for value in event_dict.values():
            kind = type(value)
            if kind is str:
                if value not in clean:
                    texts.append(value)
            elif kind is int:
                if not -CARD_MIN < value < CARD_MIN:
                    return None
            elif not (kind is float or kind is bool or value is None):
                return None
        if texts:
            joined = "\n".join(texts)
            if len(joined) > self._max_string:
                return None
            if not (
                plain_classes(joined)
                or SAFE_SHAPES.fullmatch(joined)
                or all(self._text(text, 0) is text for text in texts)
            ):
                return None
        return dict(event_dict)


DEFAULT_REDACTOR: Final = Redactor()


def redact(value: object) -> object:
    """A redacted deep copy of `value` with the default rules (see the module docstring)."""
    return DEFAULT_REDACTOR(value)
