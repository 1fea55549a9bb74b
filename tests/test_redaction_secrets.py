"""`find_secrets`: the redactor's catalogue as a scanner, with its false-positive filters."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from launchready_sdk.redaction import redact
from launchready_sdk.redaction import secrets as scanner
from launchready_sdk.redaction.secrets import find_secrets, preview, secret_like

RNG = random.Random(7)
ALNUM = string.ascii_letters + string.digits


def rand(alphabet: str, n: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


# One realistic sample per provider rule of the redactor; made at run time.
SAMPLES = {
    "stripe_key": "sk_live_" + rand(ALNUM, 24),
    "stripe_webhook_secret": "whsec_" + rand(ALNUM, 32),
    "stripe_client_secret": "pi_" + rand(ALNUM, 14) + "_secret_" + rand(ALNUM, 20),
    "github_token": "ghp_" + rand(ALNUM, 36),
    "npm_token": "npm_" + rand(ALNUM, 36),
    "gitlab_token": "glpat-" + rand(ALNUM, 20),
    "slack_token": "xoxb-" + rand(string.digits, 11) + "-" + rand(ALNUM, 24),
    "anthropic_key": "sk-ant-api03-" + rand(ALNUM, 40),
    "openai_key": "sk-proj-" + rand(ALNUM, 40) + "7",
    "pypi_token": "pypi-AgEIcHlwaS5vcmc" + rand(ALNUM, 40),
    "aws_access_key": "AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
    "google_api_key": "AIza" + rand(ALNUM, 35),
    "sendgrid_key": "SG." + rand(ALNUM, 22) + "." + rand(ALNUM, 43),
    "twilio_key": "SK" + rand("0123456789abcdef", 32),
    "slack_webhook": "hooks.slack.com/services/T" + rand(ALNUM, 8) + "/B" + rand(ALNUM, 10),
}


def test_every_redactor_token_rule_is_a_scanner_rule() -> None:
    """The scanner drives off the redactor's own table: each of its rules finds its sample."""
    rules = {rule.rule for rule in scanner._TOKEN_RULES}
    assert rules == set(SAMPLES)
    for rule, sample in SAMPLES.items():
        text = f'config = {{"x": "{sample}"}}\n'
        found = find_secrets(text)
        assert [(m.rule, text[m.start : m.end]) for m in found] == [(rule, sample)], rule


def test_shapes_pem_jwt_url_and_bearer() -> None:
    """Private keys, JWTs, URL passwords and Bearer credentials are found by shape."""
    pem = "-----BEGIN EC PRIVATE KEY-----\n" + rand(ALNUM, 64) + "\n-----END EC PRIVATE KEY-----"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0." + rand(ALNUM, 43)
    password = rand(ALNUM, 14)
    bearer = rand(ALNUM, 30)
    text = (
        f"{pem}\nTOKEN={jwt}\nurl = 'postgres://app:{password}@db.internal/shop'\n"
        f"curl -H 'Authorization: Bearer {bearer}'\n"
    )
    found = {(m.rule, text[m.start : m.end]) for m in find_secrets(text)}
    assert found == {
        ("private_key", pem),
        ("jwt", jwt),
        ("password", password),
        ("bearer", bearer),
    }


def test_assignments_to_secret_names() -> None:
    """`NAME = "value"`, annotated, `:=`, dotenv and JSON pairs under secret names."""
    values = [rand(ALNUM, 20) for _ in range(5)]
    text = (
        f'DB_PASSWORD = "{values[0]}"\n'
        f'api_key: str = "{values[1]}"\n'
        f'clientSecret := "{values[2]}"\n'
        f"STRIPE_SECRET={values[3]}\n"
        f'{{"auth_token": "{values[4]}"}}\n'
    )
    found = [(m.rule, text[m.start : m.end]) for m in find_secrets(text)]
    assert found == [
        ("password", values[0]),
        ("api_key", values[1]),
        ("secret", values[2]),
        ("secret", values[3]),
        ("authorization", values[4]),
    ]


@pytest.mark.parametrize(
    "line",
    [
        'AWS = "AKIAIOSFODNN7EXAMPLE"',
        'stripe = "sk_test_xxxxxxxxxxxxxxxxxxxxxxxx"',
        'token = "sk_live_1234567890abcdefghij"',
        'password = request.form["password"]',
        "token = get_token()",
        'SECRET_KEY = os.environ["SECRET_KEY"]',
        'password = "changeme"',
        'API_KEY = "<your-api-key>"',
        'secret = "${SECRET}"',
        'headers = {"Authorization": f"Bearer {token}"}',
        'public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"',
        'client_id = "8f3a2b1c9d7e6f5a4b3c"',
        'monkey = "Qw8rT5yU2iO9pA3sD6fG"',
        'keyword = "Qw8rT5yU2iO9pA3sD6fG"',
        'password = "correct horse battery"',
        'password = "hunter2-login"',
        'api_key = "3f2b6c1e-9a4d-4c1e-8f2b-6c1e9a4d4c1e"',
        '"/token": "20/minute;200/hour"',
        'session_id = "Qw8rT5yU2iO9pA3sD6fG"',
        'signature = "t=1700000000,v1=Qw8rT5yU2iO9pA3sD6fG"',
        'secret = "pbkdf2_sha256$600000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"',
        "DATABASE_URL=postgres://postgres:postgres@localhost/test",
        "label: `clientSecret`",
        'password = "{env:SHOP_DEMO_PASSWORD:demo-password-123}"',
        'form = {"data": {"password": SECRET_PW}}',
        'x.write_text("DATABASE_URL=\\n# SECRET_KEY=\\nOLD_FLAG=1\\n")',
    ],
)
def test_false_positives_are_filtered(line: str) -> None:
    """Placeholders, code, identifiers, prose, UUIDs, rates, hashes and dev defaults pass."""
    assert find_secrets(line) == []


def test_secret_like() -> None:
    """A generated value passes; short, uniform or wordy ones do not."""
    assert secret_like("Zx9!kq2LmP7w")
    assert not secret_like("aaaaaaaaaaaa")
    assert not secret_like("short1!")
    assert not secret_like("abcdefgh12")


def test_preview_shows_at_most_a_fifth() -> None:
    """A preview holds at most 4 characters and a fifth of the secret, plus its length."""
    assert preview("sk_live_" + "a" * 24) == "sk_l… (32 chars)"
    assert preview("hunter2") == "h… (7 chars)"
    assert preview("abc") == "… (3 chars)"


@given(
    before=st.text(alphabet=string.ascii_letters + " .,:;()\n", max_size=40),
    after=st.text(alphabet=string.ascii_letters + " .,:;()\n", max_size=40),
    rule=st.sampled_from(sorted(SAMPLES)),
)
def test_scanner_and_redactor_agree(before: str, after: str, rule: str) -> None:
    """Wherever the scanner finds a provider token, the redactor hides it, and vice versa."""
    sample = SAMPLES[rule]
    text = f"{before} {sample} {after}"
    found = [text[m.start : m.end] for m in find_secrets(text)]
    redacted = redact(text)
    assert isinstance(redacted, str)
    assert sample in found
    assert sample not in redacted
