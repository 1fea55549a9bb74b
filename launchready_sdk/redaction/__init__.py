"""Redaction of secrets and personal data in log events and any other value.

`redact(value)` returns a redacted deep copy of `value`; `Redactor(...)` builds a configured
instance, and `Redactor.processor` is a structlog processor. Place it after the processors that
add or format data (`merge_contextvars`, `format_exc_info`, `TimeStamper`) and just before the
renderer, and in `ProcessorFormatter.foreign_pre_chain` so stdlib and server logs pass through it.
Nothing that emits (a Sentry or file processor) should run before it.

What it walks: mappings (keys kept, values redacted), lists, tuples, sets (returned as lists),
`bytes` (returned as `bytes`, decoded as UTF-8 losslessly), ASGI header tuples and other name/value
pairs (`[(b"authorization", b"...")]`, `[{"name": "X-Api-Key", "value": "..."}]`), JSON documents
held in strings (re-serialised compactly when something was redacted), and free text.

Three families of rules, each marked `[REDACTED:<rule>]`; a marker never contains matched text:

- Keys. A key is split into lowercase words at `_ - . space` and camelCase boundaries (after
  percent-decoding and NFKC), so `X-Api-Key`, `clientSecret`, `AWS_SECRET_ACCESS_KEY` and
  `pass%77ord` match but `author_id`, `max_tokens`, `primary_key` and `keyword` do not. Keys that
  describe a secret (`has_password`, `password_changed_at`, `token_count`, `auth_method`) are
  spared by prefix and suffix lists. The marker names the key's category: password, secret,
  token, api_key, access_key, private_key, key, authorization, credential, cookie, session,
  signature, jwt, csrf, card, ssn, pin, otp or code. A `None` or bool under a sensitive key is
  kept (it cannot carry a secret); any other value, containers included, is replaced whole.
- Token formats, found anywhere in text: AWS key IDs, Stripe secret and restricted keys, webhook
  and client secrets, GitHub, GitLab, Slack (tokens and webhook URLs), Teams and Discord webhook
  URLs, Telegram bot tokens, Google, SendGrid, OpenAI, Anthropic, npm, PyPI and Twilio keys,
  JWTs, PEM private keys, bcrypt hashes, `Bearer` and `Basic` credentials, URL passwords
  (`scheme://user:[REDACTED:password]@host:port` keeps the rest), and `key=value`, `key: value`
  and `"key": "value"` pairs whose key is sensitive, including form bodies, query strings
  (`user[password]=` too), percent-encoded keys and `%3D` separators. An authorization value
  keeps its scheme (`Bot`, `ApiKey`, `SSWS`, `Negotiate`, ...) and loses the credential; a
  cookie header loses every cookie of its line. Also `<password>...</password>` elements,
  `--password value` flags, `mysql -pvalue`, and validation errors: a pydantic or FastAPI error
  (`{"loc": [..., "password"], "input": ...}`, or `str(ValidationError)`) loses the rejected
  input when its location names a secret.
- Personal data: payment card numbers (issuer prefix, length and Luhn checked; plain, as an
  `int`, or split into any groups by spaces or dashes) and e-mail addresses (`email="domain"`
  keeps the domain, `"full"` hides it all, `"off"` keeps it).

Security stance: a false positive costs a debugging detail, a false negative leaks a credential,
so ambiguous cases are redacted. `redact` never raises: anything that fails inside becomes
`[REDACTED:error]`. Input is never mutated, and the result is stable: text is rescanned until a
pass changes nothing, so `redact(redact(x)) == redact(x)`.

Speed: every token pattern starts with a literal and runs only after a substring test finds its
prefix; key verdicts and clean strings (at most 4,096 of up to 256 characters, per instance) are
cached. In `processor`, an event whose keys are known safe and whose new strings are IDs,
timestamps or lowercase paths is copied after a handful of C-level tests.

Limits, candidly:

- Detection is by format and by key name. A password written into prose ("my password is
  hunter2"), an opaque token under an innocent key, OAuth `code=` parameters, DSNs without a
  scheme (`user:pass@tcp(db)`), URL passwords holding a raw `[`, `]` or quote, names, addresses,
  phone numbers, IP addresses and IBANs are not found. Dict keys are kept, even a secret key.
- A Discord bot token is found as a bare value or after `Bot `, not inside prose: its format has
  no literal prefix, and looking for it in every sentence would cost more than all the other
  rules together.
- Stripe publishable keys (`pk_`), Sentry DSN public keys, UUIDs, trace IDs, hashes and other
  hex strings are kept on purpose: they are identifiers, not credentials. A 40-character AWS
  secret access key is found only next to its key name, since it has no prefix. A token glued to
  a preceding letter or digit (`xghp_...`) is not taken for one.
- Card numbers need an issuer prefix, a valid length and a Luhn check, so 13-digit epoch
  milliseconds and most numeric IDs survive; about one Luhn-valid ID in ten that happens to start
  like a card (for instance a 16-digit ID starting with 4) is still redacted.
- Unknown objects are replaced by their redacted `repr()`, which is what a JSON renderer would
  have written; dates, times, UUIDs, decimals, enums, paths and IP addresses are kept as they are.
- Past `max_depth` nested containers (a JSON document in a string counts as one level) a value
  becomes `[REDACTED:depth]`, a container met again inside itself becomes `[REDACTED:cycle]`,
  and text past `max_string` characters is cut near a space and ends with `[REDACTED:oversize]`.
  A 1 MB string dense with sensitive `key: value` pairs can still take about a second.
- `extra_patterns` run on Python's backtracking `re`. Patterns with nested unbounded quantifiers
  such as `(a+)+` are refused at start-up and patterns only see 16 KiB windows of text, but a
  slow pattern can still stall the thread that logs: start each pattern with a literal prefix and
  keep its repetitions bounded.
"""

from __future__ import annotations

from launchready_sdk.redaction._redactor import DEFAULT_REDACTOR, Redactor, redact

__all__ = ["DEFAULT_REDACTOR", "Redactor", "redact"]
