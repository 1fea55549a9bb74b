"""TLS: the certificate validates for the site's host, its apex and `www`, and is not near its
end.

The HTTPS origin is the `--url` (or, for an `http://` URL, where its redirect leads). Each host
(the URL's, and the apex and `www` of `--domain` or of the URL's host) that has an address is
connected to on the origin's port with its own server name, verified with the stdlib against
the system's CAs or `--ca-file`, and its certificate read with cryptography.

Expiry is judged by the fraction of the certificate's lifetime left, because lifetimes shrink
(200 days from March 2026, 100 from 2027, 47 from 2029; Let's Encrypt already issues 6-day
certificates): a fixed "30 days" would be red for every short-lived certificate. With `L` the
lifetime and `left` the time left:

- blocker when `left < max(2 days, min(L/6, 14 days))`: renewal has failed for a while;
- soon when `left < min(L/3, 30 days)`: automation renews at a third left (certbot), so a
  certificate past two thirds of its life has missed its window. Caps keep long-lived
  certificates from being flagged months ahead; the 2-day floor catches the rest.

Any verification failure (expired, not yet valid, wrong name, self-signed, missing
intermediate), a refused connection or a handshake that does not finish within `--timeout` is
a blocker: browsers show an error page.

Limits, candidly: the stdlib does not fetch missing intermediates (AIA), exactly like Firefox
and most non-browser clients, so a chain that works in Chrome can fail here, which is the
point. Protocol versions, ciphers, OCSP and CT are not checked.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import urllib.parse
from typing import Final

from launchready_sdk.cli.audit._dns import Lookup, LookupFailed
from launchready_sdk.cli.audit._http import (
    Fetcher,
    FetchError,
    default_port,
    tls_context,
    with_scheme,
)
from launchready_sdk.cli.audit._model import Options, PartResult

DAY: Final = datetime.timedelta(days=1)
FLOOR: Final = 2 * DAY


def thresholds(lifetime: datetime.timedelta) -> tuple[datetime.timedelta, datetime.timedelta]:
    """(blocker, soon): a certificate with less time left than these is flagged."""
    blocker = max(FLOOR, min(lifetime / 6, 14 * DAY))
    soon = min(lifetime / 3, 30 * DAY)
    return blocker, max(soon, blocker)


def https_origin(options: Options, fetcher: Fetcher) -> tuple[str, int] | None:
    """(host, port) of the site's HTTPS origin; None when an http:// URL leads to no https."""
    if options.url is None:
        raise ValueError("--url is required")
    parts = urllib.parse.urlsplit(options.url)
    if parts.scheme == "https":
        return parts.hostname or "", parts.port or 443
    reply = fetcher.fetch("GET", with_scheme(options.url, "http"))
    target = urllib.parse.urlsplit(reply.location or "")
    if 300 <= reply.status < 400 and target.scheme == "https" and target.hostname:
        return target.hostname, target.port or default_port("https")
    return None


def hosts_for(options: Options, host: str) -> list[str]:
    """The URL's host, and the apex and www of each --domain (or of the URL's host)."""
    names = [host]
    if not options.domains and _is_ip(host):
        return names  # an IP address has no apex or www
    apexes = list(options.domains) or [host.removeprefix("www.")]
    for apex in apexes:
        if host == apex or host.endswith("." + apex) or not options.domains:
            names += [apex, f"www.{apex}"]
    return list(dict.fromkeys(n for n in names if n))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _connect(
    address: str, port: int, host: str, context: ssl.SSLContext, timeout_s: float
) -> bytes:
    """The DER certificate the server presents for `host`; ssl/OS errors propagate."""
    with socket.create_connection((address, port), timeout=timeout_s) as raw:
        raw.settimeout(timeout_s)
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            if der is None:
                raise ssl.SSLError("the server sent no certificate")
            return der


def _unverified(address: str, port: int, host: str, timeout_s: float) -> bytes | None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        return _connect(address, port, host, context, timeout_s)
    except (OSError, ssl.SSLError):
        return None


def _dates(der: bytes) -> tuple[datetime.datetime, datetime.datetime, list[str]]:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = sans.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return cert.not_valid_before_utc, cert.not_valid_after_utc, names


def _check_host(host: str, address: str, port: int, options: Options, result: PartResult) -> None:
    where = f"{host}:{port}" + (f" ({address})" if address != host else "")
    fix_invalid = (
        "Serve a certificate from a public CA that covers this name (apex and www "
        "both), with its full chain; automate renewal (Let's Encrypt, your host's "
        "managed certificates)."
    )
    try:
        der = _connect(address, port, host, tls_context(options), options.timeout_s)
    except ssl.SSLCertVerificationError as exc:
        detail = exc.verify_message or str(exc)
        dates = _unverified(address, port, host, options.timeout_s)
        if dates is not None:
            start, end, names = _dates(dates)
            detail += (
                f"; valid {start:%Y-%m-%d} to {end:%Y-%m-%d} for {', '.join(names) or 'no names'}"
            )
        result.add(
            "tls-invalid",
            "blocker",
            f"the certificate of {host} is not valid: {detail}",
            where,
            fix_invalid,
        )
        return
    except TimeoutError:
        result.add(
            "tls-invalid",
            "blocker",
            f"the TLS handshake with {host} did not finish within {options.timeout_s:g} s",
            where,
            "Check the server's TLS listener: browsers give up on it too.",
        )
        return
    except (ssl.SSLError, OSError) as exc:
        result.add(
            "tls-invalid",
            "blocker",
            f"HTTPS on {host} fails: {exc}",
            where,
            "Serve HTTPS on this host (port 443), or remove its DNS record.",
        )
        return
    start, end, _names = _dates(der)
    now = datetime.datetime.now(datetime.UTC)
    lifetime, left = end - start, end - now
    blocker, soon = thresholds(lifetime)
    days, life = left / DAY, lifetime / DAY
    text = f"{days:.1f} of its {life:.0f} days left (until {end:%Y-%m-%d %H:%M} UTC)"
    renew = (
        "Renew now and find out why automation did not: certificates should renew at a "
        "third of their lifetime left."
    )
    if left < blocker:
        result.add(
            "tls-expiring",
            "blocker",
            f"the certificate of {host} expires soon: {text}",
            where,
            renew,
        )
    elif left < soon:
        result.add(
            "tls-expiring",
            "soon",
            f"the certificate of {host} is past two thirds of its life: {text}",
            where,
            renew,
        )
    else:
        result.notes.append(f"{host}: certificate valid, {text}")


def run(options: Options, deadline: float) -> PartResult:
    """The TLS part of `--url`."""
    result = PartResult()
    try:
        fetcher = Fetcher(options)
        lookup = Lookup(options) if options.resolver is not None else None
    except LookupFailed as exc:
        result.skipped.append(str(exc))
        return result
    try:
        found = https_origin(options, fetcher)
    except FetchError as exc:
        result.skipped.append(f"could not find the HTTPS origin: {exc}")
        return result
    finally:
        fetcher.close()
    if found is None:
        result.skipped.append(f"{options.url} does not lead to https://; no certificate to check")
        return result
    origin_host, port = found
    for host in hosts_for(options, origin_host):
        try:
            addresses = lookup.addresses(host) if lookup is not None else _system(host)
        except LookupFailed as exc:
            result.skipped.append(f"{host}: {exc}")
            continue
        if not addresses:
            if host != origin_host:
                result.notes.append(f"{host}: no address, not checked")
                continue
            result.skipped.append(f"{host} does not resolve; its certificate was not checked")
            continue
        _check_host(host, addresses[0], port, options, result)
    return result


def _system(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
