"""`launchready probe` end to end: the real command against loopback targets and receivers.

Targets switch between up, 503, hang and refused; a webhook and a Slack receiver and an
aiosmtpd sink take the alerts; intervals are fractions of a second.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme

from launchready_sdk.cli import main
from launchready_sdk.cli.probe import SEND_BUDGET_S, Policy
from tests.probeservers import Probe, Receiver, SmtpSink, Target, settle

FAST = ["--interval", "0.3", "--retry-interval", "0.15", "--timeout", "0.5"]


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.stop()


@pytest.fixture
def hook() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def slack() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.stop()


@pytest.fixture
def probes(tmp_path: Path) -> Iterator[Any]:
    """Start probe subprocesses; each is killed at the end of the test."""
    started: list[Probe] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Probe:
        probe = Probe(list(args), tmp_path, env)
        started.append(probe)
        return probe

    yield start
    for probe in started:
        probe.kill()


def channels(hook: Receiver, slack: Receiver | None = None) -> list[str]:
    args = ["--webhook", f"{hook.url}/hook"]
    if slack is not None:
        args += ["--slack-webhook", f"{slack.url}/services/slack"]
    return args


def recorded_file(state: Path) -> bool:
    """Whether the state file records a delivered down alert."""
    try:
        incidents = json.loads(state.read_text())["incidents"]
    except (OSError, ValueError, KeyError):
        return False
    return any(incident["sent"]["down"] for incident in incidents.values())


def recorded_redis(url: str, prefix: str) -> bool:
    """Whether an incident under `prefix` records a delivered down alert."""
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}:probe:incident:*"):
            if client.type(key) == b"hash" and any(
                field.startswith(b"sent:down:") for field in client.hkeys(key)
            ):
                return True
        return False
    finally:
        client.close()


def failed_checks(probe: Probe, target: str) -> int:
    return sum(1 for line in probe.checks(target) if not line["ok"])


# -- the state machine, end to end ------------------------------------------------------------


def test_one_blip_sends_no_alert(probes: Any, target: Target, hook: Receiver) -> None:
    """One failed check followed by a passing re-check alerts nobody."""
    url = f"{target.url}/healthz"
    target.fail_next["/healthz"] = 1
    probe = probes(url, *FAST, *channels(hook))
    probe.wait_for(lambda: len(probe.checks(url)) >= 5, what="five checks")
    results = [line["ok"] for line in probe.checks(url)]
    assert results[:3] == [False, True, True]
    assert probe.checks(url)[1]["check"] == "retry"
    assert hook.posts == []
    assert probe.lines("probe.incident_opened") == []


def test_flapping_every_other_check_never_alerts(
    probes: Any, target: Target, hook: Receiver
) -> None:
    """A target failing every other check never fails twice in a row, so never alerts."""
    url = f"{target.url}/flap"
    target.set("flap", "/flap")
    probe = probes(url, *FAST, *channels(hook))
    probe.wait_for(lambda: failed_checks(probe, url) >= 4, what="four failures")
    assert hook.posts == []


def test_two_failures_send_one_down_to_every_channel(
    probes: Any, target: Target, hook: Receiver, slack: Receiver, smtp: SmtpSink
) -> None:
    """Two failures in a row send one down alert to the webhook, Slack and email."""
    url = f"{target.url}/healthz"
    target.set("503")
    probe = probes(
        url, *FAST, *channels(hook, slack), "--smtp-url", smtp.url, "--email-to", "ops@shop.test"
    )
    probe.wait_for(lambda: hook.posts and slack.posts and smtp.messages, what="alerts")
    probe.wait_for(lambda: failed_checks(probe, url) >= 8, what="more failed checks")
    assert len(hook.posts) == len(slack.posts) == len(smtp.messages) == 1
    down = hook.events()[0]
    assert set(down) == {"event", "target", "reason", "since", "failures"}
    assert down["event"] == "down"
    assert down["target"] == url
    assert down["reason"] == "HTTP 503, expected below 400"
    assert down["failures"] == 2
    assert down["since"].endswith("+00:00")
    first_failure = probe.checks(url)[0]["timestamp"]
    assert down["since"][:16] == first_failure[:16]  # the first failed check's minute
    headers = hook.posts[0]["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["x-launchready-event"] == "down"
    assert len(headers["idempotency-key"]) > 10
    text = slack.events()[0]["text"]
    assert set(slack.events()[0]) == {"text"}
    assert text.startswith("DOWN: ")
    assert url in text
    assert "HTTP 503" in text
    message = smtp.messages[0]
    assert message["Subject"].startswith("[launchready] DOWN ")
    assert message["To"] == "ops@shop.test"
    assert "HTTP 503" in message.get_payload()
    sent = probe.lines("probe.alert_sent")
    assert sorted(line["channel"].split()[0] for line in sent) == ["email", "slack", "webhook"]


def test_long_outage_one_down_then_one_up_with_duration(
    probes: Any, target: Target, hook: Receiver, slack: Receiver
) -> None:
    """A long outage sends one down; recovery sends one up with the outage's duration."""
    url = f"{target.url}/"
    target.set("503")
    probe = probes(url, *FAST, *channels(hook, slack))
    probe.wait_for(lambda: hook.posts, what="the down alert")
    down_at = time.monotonic()
    probe.wait_for(lambda: failed_checks(probe, url) >= 15, what="a long outage")
    assert len(hook.posts) == 1
    target.set("up")
    probe.wait_for(lambda: len(hook.posts) == 2, what="the up alert")
    up_at = time.monotonic()
    probe.wait_for(lambda: sum(line["ok"] for line in probe.checks(url)) >= 4, what="uptime")
    events = hook.events()
    assert [e["event"] for e in events] == ["down", "up"]
    up = events[1]
    assert set(up) == {"event", "target", "reason", "since", "failures", "duration_s"}
    assert up["since"] == events[0]["since"]
    assert up["reason"] == events[0]["reason"]
    assert up["failures"] >= 15
    assert up["duration_s"] >= up_at - down_at - 0.5
    assert [e["text"][:3] for e in slack.events()] == ["DOW", "UP:"]


def test_restart_mid_incident_sends_no_second_down_file_state(
    probes: Any, target: Target, hook: Receiver, tmp_path: Path
) -> None:
    """A probe killed mid-incident and restarted on the same --state sends no second down."""
    url = f"{target.url}/healthz"
    state = tmp_path / "probe-state.json"
    target.set("hang")
    first = probes(url, *FAST, "--state", str(state), *channels(hook))
    first.wait_for(lambda: hook.posts, timeout=30, what="the down alert")
    first.wait_for(lambda: recorded_file(state), what="the delivery recorded")
    first.kill()  # SIGKILL: no clean shutdown
    second = probes(url, *FAST, "--state", str(state), *channels(hook))
    second.wait_for(lambda: second.lines("probe.incident_resumed"), what="the resumed incident")
    second.wait_for(lambda: failed_checks(second, url) >= 3, what="failed checks after restart")
    assert len(hook.posts) == 1
    target.set("up")
    second.wait_for(lambda: len(hook.posts) == 2, what="the up alert")
    down, up = hook.events()
    assert up["event"] == "up"
    assert up["since"] == down["since"]
    settle(0.5)
    assert len(hook.posts) == 2
    assert os.stat(state).st_mode & 0o777 == 0o600


def test_restart_mid_incident_sends_no_second_down_redis_state(
    probes: Any, target: Target, hook: Receiver, redis_url: str, redis_prefix: str
) -> None:
    """The same through the SDK's Redis (LAUNCHREADY_REDIS_URL), under a per-test prefix."""
    url = f"{target.url}/healthz"
    env = {"LAUNCHREADY_REDIS_URL": redis_url, "LAUNCHREADY_REDIS_PREFIX": redis_prefix}
    target.set("503")
    first = probes(url, *FAST, *channels(hook), env=env)
    first.wait_for(lambda: hook.posts, what="the down alert")
    first.wait_for(lambda: recorded_redis(redis_url, redis_prefix), what="the delivery recorded")
    assert redis_prefix in first.lines("probe.started")[0]["state"]
    first.kill()
    second = probes(url, *FAST, *channels(hook), env=env)
    second.wait_for(lambda: failed_checks(second, url) >= 4, what="failed checks after restart")
    assert second.lines("probe.incident_resumed")
    assert len(hook.posts) == 1
    target.set("up")
    second.wait_for(lambda: len(hook.posts) == 2, what="the up alert")
    assert [e["event"] for e in hook.events()] == ["down", "up"]


def test_two_probe_processes_share_one_incident_through_redis(
    probes: Any, target: Target, hook: Receiver, redis_url: str, redis_prefix: str
) -> None:
    """Two probes checking the same target through one Redis send one down and one up."""
    url = f"{target.url}/healthz"
    env = {"LAUNCHREADY_REDIS_URL": redis_url, "LAUNCHREADY_REDIS_PREFIX": redis_prefix}
    target.set("503")
    one = probes(url, *FAST, *channels(hook), env=env)
    two = probes(url, *FAST, *channels(hook), env=env)
    for probe in (one, two):
        probe.wait_for(lambda p=probe: failed_checks(p, url) >= 6, what="failed checks")
    assert [e["event"] for e in hook.events()] == ["down"]
    target.set("up")
    one.wait_for(lambda: len(hook.posts) >= 2, what="the up alert")
    for probe in (one, two):
        probe.wait_for(lambda p=probe: sum(c["ok"] for c in p.checks(url)) >= 3, what="uptime")
    assert [e["event"] for e in hook.events()] == ["down", "up"]
    for probe in (one, two):
        assert probe.lines("probe.alert_abandoned") == []
        assert probe.lines("probe.internal_error") == []


def test_redis_outage_still_alerts(
    probes: Any, target: Target, hook: Receiver, private_redis: Any, redis_prefix: str
) -> None:
    """With its Redis dead the probe alerts on its own view: one down, one up, logged."""
    url = f"{target.url}/healthz"
    env = {"LAUNCHREADY_REDIS_URL": private_redis.url, "LAUNCHREADY_REDIS_PREFIX": redis_prefix}
    probe = probes(url, *FAST, *channels(hook), env=env)
    probe.wait_for(lambda: len(probe.checks(url)) >= 2, what="checks")
    private_redis.kill()
    target.set("503")
    probe.wait_for(lambda: hook.posts, what="the down alert")
    probe.wait_for(lambda: failed_checks(probe, url) >= 6, what="more failed checks")
    target.set("up")
    probe.wait_for(lambda: len(hook.posts) == 2, what="the up alert")
    assert [e["event"] for e in hook.events()] == ["down", "up"]
    steps = {line["step"] for line in probe.lines("probe.state_unavailable")}
    assert {"open", "close"} <= steps
    assert probe.lines("probe.internal_error") == []


def test_canary_down_pages_nobody(probes: Any, target: Target, hook: Receiver) -> None:
    """When the canary fails too the probe is blind: no alert until the canary answers."""
    canary = Target()
    try:
        url = f"{target.url}/healthz"
        target.set("refused")
        canary.set("refused")
        probe = probes(url, *FAST, "--canary", f"{canary.url}/", *channels(hook))
        probe.wait_for(lambda: failed_checks(probe, url) >= 6, what="blind checks")
        assert hook.posts == []
        blind = [line for line in probe.checks(url) if line.get("blind")]
        assert len(blind) >= 5
        assert "the canary failed too" in blind[0]["reason"]
        assert len(probe.lines("probe.blind")) == 1
        canary.set("up")
        probe.wait_for(lambda: hook.posts, what="the down alert once the canary answers")
        assert probe.lines("probe.sighted")
        assert hook.events()[0]["reason"] == "connection refused"
    finally:
        canary.stop()


def test_several_targets_are_named_correctly(
    probes: Any, target: Target, hook: Receiver, slack: Receiver, tmp_path: Path
) -> None:
    """Targets from a TOML file alert under their own URL, name and reason."""
    targets = tmp_path / "targets.toml"
    targets.write_text(
        f"""
[[target]]
name = "home"
url = "{target.url}/"
text = "Sign in"

[[target]]
name = "login"
url = "{target.url}/login"
status = 200

[[target]]
name = "health"
url = "{target.url}/healthz"
""",
        encoding="utf-8",
    )
    target.set("503", "/login")
    target.set("hang", "/healthz")
    probe = probes("--targets", str(targets), *FAST, *channels(hook, slack))
    probe.wait_for(lambda: len(hook.posts) >= 2, what="two down alerts")
    probe.wait_for(lambda: len(probe.checks("home")) >= 6, what="more checks")
    by_target = {e["target"]: e for e in hook.events()}
    assert set(by_target) == {f"{target.url}/login", f"{target.url}/healthz"}
    assert by_target[f"{target.url}/login"]["reason"] == "HTTP 503, expected 200"
    assert by_target[f"{target.url}/healthz"]["reason"] == "no answer within 0.5 s"
    texts = sorted(e["text"] for e in slack.events())
    assert texts[0].startswith(f"DOWN: health ({target.url}/healthz)")
    assert texts[1].startswith(f"DOWN: login ({target.url}/login)")
    assert all(line["ok"] for line in probe.checks("home"))


def test_detection_time_is_within_its_bound(probes: Any, target: Target, hook: Receiver) -> None:
    """A hanging target's down alert arrives within I + T + R + T + send, as documented."""
    interval, retry, timeout = 1.0, 0.3, 0.4
    url = f"{target.url}/healthz"
    args = ["--interval", str(interval), "--retry-interval", str(retry), "--timeout", str(timeout)]
    probe = probes(url, *args, *channels(hook))
    probe.wait_for(lambda: probe.checks(url), what="a first passing check")
    target.set("hang")  # just after a passing check: the worst case
    outage_at = time.monotonic()
    probe.wait_for(lambda: hook.posts, what="the down alert")
    delay = hook.posts[0]["at"] - outage_at
    policy = Policy(interval, retry, timeout)
    assert policy.worst_case_alert_s(0.0) == pytest.approx(2.1)
    assert delay <= policy.worst_case_alert_s(SEND_BUDGET_S)
    assert delay >= retry + 2 * timeout  # both checks hung for their whole timeout
    logged = probe.lines("probe.started")[0]["worst_case_alert_s"]
    assert logged == pytest.approx(policy.worst_case_alert_s(SEND_BUDGET_S), abs=0.1)
    print(f"detection: {delay:.2f} s (bound {policy.worst_case_alert_s(0.0):.2f} s + send)")


def test_defaults_promise_an_alert_within_two_minutes(probes: Any, target: Target) -> None:
    """With the default options the logged worst case is 114 s, under 120 s."""
    probe = probes(f"{target.url}/", "--once")
    assert probe.wait() == 0
    started = probe.lines("probe.started")[0]
    assert started["worst_case_alert_s"] == 114.0
    assert (started["interval_s"], started["retry_interval_s"], started["timeout_s"]) == (
        60.0,
        15.0,
        10.0,
    )
    assert probe.lines("probe.detection_slow") == []


def test_slow_settings_are_warned_about(probes: Any, target: Target) -> None:
    """Options whose worst case exceeds 120 s get a warning with the formula."""
    probe = probes(f"{target.url}/", "--once", "--retry-interval", "60")
    assert probe.wait() == 0
    warning = probe.lines("probe.detection_slow")[0]
    assert warning["worst_case_alert_s"] == 159.0
    assert "retry_interval" in warning["formula"]


# -- --once -----------------------------------------------------------------------------------


def test_once_exit_status(probes: Any, target: Target) -> None:
    """--once exits 0 when every target is up, 1 when one is down, naming it."""
    up = probes(f"{target.url}/", f"{target.url}/healthz", "--once", *FAST)
    assert up.wait() == 0
    assert up.lines("probe.summary")[0]["passed"] is True
    target.set("503", "/healthz")
    down = probes(f"{target.url}/", f"{target.url}/healthz", "--once", *FAST)
    assert down.wait() == 1
    summary = down.lines("probe.summary")[0]
    assert summary["down"] == [f"{target.url}/healthz"]
    assert summary["up"] == [f"{target.url}/"]
    assert len(down.checks(f"{target.url}/healthz")) == 2  # the check and its retry


def test_once_from_cron_alerts_once_per_incident(
    probes: Any, target: Target, hook: Receiver, tmp_path: Path
) -> None:
    """Repeated --once runs sharing --state send one down, then one up."""
    state = str(tmp_path / "state.json")
    url = f"{target.url}/healthz"
    target.set("503")
    for _ in range(3):
        assert probes(url, "--once", *FAST, "--state", state, *channels(hook)).wait() == 1
    assert [e["event"] for e in hook.events()] == ["down"]
    target.set("up")
    for _ in range(2):
        assert probes(url, "--once", *FAST, "--state", state, *channels(hook)).wait() == 0
    assert [e["event"] for e in hook.events()] == ["down", "up"]


# -- bad targets at run time -------------------------------------------------------------------


def test_redirect_loop_is_a_failure(probes: Any, target: Target) -> None:
    """A target that redirects forever fails with a clear reason after 5 redirects."""
    target.set("loop")
    probe = probes(f"{target.url}/loop", "--once", *FAST)
    assert probe.wait() == 1
    assert probe.checks()[0]["reason"] == "more than 5 redirects (a redirect loop?)"
    assert target.hits["/loop"] == 12  # two checks, each the request and 5 redirects


def test_ten_megabyte_body_is_not_read_whole(probes: Any, target: Target, tmp_path: Path) -> None:
    """Text is searched in the first 1 MiB only (the needle at the 10 MB body's end is never
    reached); a status-only check passes without reading the body."""
    target.set("big")
    targets = tmp_path / "t.toml"
    targets.write_text(f'[[target]]\nurl = "{target.url}/big"\ntext = "needle"\n')
    probe = probes("--targets", str(targets), "--once", *FAST, "--timeout", "5")
    assert probe.wait() == 1
    assert probe.checks()[0]["reason"] == "expected text not in the first 1 MiB of the body"
    status_only = probes(f"{target.url}/big", "--once", *FAST, "--timeout", "5")
    assert status_only.wait() == 0


def test_compressed_bodies_are_searched_within_the_bound(
    probes: Any, target: Target, tmp_path: Path
) -> None:
    """Text is found in a gzip body; a gzip bomb is inflated only to 1 MiB."""
    target.set("gzip", "/gzip")
    target.set("bomb", "/bomb")
    targets = tmp_path / "t.toml"
    targets.write_text(
        f'[[target]]\nurl = "{target.url}/gzip"\ntext = "Sign in"\n'
        f'[[target]]\nurl = "{target.url}/bomb"\ntext = "needle"\n'
    )
    probe = probes("--targets", str(targets), "--once", *FAST)
    assert probe.wait() == 1
    reasons = {line["target"]: line.get("reason") for line in probe.checks()}
    assert reasons[f"{target.url}/gzip"] is None
    assert reasons[f"{target.url}/bomb"] == "expected text not in the first 1 MiB of the body"


def test_target_options_from_toml_are_applied(probes: Any, target: Target, tmp_path: Path) -> None:
    """Method, body, accepted statuses, redirects left unfollowed and a latency limit."""
    target.set("echo", "/echo")
    target.set("slow", "/slow")
    target.set("loop", "/moved")
    targets = tmp_path / "t.toml"
    targets.write_text(
        f"""
[[target]]
name = "post"
url = "{target.url}/echo"
method = "POST"
body = "ping=1"
text = "POST ping=1"

[[target]]
name = "moved"
url = "{target.url}/moved"
status = [301, 302]
follow_redirects = false

[[target]]
name = "slow"
url = "{target.url}/slow"
max_latency_ms = 100
""",
        encoding="utf-8",
    )
    probe = probes("--targets", str(targets), "--once", *FAST)
    assert probe.wait() == 1
    last = {line["target"]: line for line in probe.checks()}
    assert last["post"]["ok"]
    assert last["moved"]["ok"]
    assert last["moved"]["status"] == 302
    assert last["slow"]["reason"].startswith("slow: ")
    assert last["slow"]["reason"].endswith("ms, over 100 ms")
    assert probe.lines("probe.summary")[0]["down"] == ["slow"]


def test_tls_errors_are_failures_and_ca_file_fixes_them(probes: Any, tmp_path: Path) -> None:
    """An untrusted certificate fails the check as TLS; --ca-file makes it pass."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = Target(tls=context)
    try:
        url = f"{server.url}/"
        bad = probes(url, "--once", *FAST)
        assert bad.wait() == 1
        assert bad.checks()[0]["reason"].startswith("TLS: ")
        assert "certificate" in bad.checks()[0]["reason"]
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        good = probes(url, "--once", *FAST, "--ca-file", str(ca_file))
        assert good.wait() == 0
    finally:
        server.stop()


def test_refused_hang_and_503_each_say_why(probes: Any, target: Target) -> None:
    """Connection refused, a hang and a 503 are three distinct reasons."""
    other = Target()
    other.set("refused")
    try:
        target.set("hang", "/hang")
        target.set("503", "/busy")
        urls = [f"{other.url}/", f"{target.url}/hang", f"{target.url}/busy"]
        probe = probes(*urls, "--once", *FAST)
        assert probe.wait() == 1
        reasons = {line["target"]: line["reason"] for line in probe.checks()}
        assert reasons == {
            urls[0]: "connection refused",
            urls[1]: "no answer within 0.5 s",
            urls[2]: "HTTP 503, expected below 400",
        }
    finally:
        other.stop()


def test_probes_the_sdk_healthz_under_uvicorn(probes: Any, serve: Any) -> None:
    """The probe's other end: an app on the SDK, its /healthz under real uvicorn."""
    app = serve("tests.apps.basic:app")
    probe = probes(f"{app.url}/healthz", f"{app.url}/readyz", "--once", *FAST)
    assert probe.wait() == 0
    assert {line["status"] for line in probe.checks()} == {200}


# -- channels ---------------------------------------------------------------------------------


def test_hanging_webhook_silences_no_other_channel(
    probes: Any, target: Target, slack: Receiver, smtp: SmtpSink
) -> None:
    """A webhook that never answers is retried and logged; Slack and email still get the
    alert at once."""
    hanging = Receiver(mode="hang")
    try:
        target.set("503")
        probe = probes(
            f"{target.url}/",
            *FAST,
            "--webhook",
            f"{hanging.url}/hook",
            "--slack-webhook",
            f"{slack.url}/s",
            "--smtp-url",
            smtp.url,
            "--email-to",
            "ops@shop.test",
        )
        probe.wait_for(lambda: slack.posts and smtp.messages, what="Slack and email")
        first_attempt = hanging.posts[0]["at"] if hanging.posts else None
        assert first_attempt is not None
        assert slack.posts[0]["at"] - first_attempt < 3.0  # not after the webhook's 5 s try
        probe.wait_for(
            lambda: probe.lines("probe.alert_undelivered"), timeout=40, what="the give-up"
        )
        failures = probe.lines("probe.alert_failed")
        assert [f["attempt"] for f in failures[:3]] == [1, 2, 3]
        assert failures[0]["error"] == "no answer within 5 s"
        assert failures[0]["channel"] == f"webhook 127.0.0.1:{hanging.server.port}"
        keys = {post["headers"]["idempotency-key"] for post in hanging.posts}
        assert len(keys) == 1  # every try of the alert carries the same key
        assert len(slack.posts) == len(smtp.messages) == 1
    finally:
        hanging.stop()


def test_failing_webhook_is_retried_at_the_next_check(
    probes: Any, target: Target, slack: Receiver
) -> None:
    """A webhook answering 500 gets the down again at later checks; Slack gets it once."""
    broken = Receiver(mode="500")
    try:
        target.set("503")
        probe = probes(
            f"{target.url}/",
            *FAST,
            "--webhook",
            f"{broken.url}/h",
            "--slack-webhook",
            f"{slack.url}/s",
        )
        probe.wait_for(lambda: len(broken.posts) >= 6, timeout=30, what="retries")
        broken.mode = "ok"
        probe.wait_for(lambda: broken.posts[-1]["at"] < time.monotonic() - 1.0, what="quiet")
        assert len(slack.posts) == 1
        assert {p["json"]["event"] for p in broken.posts} == {"down"}
        assert len(probe.lines("probe.alert_sent")) == 2  # Slack, then the webhook once
    finally:
        broken.stop()


def test_up_goes_only_where_the_down_went(probes: Any, target: Target, slack: Receiver) -> None:
    """A channel that never got the down gets no up; the one that did gets both."""
    broken = Receiver(mode="500")
    try:
        target.set("503")
        probe = probes(
            f"{target.url}/",
            *FAST,
            "--webhook",
            f"{broken.url}/h",
            "--slack-webhook",
            f"{slack.url}/s",
        )
        probe.wait_for(lambda: slack.posts and len(broken.posts) >= 3, what="the down")
        target.set("up")
        probe.wait_for(lambda: len(slack.posts) == 2, what="the up on Slack")
        settle(0.5)
        assert {post["json"]["event"] for post in broken.posts} == {"down"}
        assert [e["text"][:3] for e in slack.events()] == ["DOW", "UP:"]
    finally:
        broken.stop()


def test_restart_before_the_up_got_out_still_sends_it(
    probes: Any, target: Target, hook: Receiver, tmp_path: Path
) -> None:
    """Killed after closing the incident but before its up was delivered, the next run
    sends the up (with the same Idempotency-Key as the try that hung)."""
    state = tmp_path / "state.json"
    url = f"{target.url}/healthz"
    target.set("503")
    first = probes(url, *FAST, "--state", str(state), *channels(hook))
    first.wait_for(lambda: recorded_file(state), what="the down recorded")
    hook.mode = "hang"
    target.set("up")
    first.wait_for(lambda: len(hook.posts) == 2, what="the up being tried")
    first.wait_for(lambda: '"closed": null' not in state.read_text(), what="the close saved")
    first.kill()
    hook.mode = "ok"
    second = probes(url, *FAST, "--state", str(state), *channels(hook))
    second.wait_for(lambda: len(hook.posts) == 3, what="the up, again")
    second.wait_for(
        lambda: "incidents" in state.read_text() and "sent" not in state.read_text(),
        what="the incident forgotten",
    )
    events = [post["json"]["event"] for post in hook.posts]
    assert events == ["down", "up", "up"]
    keys = [post["headers"]["idempotency-key"] for post in hook.posts]
    assert keys[1] == keys[2] != keys[0]
    settle(0.5)
    assert len(hook.posts) == 3


def test_signed_webhook(probes: Any, target: Target, hook: Receiver) -> None:
    """With LAUNCHREADY_PROBE_WEBHOOK_SECRET the body carries a verifiable HMAC signature."""
    target.set("503")
    secret = "whsec-test-0123456789abcdef"
    probe = probes(
        f"{target.url}/", *FAST, *channels(hook), env={"LAUNCHREADY_PROBE_WEBHOOK_SECRET": secret}
    )
    probe.wait_for(lambda: hook.posts, what="the down alert")
    post = hook.posts[0]
    fields = dict(
        part.split("=", 1) for part in post["headers"]["x-launchready-signature"].split(",")
    )
    expected = hmac.new(
        secret.encode(), fields["t"].encode() + b"." + post["raw"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert secret not in probe.raw()


def test_channel_urls_and_secrets_never_reach_the_log(
    probes: Any, target: Target, tmp_path: Path
) -> None:
    """A webhook URL with a token, and ${VAR} secrets in a target, never appear in the log."""
    broken = Receiver(mode="500")
    try:
        targets = tmp_path / "t.toml"
        targets.write_text(
            f"""
[[target]]
name = "account"
url = "{target.url}/account?api_key=${{PROBE_KEY}}"
headers = {{ Authorization = "Bearer ${{PROBE_TOKEN}}" }}
""",
            encoding="utf-8",
        )
        target.set("503")
        webhook = f"{broken.url}/hooks/T0KENabcdef123456?token=s3cr3tvalue99"
        probe = probes(
            "--targets",
            str(targets),
            *FAST,
            "--webhook",
            webhook,
            env={"PROBE_KEY": "key-9f8e7d6c5b4a", "PROBE_TOKEN": "tok-1a2b3c4d5e6f"},
        )
        probe.wait_for(lambda: len(broken.posts) >= 3, what="failed deliveries")
        assert target.requests[0]["path"] == "/account?api_key=key-9f8e7d6c5b4a"
        assert target.requests[0]["authorization"] == "Bearer tok-1a2b3c4d5e6f"
        log = probe.raw()
        for secret in (
            "T0KENabcdef123456",
            "s3cr3tvalue99",
            "key-9f8e7d6c5b4a",
            "tok-1a2b3c4d5e6f",
        ):
            assert secret not in log
        assert "/account?api_key=[REDACTED:api_key]" in log  # as written, then redacted
    finally:
        broken.stop()


def test_heartbeat_is_pinged_every_interval(probes: Any, target: Target, hook: Receiver) -> None:
    """--heartbeat gets a GET every interval while the probe runs."""
    probe = probes(f"{target.url}/", *FAST, "--heartbeat", f"{hook.url}/beat/abc")
    probe.wait_for(lambda: len(hook.gets) >= 3, what="heartbeats")
    assert set(hook.gets) == {"/beat/abc"}


# -- state files ------------------------------------------------------------------------------


def test_corrupt_state_file_is_set_aside(
    probes: Any, target: Target, hook: Receiver, tmp_path: Path
) -> None:
    """A state file that does not parse is moved aside with an error line; probing goes on."""
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "incidents": {"x": [1, 2')
    target.set("503")
    probe = probes(f"{target.url}/", *FAST, "--state", str(state), *channels(hook))
    probe.wait_for(lambda: hook.posts, what="the down alert")
    corrupt = probe.lines("probe.state_corrupt")
    assert len(corrupt) == 1
    assert Path(corrupt[0]["moved_to"]).read_text().startswith('{"version": 1')
    assert '"incidents"' in state.read_text()  # rewritten, valid again


def test_state_write_failure_at_run_time_is_logged_not_fatal(
    probes: Any, target: Target, hook: Receiver, tmp_path: Path
) -> None:
    """A state file that cannot be replaced any more is logged; the alert still goes, once."""
    state = tmp_path / "state.json"
    probe = probes(f"{target.url}/", *FAST, "--state", str(state), *channels(hook))
    probe.wait_for(lambda: probe.checks(), what="a first check")
    state.unlink(missing_ok=True)
    state.mkdir()
    (state / "blocker").write_text("x")  # os.replace onto a non-empty directory fails
    target.set("503")
    probe.wait_for(lambda: hook.posts, what="the down alert")
    probe.wait_for(lambda: failed_checks(probe, f"{target.url}/") >= 6, what="more checks")
    assert probe.lines("probe.state_write_failed")
    assert len(hook.posts) == 1
    assert probe.proc.poll() is None


def test_sigterm_stops_cleanly(probes: Any, target: Target, tmp_path: Path) -> None:
    """SIGTERM ends the probe with status 0 and a last line."""
    probe = probes(f"{target.url}/", *FAST, "--state", str(tmp_path / "s.json"))
    probe.wait_for(lambda: probe.checks(), what="a check")
    assert probe.terminate() == 0
    assert probe.lines("probe.stopped")


# -- start-up errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://shop.test/"], "the scheme must be http or https"),
        (["http:///healthz"], "no host"),
        (["http://127.0.0.1:99999/"], "Port"),
        (["http://shop .test/"], "whitespace"),
        (["https://shop.test/", "https://shop.test/"], "two targets are named"),
        ([], "give at least one URL"),
        (["https://shop.test/", "--email-to", "ops@shop.test"], "--email-to needs --smtp-url"),
        (["https://shop.test/", "--smtp-url", "smtp://mail.test"], "needs at least one"),
        (["https://shop.test/", "--canary", "nope"], "--canary"),
        (["https://shop.test/", "--interval", "0"], "is not a number of seconds"),
        (["https://shop.test/", "--failures", "0"], "is not a whole number"),
    ],
)
def test_bad_options_fail_at_start(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad URLs and options stop the probe at start-up with status 2 and a clear reason."""
    try:
        status = main(["probe", *args])
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    assert status == 2
    assert message in capsys.readouterr().err


def test_webhook_url_is_not_echoed_in_its_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed webhook URL is refused without printing it (it may hold a token)."""
    status = main(["probe", "https://shop.test/", "--webhook", "hooks.test/x?token=TOPSECRET1"])
    err = capsys.readouterr().err
    assert status == 2
    assert "--webhook" in err
    assert "TOPSECRET1" not in err


def test_targets_file_errors_name_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo, a missing variable or a duplicate request in the TOML names file and line."""
    path = tmp_path / "t.toml"
    cases = [
        ('[[target]]\nurl = "https://shop.test/"\nstatuss = 200\n', f"{path}:3", "statuss"),
        ('[[target]]\nurl = "https://shop.test/?k=${NOPE_UNSET}"\n', f"{path}:2", "NOPE_UNSET"),
        (
            '[[target]]\nname = "a"\nurl = "https://shop.test/"\n'
            '[[target]]\nname = "b"\nurl = "https://shop.test/"\n',
            "send the same request",
            "'a' and 'b'",
        ),
        ('[[target]]\nurl = "https://shop.test/"\nmethod = "FETCH"\n', f"{path}:3", "method"),
        ("[[target]\n", "not valid TOML", str(path)),
        ('target = ["https://shop.test/"]\n', "no [[target]] tables", str(path)),
    ]
    for text, where, what in cases:
        path.write_text(text)
        assert main(["probe", "--targets", str(path)]) == 2
        err = capsys.readouterr().err
        assert where in err
        assert what in err


def test_unwritable_state_fails_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --state that cannot be written is a start-up error, not a crash later."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    status = main(["probe", "https://shop.test/", "--state", str(blocker / "state.json")])
    assert status == 2
    assert "cannot write the state" in capsys.readouterr().err


def test_state_in_use_by_another_probe_fails_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two probes cannot share one state file: the second stops with status 2."""
    state = tmp_path / "state.json"
    fd = os.open(f"{state}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        status = main(["probe", "https://shop.test/", "--state", str(state)])
    finally:
        os.close(fd)
    assert status == 2
    assert "another launchready probe is using" in capsys.readouterr().err
