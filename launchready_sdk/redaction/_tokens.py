"""Token format rules: credentials recognised by a literal prefix (cloud, SaaS and hash formats).

Each rule runs only after a substring test finds one of its hints; the groups are keyed by a
character that every hint of the group contains, so one test skips a whole group.
"""

from __future__ import annotations

import re
from typing import Final

from launchready_sdk.redaction._markers import marker_for

_LEFT: Final = 1  # the match must not follow a letter or digit
_DIGIT: Final = 2  # the match must contain a digit


class _TokenRule:
    """A credential format: a literal-prefixed pattern run only when one of its hints occurs."""

    __slots__ = ("flags", "hints", "marker", "pattern", "rule")

    def __init__(self, rule: str, hints: tuple[str, ...], pattern: str, flags: int = 0) -> None:
        self.rule = rule
        self.marker = marker_for(rule)
        self.hints = hints
        self.pattern = re.compile(pattern, re.ASCII)
        self.flags = flags

    def apply(self, text: str) -> str:
        return self.pattern.sub(self._replace, text)

    def accepts(self, m: re.Match[str]) -> bool:
        """Whether a match of the pattern is a token (not glued to a word; digits if needed)."""
        start = m.start()
        if self.flags & _LEFT and start and m.string[start - 1].isalnum():
            return False
        return not (self.flags & _DIGIT and not any(c.isdigit() for c in m.group()))

    def _replace(self, m: re.Match[str]) -> str:
        return self.marker if self.accepts(m) else m.group()


_END: Final = r"(?![A-Za-z0-9])"
# Grouped by a character every hint of the group contains, so one test skips a whole group.
UNDERSCORE_RULES: Final = (
    _TokenRule(
        "stripe_key",
        ("k_live_", "k_test_", "k_prod_"),
        rf"[rs]k_(?:live|test|prod)_[A-Za-z0-9]{{10,247}}{_END}",
        _LEFT,
    ),
    _TokenRule("stripe_webhook_secret", ("whsec_",), r"whsec_[A-Za-z0-9+/=]{20,256}", _LEFT),
    _TokenRule(
        "stripe_client_secret",
        ("_secret_",),
        r"(?:pi|seti|src)_[A-Za-z0-9]{8,64}_secret_[A-Za-z0-9]{8,128}",
        _LEFT,
    ),
    _TokenRule(
        "github_token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        rf"gh[pousr]_[A-Za-z0-9]{{30,255}}{_END}",
        _LEFT,
    ),
    _TokenRule("github_token", ("github_pat_",), r"github_pat_[A-Za-z0-9_]{22,255}", _LEFT),
    _TokenRule("npm_token", ("npm_",), rf"npm_[A-Za-z0-9]{{36}}{_END}", _LEFT),
)
DASH_RULES: Final = (
    _TokenRule("gitlab_token", ("glpat-",), r"glpat-[A-Za-z0-9_\-]{20,64}", _LEFT),
    _TokenRule("slack_token", ("xox",), r"xox[abposre]-[A-Za-z0-9\-]{10,250}", _LEFT),
    _TokenRule("slack_token", ("xapp-",), r"xapp-[0-9]-[A-Za-z0-9\-]{10,250}", _LEFT),
    _TokenRule("anthropic_key", ("sk-ant-",), r"sk-ant-[A-Za-z0-9_\-]{20,300}", _LEFT),
    _TokenRule("openai_key", ("sk-",), r"sk-[A-Za-z0-9_\-]{20,300}", _LEFT | _DIGIT),
    _TokenRule("pypi_token", ("pypi-AgE",), r"pypi-AgE[A-Za-z0-9_\-]{40,8192}", _LEFT),
)
CAPITAL_A_RULES: Final = (
    _TokenRule(
        "aws_access_key",
        ("AKIA", "ASIA", "ABIA", "ACCA"),
        rf"A(?:KIA|SIA|BIA|CCA)[A-Z2-7]{{16}}{_END}",
        _LEFT,
    ),
    _TokenRule("google_api_key", ("AIza",), rf"AIza[A-Za-z0-9_\-]{{35}}{_END}", _LEFT),
)
CAPITAL_S_RULES: Final = (
    _TokenRule(
        "sendgrid_key", ("SG.",), r"SG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}", _LEFT
    ),
    _TokenRule("twilio_key", ("SK",), rf"SK[0-9a-fA-F]{{32}}{_END}", _LEFT),
)
_HASH_PART: Final = r"[A-Za-z0-9+/=._\-]"
# Password hashes: bcrypt, argon2, scrypt (Django's and `scrypt$n$r$p$salt$hash`), PBKDF2
# (Django's and passlib's) and SHA-crypt. Each field class excludes `$`, so a run is read once.
DOLLAR_RULES: Final = (
    _TokenRule("password_hash", ("$2",), r"\$2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{53}"),
    _TokenRule(
        "password_hash",
        ("$argon2",),
        rf"\$argon2(?:id|i|d)\$v=[0-9]{{1,3}}\$m=[0-9]{{1,10}},t=[0-9]{{1,10}},p=[0-9]{{1,4}}"
        rf"\${_HASH_PART}{{4,256}}\${_HASH_PART}{{16,512}}",
    ),
    _TokenRule(
        "password_hash",
        ("scrypt$", "pbkdf2"),
        rf"(?:\$?scrypt|\$?pbkdf2(?:[_\-]sha(?:1|256|512))?)\$(?:{_HASH_PART}{{1,256}}\$){{2,5}}"
        rf"{_HASH_PART}{{16,512}}",
        _LEFT,
    ),
    _TokenRule(
        "password_hash",
        ("$5$", "$6$"),
        r"\$[56]\$(?:rounds=[0-9]{1,10}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43,86}",
    ),
)
# Bot tokens without a literal prefix of their own: a Discord token is the base64 of a numeric
# user id (so it starts `MT`..`OT`), a dot, a timestamp, a dot and an HMAC; a Telegram token is
# the bot's numeric id, a colon and a secret that starts `AA`.
DISCORD_TOKEN: Final = _TokenRule(
    "discord_token",
    (".",),
    rf"(?:M[TDjzQ]|N[DTjz]|O[DT])[A-Za-z0-9_\-]{{22,28}}\.[A-Za-z0-9_\-]{{6,7}}\."
    rf"[A-Za-z0-9_\-]{{27,40}}{_END}",
    _LEFT | _DIGIT,
)
# The cheap part of a Discord token, searched from its literal `.` before the full rule runs.
DISCORD_MIDDLE: Final = re.compile(r"\.[A-Za-z0-9_\-]{6,7}\.[A-Za-z0-9_\-]{27}")
TELEGRAM_TOKEN: Final = _TokenRule(
    "telegram_token", (":AA",), rf"(?<![0-9])[0-9]{{8,10}}:AA[A-Za-z0-9_\-]{{33}}{_END}"
)
# Incoming-webhook URLs whose path is the credential.
WEBHOOK_URL_RULES: Final = (
    _TokenRule(
        "teams_webhook",
        ("webhook.office.com", "office.com/webhook", "office365.com/webhook"),
        r"(?:[A-Za-z0-9\-]{1,63}\.webhook\.office\.com/webhookb2|"
        r"outlook\.office(?:365)?\.com/webhook)/[A-Za-z0-9@/_.\-]{8,512}",
    ),
    _TokenRule(
        "discord_webhook",
        ("discord.com/api/webhooks/", "discordapp.com/api/webhooks/"),
        r"discord(?:app)?\.com/api/webhooks/[0-9]{5,30}/[A-Za-z0-9_\-]{20,128}",
    ),
)
SLACK_WEBHOOK: Final = _TokenRule(
    "slack_webhook",
    ("hooks.slack.com",),
    r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{8,256}",
)


def apply_rules(text: str, rules: tuple[_TokenRule, ...]) -> str:
    for rule in rules:
        for hint in rule.hints:
            if hint in text:
                text = rule.apply(text)
                break
    return text
