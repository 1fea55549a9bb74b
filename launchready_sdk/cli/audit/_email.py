"""E-mail authentication: SPF, DMARC, DKIM for the named selectors, and MX.

SPF and DMARC are judged by checkdmarc, given the run's own dnspython resolver (so
`--resolver` reaches it) and no retries; its answer cache is cleared first, since it is keyed
by name and not by resolver. DKIM is ours: `<selector>._domainkey.<domain>` TXT for each
`--dkim-selector` (CNAMEs followed), its `p=` key read with cryptography.

Severities: no SPF, an SPF record receivers reject (two records, more than 10 DNS lookups, a
syntax error, a loop) or `+all` is a blocker; no DMARC, or one receivers ignore, is a blocker
(password-reset mail lands in spam, and bulk senders are required to have one); DMARC `p=none`,
`?all` or no `all`, a named DKIM selector that is missing, revoked or under 1024 bits, and no MX
are "soon"; a DKIM key under 2048 bits or in test mode (`t=y`) and `ptr` in SPF are "later".

Limits, candidly: DKIM selectors cannot be discovered, so only the named ones are checked;
checkdmarc's lookup counting is what it is (its counts are pinned in the tests); MTA-STS,
TLS-RPT, BIMI and STARTTLS on the MX hosts are not checked.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from typing import Any

from launchready_sdk.cli.audit._dns import Lookup, LookupFailed
from launchready_sdk.cli.audit._model import Options, PartResult

with warnings.catch_warnings():  # dnspython's DNSSEC module warns on import with new cryptography
    warnings.simplefilter("ignore")
    import checkdmarc.dmarc as cd_dmarc
    import checkdmarc.spf as cd_spf
    import checkdmarc.utils as cd_utils


def _spf(lookup: Lookup, domain: str, result: PartResult) -> None:
    timeout = lookup.timeout_s
    try:
        query = cd_spf.query_spf_record(
            domain, resolver=lookup.resolver, timeout=timeout, retries=0
        )
    except cd_spf.SPFRecordNotFound as exc:
        if isinstance(exc.error, Exception):
            raise LookupFailed(f"SPF lookup for {domain} failed: {exc}") from exc
        result.add(
            "spf-missing",
            "blocker",
            f"{domain} has no SPF record",
            f"{domain} TXT",
            f'Publish one TXT record at {domain}: "v=spf1 include:<your mail provider> -all" '
            "(your provider documents its include); without it receivers junk or reject your "
            "mail.",
        )
        return
    except cd_spf.MultipleSPFRTXTRecords:
        result.add(
            "spf-invalid",
            "blocker",
            f"{domain} has more than one SPF record",
            f"{domain} TXT",
            "Merge them into one v=spf1 record: with two, receivers treat SPF as a permanent "
            "error (RFC 7208 section 4.5) and fail every message.",
        )
        return
    record = str(query["record"])
    try:
        parsed = cd_spf.parse_spf_record(
            record, domain, resolver=lookup.resolver, timeout=timeout, retries=0
        )
    except cd_spf.SPFTooManyDNSLookups as exc:
        count = (exc.data or {}).get("dns_lookups", "more than 10")
        result.add(
            "spf-invalid",
            "blocker",
            f"{domain}'s SPF record needs {count} DNS lookups (max 10)",
            f"{domain} TXT {record}",
            "Drop includes you no longer use or replace some with ip4:/ip6: ranges: past 10 "
            "lookups SPF is a permanent error and fails every message (RFC 7208 4.6.4).",
        )
        return
    except cd_spf.SPFError as exc:
        result.add(
            "spf-invalid",
            "blocker",
            f"{domain}'s SPF record is invalid: {exc}",
            f"{domain} TXT {record}",
            "Fix the record so it parses: receivers treat an invalid SPF record as a permanent "
            "error and fail every message.",
        )
        return
    _spf_policy(domain, record, parsed, result)


def _spf_policy(domain: str, record: str, parsed: dict[str, Any], result: PartResult) -> None:
    policy = (parsed.get("parsed") or {}).get("all")
    where = f"{domain} TXT {record}"
    if policy == "pass":
        result.add(
            "spf-invalid",
            "blocker",
            f"{domain}'s SPF record ends in +all",
            where,
            "Replace +all with -all (or ~all): +all authorises every server on the internet "
            "to send as you.",
        )
    elif policy == "neutral" or policy is None:
        result.add(
            "spf-invalid",
            "soon",
            f"{domain}'s SPF record ends in ?all or has no all",
            where,
            "End the record with -all (or ~all while you roll out): ?all tells receivers "
            "nothing, so spoofed mail is not rejected.",
        )
    if " ptr" in f" {record}" and "ptr" in record.split():
        result.add(
            "spf-invalid",
            "later",
            f"{domain}'s SPF record uses ptr",
            where,
            "Remove ptr: it is slow, unreliable and discouraged (RFC 7208 section 5.5).",
        )
    result.notes.append(f"{domain}: SPF {parsed.get('dns_lookups')} DNS lookups")


def _dmarc(lookup: Lookup, domain: str, result: PartResult) -> None:
    report = cd_dmarc.check_dmarc(
        domain, resolver=lookup.resolver, timeout=lookup.timeout_s, retries=0
    )
    error = str(report.get("error") or "")
    where = f"_dmarc.{domain} TXT"
    if not report.get("valid"):
        if "timed out" in error or "lifetime expired" in error:
            raise LookupFailed(f"DMARC lookup for {domain} failed: {error}")
        if report.get("record") is None:
            result.add(
                "dmarc-missing",
                "blocker",
                f"{domain} has no DMARC record",
                where,
                f'Publish TXT at _dmarc.{domain}: "v=DMARC1; p=none; rua=mailto:dmarc@{domain}", '
                "then move to p=quarantine once the reports look clean. Gmail and Yahoo require "
                "DMARC of bulk senders and junk unauthenticated mail.",
            )
        else:
            result.add(
                "dmarc-missing",
                "blocker",
                f"{domain}'s DMARC record is invalid: {error}",
                f"{where} {report.get('record')}",
                "Fix the record so it parses: receivers ignore an invalid DMARC record.",
            )
        return
    tags: dict[str, Any] = dict(report.get("tags") or {})
    policy = str((tags.get("p") or {}).get("value", "none"))
    if policy == "none":
        result.add(
            "dmarc-none",
            "soon",
            f"{domain}'s DMARC policy is p=none (monitoring only)",
            f"{where} {report.get('record')}",
            "Once the aggregate reports show your own mail passing, move to p=quarantine, "
            "then p=reject: p=none lets anyone send as you.",
        )


def _dkim(lookup: Lookup, domain: str, selector: str, result: PartResult) -> None:
    name = f"{selector}._domainkey.{domain}"
    records = lookup.query(name, "TXT")
    texts = ["".join(part.strip('"') for part in r.split('" "')) for r in records or []]
    keys = [t for t in texts if "p=" in t.replace(" ", "")]
    if not keys:
        result.add(
            "dkim-missing",
            "soon",
            f"no DKIM key at selector {selector} for {domain}",
            f"{name} TXT",
            "Publish the DKIM record your mail provider gives you for this selector (often a "
            "CNAME to theirs); mail signed with a selector that has no key fails DKIM.",
        )
        return
    tags = _tags(keys[0])
    key = tags.get("p", "")
    if not key:
        result.add(
            "dkim-missing",
            "soon",
            f"the DKIM key at selector {selector} is revoked (empty p=)",
            f"{name} TXT",
            "Publish the current key for this selector, or stop signing with it.",
        )
        return
    bits = _rsa_bits(key) if tags.get("k", "rsa") == "rsa" else None
    if bits is not None and bits < 1024:
        result.add(
            "dkim-missing",
            "soon",
            f"the DKIM key at selector {selector} is {bits}-bit RSA",
            f"{name} TXT",
            "Rotate to a 2048-bit key: receivers ignore RSA keys under 1024 bits "
            "(RFC 8301), so this mail is unsigned in effect.",
        )
    elif bits is not None and bits < 2048:
        result.add(
            "dkim-missing",
            "later",
            f"the DKIM key at selector {selector} is {bits}-bit RSA",
            f"{name} TXT",
            "Rotate to a 2048-bit key when you next rotate (RFC 8301).",
        )
    if "y" in tags.get("t", "").split(":"):
        result.add(
            "dkim-missing",
            "later",
            f"the DKIM key at selector {selector} is in test mode (t=y)",
            f"{name} TXT",
            "Remove t=y once signing works: receivers may treat test-mode signatures as unsigned.",
        )


def _tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in record.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def _rsa_bits(key: str) -> int | None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        public = load_der_public_key(base64.b64decode(key + "=" * (-len(key) % 4)))
    except (ValueError, binascii.Error, TypeError):
        return None
    return public.key_size if isinstance(public, rsa.RSAPublicKey) else None


def _mx(lookup: Lookup, domain: str, result: PartResult) -> None:
    if lookup.query(domain, "MX"):
        return
    result.add(
        "dns-unresolved",
        "soon",
        f"{domain} has no MX record",
        f"{domain} MX",
        "Add MX records (your mail provider's): bounces, replies and DMARC reports to this "
        "domain go nowhere, and some receivers distrust senders whose domain takes no mail.",
    )


def run(options: Options, deadline: float) -> PartResult:
    """The e-mail part for every `--domain`."""
    result = PartResult()
    lookup = Lookup.for_part(options, result)
    if lookup is None:
        return result
    cd_utils.DNS_CACHE.clear()
    for domain in options.domains:
        try:
            if lookup.query(domain, "SOA") is None and lookup.query(domain, "A") is None:
                result.skipped.append(f"{domain} does not exist in DNS; e-mail not checked")
                continue
            _spf(lookup, domain, result)
            _dmarc(lookup, domain, result)
            for selector in options.dkim_selectors:
                _dkim(lookup, domain, selector, result)
            _mx(lookup, domain, result)
        except LookupFailed as exc:
            result.skipped.append(f"{domain}: {exc}; the rest of its e-mail checks were not run")
    if not options.dkim_selectors:
        result.skipped.append(
            "DKIM: no --dkim-selector given (selectors cannot be discovered; your mail "
            "provider's DNS settings name them)"
        )
    return result
