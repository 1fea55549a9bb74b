"""`launchready audit` against loopback servers: DNS and e-mail through a dnslib zone, TLS
with trustme certificates, redirects, webhooks, headers, CORS and slow routes."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from auditnet import Zone, dns_server, hanging_tls_server, http_server, silent_dns
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from launchready_sdk.cli import main

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def run_audit(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> dict[str, Any]:
    json_path, md_path = tmp_path / "audit.json", tmp_path / "audit.md"
    started = time.monotonic()
    status = main(["audit", *args, "--json", str(json_path), "--markdown", str(md_path)])
    out, err = capsys.readouterr()
    report = json.loads(json_path.read_text())
    return {
        "status": status,
        "out": " ".join(out.split()),
        "err": err,
        "report": report,
        "markdown": md_path.read_text(),
        "seconds": time.monotonic() - started,
        "found": {(f["id"], f["severity"]) for f in report["findings"]},
    }


def titles(run: dict[str, Any], finding_id: str) -> list[str]:
    return [f["title"] for f in run["report"]["findings"] if f["id"] == finding_id]


def dkim_key(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def includes(n: int) -> str:
    return "v=spf1 " + " ".join(f"include:i{i}.inc.test" for i in range(n)) + " -all"


def mail_zone() -> Zone:
    """Domains, each with one e-mail trait; every include target has its own SPF record."""
    zone: Zone = {f"i{i}.inc.test": [("TXT", f"v=spf1 ip4:192.0.2.{i} -all")] for i in range(12)}
    base = [("A", "127.0.0.1"), ("MX", "mx.good.test")]
    zone.update(
        {
            "mx.good.test": [("A", "127.0.0.1")],
            "good.test": [*base, ("TXT", includes(10))],
            "www.good.test": [("A", "127.0.0.1")],
            "_dmarc.good.test": [("TXT", "v=DMARC1; p=reject; rua=mailto:d@good.test")],
            "s1._domainkey.good.test": [("TXT", f"v=DKIM1; k=rsa; p={dkim_key(2048)}")],
            "old._domainkey.good.test": [("TXT", f"v=DKIM1; k=rsa; p={dkim_key(1024)}")],
            "gone._domainkey.good.test": [("TXT", "v=DKIM1; k=rsa; p=")],
            "over.test": [*base, ("TXT", includes(11))],
            "_dmarc.over.test": [("TXT", "v=DMARC1; p=reject")],
            "two.test": [*base, ("TXT", "v=spf1 -all"), ("TXT", "v=spf1 ip4:192.0.2.1 -all")],
            "_dmarc.two.test": [("TXT", "v=DMARC1; p=reject")],
            "monitor.test": [*base, ("TXT", "v=spf1 ip4:192.0.2.1 -all")],
            "_dmarc.monitor.test": [("TXT", "v=DMARC1; p=none")],
            "open.test": [*base, ("TXT", "v=spf1 +all")],
            "_dmarc.open.test": [("TXT", "v=DMARC1; p=reject")],
            "bare.test": [("A", "127.0.0.1")],
        }
    )
    return zone


@pytest.fixture(scope="module")
def mail_dns() -> Iterator[tuple[str, Any]]:
    with dns_server(mail_zone()) as server:
        yield server


def test_valid_spf_dmarc_dkim_and_mx_pass(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mail_dns: tuple[str, Any]
) -> None:
    """10 SPF lookups (the limit, counted exactly), p=reject, a 2048-bit DKIM key: clean."""
    address, _ = mail_dns
    run = run_audit(
        capsys, tmp_path, "--domain", "good.test", "--resolver", address, "--dkim-selector", "s1"
    )
    assert not [f for f in run["found"] if f[0].startswith(("spf", "dmarc", "dkim"))]
    assert "good.test: SPF 10 DNS lookups" in run["out"]
    assert run["status"] == 0


def test_spf_over_ten_lookups_two_records_and_plus_all(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mail_dns: tuple[str, Any]
) -> None:
    """11 lookups (exact count named), two SPF records and +all are blockers."""
    address, _ = mail_dns
    run = run_audit(
        capsys, tmp_path, "--resolver", address,
        "--domain", "over.test", "--domain", "two.test", "--domain", "open.test",
    )  # fmt: skip
    found = titles(run, "spf-invalid")
    assert "over.test's SPF record needs 11 DNS lookups (max 10)" in found
    assert "two.test has more than one SPF record" in found
    assert "open.test's SPF record ends in +all" in found
    assert ("spf-invalid", "blocker") in run["found"]
    assert run["status"] == 1


def test_missing_spf_dmarc_mx_and_p_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mail_dns: tuple[str, Any]
) -> None:
    """No SPF and no DMARC are blockers, no MX and p=none are soon; DKIM skipped and said."""
    address, _ = mail_dns
    run = run_audit(
        capsys, tmp_path, "--resolver", address, "--domain", "bare.test", "--domain",
        "monitor.test",
    )  # fmt: skip
    assert {("spf-missing", "blocker"), ("dmarc-missing", "blocker")} <= run["found"]
    assert titles(run, "spf-missing") == ["bare.test has no SPF record"]
    assert titles(run, "dmarc-missing") == ["bare.test has no DMARC record"]
    assert "monitor.test's DMARC policy is p=none (monitoring only)" in titles(run, "dmarc-none")
    assert ("dmarc-none", "soon") in run["found"]
    assert "bare.test has no MX record" in titles(run, "dns-unresolved")
    assert "no --dkim-selector given" in run["out"]


def test_dkim_present_absent_revoked_and_weak(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mail_dns: tuple[str, Any]
) -> None:
    """A missing or revoked selector is soon, a 1024-bit key later, a 2048-bit key clean."""
    address, _ = mail_dns
    args = ["--resolver", address, "--domain", "good.test"]
    for selector in ("s1", "nope", "gone", "old"):
        args += ["--dkim-selector", selector]
    run = run_audit(capsys, tmp_path, *args)
    dkim = {(f["title"], f["severity"]) for f in run["report"]["findings"]}
    assert dkim == {
        ("no DKIM key at selector nope for good.test", "soon"),
        ("the DKIM key at selector gone is revoked (empty p=)", "soon"),
        ("the DKIM key at selector old is 1024-bit RSA", "later"),
    }


def test_checkdmarc_lookup_counts_are_pinned(mail_dns: tuple[str, Any]) -> None:
    """checkdmarc counts include lookups exactly: 10 valid, 11 over (its counting changed
    before; a new version that counts otherwise fails here)."""
    import dns.resolver

    from launchready_sdk.cli.audit import _email

    address, _ = mail_dns
    ip, port = address.split(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = [ip], int(port), 3.0
    _email.cd_utils.DNS_CACHE.clear()
    ok = _email.cd_spf.check_spf("good.test", resolver=resolver, timeout=3, retries=0)
    over = _email.cd_spf.check_spf("over.test", resolver=resolver, timeout=3, retries=0)
    assert (ok["valid"], ok["dns_lookups"]) == (True, 10)
    assert (over["valid"], over["dns_lookups"]) == (False, 11)


def dns_zone() -> Zone:
    return {
        "shop.test": [("A", "127.0.0.1"), ("AAAA", "::1")],
        "www.shop.test": [("A", "127.0.0.2")],
        "api.shop.test": [("CNAME", "shop.test")],
        "app.shop.test": [("CNAME", "deleted-app.hosting.test")],
        "alias.test": [("CNAME", "shop.test")],
    }


def test_dns_dangling_cname_and_inconsistent_hosts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A CNAME to a name that does not exist is a blocker; apex and www differing is later;
    a CNAME at the apex is soon; a domain with no DNS at all is a blocker."""
    with dns_server(dns_zone()) as (address, _):
        run = run_audit(
            capsys, tmp_path, "--resolver", address, "--domain", "shop.test",
            "--domain", "alias.test", "--domain", "nothing.test",
        )  # fmt: skip
    unresolved = titles(run, "dns-unresolved")
    assert (
        "app.shop.test is a CNAME to deleted-app.hosting.test, which does not exist" in unresolved
    )
    assert "nothing.test does not exist in DNS (NXDOMAIN)" in unresolved
    assert "www.alias.test does not exist in DNS" in unresolved
    inconsistent = titles(run, "dns-inconsistent")
    assert "shop.test and www.shop.test answer different addresses" in inconsistent
    assert "shop.test has IPv6 (AAAA) and www.shop.test does not" in inconsistent
    assert "alias.test is a CNAME (to shop.test) at the apex" in inconsistent
    assert "nothing.test does not exist in DNS; e-mail not checked" in run["out"]
    assert run["status"] == 1


def test_resolver_that_never_answers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A silent resolver: DNS and e-mail say what they could not check, within their budget."""
    with silent_dns() as address:
        run = run_audit(
            capsys, tmp_path, "--resolver", address, "--domain", "shop.test", "--timeout", "1"
        )
    assert run["report"]["findings"] == []
    assert run["status"] == 0
    assert f"dns: shop.test: {address} did not answer shop.test" in run["out"]
    assert "email: shop.test:" in run["out"]
    assert "not run" in run["out"]
    assert run["seconds"] < 20


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def page(headers: dict[str, str] | None = None) -> Any:
    def handle(request: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        return 200, headers or {}, b"<h1>shop</h1>"

    return handle


def tls_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return context


SHOP_ZONE: Zone = {"shop.test": [("A", "127.0.0.1")], "www.shop.test": [("A", "127.0.0.1")]}
GOOD_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def tls_audit(capsys: pytest.CaptureFixture[str], tmp_path: Path, ca_file: str,
              cert: trustme.LeafCert, zone: Zone = SHOP_ZONE) -> dict[str, Any]:  # fmt: skip
    with ExitStack() as stack:
        address, _ = stack.enter_context(dns_server(zone))
        port = stack.enter_context(http_server(page(GOOD_HEADERS), tls_context(cert)))
        return run_audit(
            capsys, tmp_path, "--url", f"https://shop.test:{port}/", "--resolver", address,
            "--ca-file", ca_file, "--domain", "shop.test", "--timeout", "2",
        )  # fmt: skip


def test_tls_healthy_certificate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca: trustme.CA, ca_file: str
) -> None:
    """A trusted 90-day certificate with 80 days left, covering apex and www: no TLS finding;
    good headers grade A or better."""
    cert = ca.issue_cert("shop.test", "www.shop.test", not_before=NOW - 10 * DAY,
                         not_after=NOW + 80 * DAY)  # fmt: skip
    run = tls_audit(capsys, tmp_path, ca_file, cert)
    assert not [f for f in run["found"] if f[0].startswith(("tls", "hsts", "security"))]
    assert "shop.test: certificate valid, 80.0 of its 90 days left" in run["out"]
    assert "www.shop.test: certificate valid" in run["out"]
    assert "grade A+ (" in run["out"]


@pytest.mark.parametrize(
    ("lifetime_days", "left_days", "expected"),
    [
        (90, 20, ("tls-expiring", "soon")),  # past two thirds of its life
        (90, 5, ("tls-expiring", "blocker")),  # under a sixth left
        (6, 4, None),  # a 6-day certificate with 4 days left is fine
        (6, 1.5, ("tls-expiring", "blocker")),  # under the 2-day floor
        (398, 60, None),  # long-lived: caps keep it quiet until 30 days
        (398, 25, ("tls-expiring", "soon")),
    ],
)
def test_tls_expiry_by_fraction_of_lifetime(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca: trustme.CA, ca_file: str,
    lifetime_days: float, left_days: float, expected: tuple[str, str] | None,
) -> None:  # fmt: skip
    """Expiry is judged by the fraction of lifetime left, with caps and a 2-day floor."""
    cert = ca.issue_cert(
        "shop.test", "www.shop.test",
        not_before=NOW - (lifetime_days - left_days) * DAY, not_after=NOW + left_days * DAY,
    )  # fmt: skip
    run = tls_audit(capsys, tmp_path, ca_file, cert)
    tls = {f for f in run["found"] if f[0].startswith("tls")}
    assert tls == ({expected} if expected else set())


def test_tls_expired_and_wrong_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca: trustme.CA, ca_file: str
) -> None:
    """An expired certificate and one that does not cover www are blockers, with details."""
    expired = ca.issue_cert("shop.test", "www.shop.test", not_before=NOW - 90 * DAY,
                            not_after=NOW - DAY)  # fmt: skip
    run = tls_audit(capsys, tmp_path, ca_file, expired)
    invalid = titles(run, "tls-invalid")
    assert len(invalid) == 2
    assert all("certificate has expired" in t for t in invalid)
    assert run["status"] == 1
    apex_only = ca.issue_cert("shop.test", not_before=NOW - DAY, not_after=NOW + 89 * DAY)
    run = tls_audit(capsys, tmp_path, ca_file, apex_only)
    invalid = titles(run, "tls-invalid")
    assert len(invalid) == 1
    assert invalid[0].startswith("the certificate of www.shop.test")
    assert "Hostname mismatch" in invalid[0]


def test_tls_untrusted_ca(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                          ca_file: str) -> None:  # fmt: skip
    """A certificate from a CA the client does not trust is a blocker."""
    other = trustme.CA().issue_cert("shop.test", "www.shop.test")
    run = tls_audit(capsys, tmp_path, ca_file, other)
    assert all("unable to get local issuer" in t for t in titles(run, "tls-invalid"))
    assert len(titles(run, "tls-invalid")) == 2


def test_tls_server_that_hangs_mid_handshake(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca_file: str
) -> None:
    """A server that never answers the ClientHello is a blocker; the run ends on time."""
    with dns_server(SHOP_ZONE) as (address, _), hanging_tls_server() as port:
        run = run_audit(
            capsys, tmp_path, "--url", f"https://shop.test:{port}/", "--resolver", address,
            "--ca-file", ca_file, "--timeout", "1",
        )  # fmt: skip
    hung = titles(run, "tls-invalid")
    assert "the TLS handshake with shop.test did not finish within 1 s" in hung
    assert "headers:" in run["out"]
    assert run["seconds"] < 30


# --- redirects, webhooks, headers ---------------------------------------------------------


def redirector(target: str, status: int = 301) -> Any:
    def handle(request: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        return status, {"Location": target + request.path.lstrip("/")}, b""

    return handle


@pytest.fixture
def https_shop(ca: trustme.CA) -> Iterator[int]:
    """The shop over HTTPS: good headers; /webhooks/stripe answers 400, /webhooks/slash 308."""
    cert = ca.issue_cert("shop.test", "www.shop.test")

    def handle(request: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if request.path == "/webhooks/slash":
            return 308, {"Location": "https://shop.test/webhooks/slash/"}, b""
        if request.path.startswith("/webhooks/"):
            return 400, {}, b"bad signature"
        return 200, GOOD_HEADERS, b"<h1>shop</h1>"

    with http_server(handle, tls_context(cert)) as port:
        yield port


def web_audit(capsys: pytest.CaptureFixture[str], tmp_path: Path, ca_file: str, http_port: int,
              *extra: str) -> dict[str, Any]:  # fmt: skip
    with dns_server(SHOP_ZONE) as (address, _):
        return run_audit(
            capsys, tmp_path, "--url", f"http://shop.test:{http_port}/", "--resolver", address,
            "--ca-file", ca_file, "--timeout", "2", *extra,
        )  # fmt: skip


def test_good_redirect_to_https(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca_file: str, https_shop: int
) -> None:
    """http -> 301 -> https on the same host, webhooks not redirected: nothing to report."""
    with http_server(redirector(f"https://shop.test:{https_shop}/")) as port:
        run = web_audit(capsys, tmp_path, ca_file, port, "--webhook-path", "/webhooks/stripe")
    assert run["report"]["findings"] == [], run["out"]
    assert "POST /webhooks/stripe: 400, not redirected" in run["out"]
    assert "tls: shop.test: certificate valid" in run["out"]


def test_temporary_redirect_and_redirected_webhook(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca_file: str, https_shop: int
) -> None:
    """A 302 is soon; a webhook POST that gets a 308 is a blocker."""
    with http_server(redirector(f"https://shop.test:{https_shop}/", 302)) as port:
        run = web_audit(capsys, tmp_path, ca_file, port)
    assert run["found"] == {("redirect-temporary", "soon")}
    with dns_server(SHOP_ZONE) as (address, _):
        run = run_audit(
            capsys, tmp_path, "--url", f"https://shop.test:{https_shop}/", "--resolver", address,
            "--ca-file", ca_file, "--webhook-path", "/webhooks/slash", "--timeout", "2",
        )  # fmt: skip
    assert ("webhook-redirected", "blocker") in run["found"]
    assert run["status"] == 1
    assert "https-redirect-missing" in {f[0] for f in run["found"]}  # nothing on plain HTTP


def test_no_redirect_and_redirect_loops(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca_file: str
) -> None:
    """Plain HTTP served as is, a two-URL loop and an endless chain are blockers."""
    with http_server(page()) as port:
        run = web_audit(capsys, tmp_path, ca_file, port)
    assert ("https-redirect-missing", "blocker") in run["found"]
    assert "does not lead to https://" in run["out"]

    def loop(request: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        return 301, {"Location": "/a" if request.path == "/" else "/"}, b""

    with http_server(loop) as port:
        run = web_audit(capsys, tmp_path, ca_file, port)
    assert "redirects forever (loop)" in " ".join(titles(run, "redirect-chain"))

    def endless(request: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        step = int(request.path.strip("/") or 0)
        return 301, {"Location": f"/{step + 1}"}, b""

    with http_server(endless) as port:
        run = web_audit(capsys, tmp_path, ca_file, port)
    assert "redirects forever (too many)" in " ".join(titles(run, "redirect-chain"))
    assert run["status"] == 1


def test_off_host_first_hop_and_downgrade(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca: trustme.CA, ca_file: str
) -> None:
    """A first hop to another host is soon; an https hop back to http:// is a blocker."""
    cert = ca.issue_cert("shop.test", "www.shop.test")
    with http_server(page()) as plain_page:

        def downgrade(
            request: http.server.BaseHTTPRequestHandler,
        ) -> tuple[int, dict[str, str], bytes]:
            return 301, {"Location": f"http://shop.test:{plain_page}/"}, b""

        with http_server(downgrade, tls_context(cert)) as tls_port:
            target = f"https://www.shop.test:{tls_port}/"
            with http_server(redirector(target)) as port:
                run = web_audit(capsys, tmp_path, ca_file, port)
    assert ("redirect-chain", "soon") in run["found"]
    assert any("goes back to http://" in t for t in titles(run, "https-redirect-missing"))


def test_missing_headers_are_graded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca: trustme.CA, ca_file: str
) -> None:
    """No HSTS is soon; no CSP, framing or nosniff with a bare session cookie grades F."""
    cert = ca.issue_cert("shop.test", "www.shop.test")
    headers = {"Set-Cookie": "sessionid=abc; Path=/"}
    with dns_server(SHOP_ZONE) as (address, _), http_server(page(headers), tls_context(cert)) as p:
        run = run_audit(
            capsys, tmp_path, "--url", f"https://shop.test:{p}/", "--resolver", address,
            "--ca-file", ca_file,
        )  # fmt: skip
    assert {("hsts-missing", "soon"), ("security-headers", "soon")} <= run["found"]
    graded = titles(run, "security-headers")[0]
    assert "grade F (0/100" in graded
    assert "cookie sessionid without Secure" in graded
    assert "no Content-Security-Policy" in graded


def test_cors_and_slow_routes_on_a_real_app(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, serve: Any
) -> None:
    """An app reflecting any origin with credentials is a blocker; a route at 2.5x its p95
    budget on the SDK's /metrics is a blocker too."""
    server = serve("tests.apps.audit_app:app", {"LAUNCHREADY_LATENCY_BUDGET_MS": "100"})
    with httpx.Client(base_url=server.url) as client:
        for i in range(4):
            client.get(f"/reports/{i}")
    run = run_audit(capsys, tmp_path, "--url", server.url + "/", "--timeout", "3")
    assert ("cors-wildcard-credentials", "blocker") in run["found"]
    slow = titles(run, "slow-route")
    assert len(slow) == 1
    assert slow[0].startswith("GET /reports/{id} p95 is 2")
    assert ("slow-route", "blocker") in run["found"]
    assert ("https-redirect-missing", "blocker") in run["found"]


def test_metrics_without_the_sdk_is_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ca_file: str
) -> None:
    """An app without the SDK's figures: slow routes are not checked, and the run says why."""
    with http_server(page()) as port:
        run = web_audit(capsys, tmp_path, ca_file, port)
    assert "without the SDK's p95 figures" in run["out"]
    assert not titles(run, "slow-route")
