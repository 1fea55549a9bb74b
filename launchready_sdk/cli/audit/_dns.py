"""DNS: the apex and its usual hosts answer, consistently, and no CNAME dangles.

For each `--domain`: the apex, `www.`, `app.`, `api.` and `admin.` (those that exist) are asked
for CNAME, A and AAAA through one dnspython resolver (`--resolver`, or the system's). Findings:
an apex that does not exist or has no address (blocker), a CNAME whose target does not exist (a
subdomain takeover waiting to happen: blocker), `www` missing (soon), a CNAME at the apex (soon),
apex and `www` answering different addresses or only one of them on IPv6 (later).

`Lookup` is shared with the e-mail, TLS and redirect parts, so `--resolver` points them all at
the same server.

Limits, candidly: a timeout or SERVFAIL is "not checked", never a pass; the part stops at the
first one. Takeover fingerprints of hosting providers (a CNAME to a de-provisioned bucket that
still resolves) are not matched; CAA records are not read.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final

import dns.exception
import dns.resolver

from launchready_sdk.cli.audit._model import Options, PartResult

SUBDOMAINS: Final = ("www", "app", "api", "admin")


class LookupFailed(Exception):
    """The resolver did not answer (timeout, SERVFAIL, refused): the name was not checked."""


class Lookup:
    """One dnspython resolver with the run's timeout; `query` answers None for NXDOMAIN."""

    @classmethod
    def for_part(cls, options: Options, result: PartResult) -> Lookup | None:
        """A resolver for one part of the audit, or None (the reason noted as skipped)."""
        try:
            return cls(options)
        except LookupFailed as exc:
            result.skipped.append(str(exc))
            return None

    def __init__(self, options: Options) -> None:
        self.timeout_s = options.timeout_s
        if options.resolver is not None:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [options.resolver[0]]
            self.resolver.port = options.resolver[1]
            self.described = f"{options.resolver[0]}:{options.resolver[1]}"
        else:
            try:
                self.resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                raise LookupFailed(
                    "no system resolver is configured; pass --resolver IP[:PORT]"
                ) from exc
            self.described = "the system resolver"
        self.resolver.timeout = options.timeout_s
        self.resolver.lifetime = options.timeout_s
        self.custom = options.resolver is not None

    def query(self, name: str, rtype: str) -> list[str] | None:
        """The answers (CNAMEs followed); [] when the name exists without that type, None when
        it does not exist; LookupFailed when the resolver did not answer."""
        try:
            answer = self.resolver.resolve(name, rtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.LifetimeTimeout as exc:
            raise LookupFailed(
                f"{self.described} did not answer {name} {rtype} within {self.timeout_s:g} s"
            ) from exc
        except (dns.resolver.NoNameservers, dns.exception.DNSException, OSError) as exc:
            raise LookupFailed(f"{name} {rtype}: {type(exc).__name__}") from exc
        if answer.rrset is None:
            return []
        return sorted(r.to_text().rstrip(".") for r in answer.rrset)

    def cname(self, name: str) -> str | None:
        """The CNAME target of `name` itself, or None."""
        try:
            answer = self.resolver.resolve(name, "CNAME", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.Timeout as exc:
            raise LookupFailed(
                f"{self.described} did not answer {name} CNAME within {self.timeout_s:g} s"
            ) from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise LookupFailed(f"{name} CNAME: {type(exc).__name__}") from exc
        if answer.rrset is None:
            return None
        for rdata in answer.rrset:
            return str(rdata.target).rstrip(".")
        return None

    def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of `host` (an IP literal is its own); [] when none."""
        try:
            ipaddress.ip_address(host.strip("[]"))
            return [host.strip("[]")]
        except ValueError:
            pass
        if not self.custom or host == "localhost":
            try:
                infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError:
                return []
            return list(dict.fromkeys(str(info[4][0]) for info in infos))
        found: list[str] = []
        for rtype in ("A", "AAAA"):
            found += self.query(host, rtype) or []
        return found


def _check_domain(lookup: Lookup, domain: str, result: PartResult) -> None:
    apex_cname = lookup.cname(domain)
    a = lookup.query(domain, "A")
    if a is None and apex_cname is None:
        result.add(
            "dns-unresolved",
            "blocker",
            f"{domain} does not exist in DNS (NXDOMAIN)",
            f"{domain} via {lookup.described}",
            "Register the domain or fix its delegation (NS records at the registrar), then "
            "add A/AAAA records for the apex.",
        )
        return
    aaaa = lookup.query(domain, "AAAA") or []
    seen: dict[str, tuple[list[str], list[str], str | None]] = {domain: (a or [], aaaa, apex_cname)}
    if apex_cname is not None:
        result.add(
            "dns-inconsistent",
            "soon",
            f"{domain} is a CNAME (to {apex_cname}) at the apex",
            f"{domain} CNAME {apex_cname}",
            "A CNAME at the apex cannot sit beside the SOA, NS and MX records (RFC 1034): use "
            "your DNS host's ALIAS/ANAME/flattening, or A/AAAA records.",
        )
    if not a and not aaaa and not _dangling(lookup, domain, apex_cname, result):
        result.add(
            "dns-unresolved",
            "blocker",
            f"{domain} has no A or AAAA record",
            f"{domain} via {lookup.described}",
            "Point the apex at your host (A/AAAA, or your DNS host's ALIAS): the bare domain "
            "is what people type.",
        )
    present = []
    for sub in SUBDOMAINS:
        name = f"{sub}.{domain}"
        target = lookup.cname(name)
        addrs = lookup.query(name, "A")
        if addrs is None and target is None:
            if sub == "www":
                result.add(
                    "dns-unresolved",
                    "soon",
                    f"{name} does not exist in DNS",
                    name,
                    f"Add www (a CNAME to {domain}, or the same A/AAAA records) and redirect it "
                    "to the canonical host: people type www.",
                )
            continue
        six = lookup.query(name, "AAAA") or []
        if target is not None and _dangling(lookup, name, target, result):
            continue
        present.append(sub)
        seen[name] = (addrs or [], six, target)
    result.notes.append(
        f"{domain}: "
        + ", ".join(f"{s}." for s in present)
        + (" exist" if present else "no www/app/api/admin hosts")
    )
    _consistency(domain, seen, result)


def _dangling(lookup: Lookup, name: str, target: str | None, result: PartResult) -> bool:
    """A CNAME whose target does not exist: report it; True when it dangles."""
    if target is None:
        return False
    if lookup.query(target, "A") is not None or lookup.query(target, "AAAA") is not None:
        return False
    result.add(
        "dns-unresolved",
        "blocker",
        f"{name} is a CNAME to {target}, which does not exist",
        f"{name} CNAME {target}",
        f"Remove the CNAME or re-create {target}: whoever registers that name (a deleted app, "
        "bucket or site on a hosting platform) serves your subdomain, cookies included.",
    )
    return True


def _consistency(
    domain: str, seen: dict[str, tuple[list[str], list[str], str | None]], result: PartResult
) -> None:
    www = f"www.{domain}"
    if domain not in seen or www not in seen:
        return
    a1, six1, _ = seen[domain]
    a2, six2, target = seen[www]
    if target is not None and target.lower() == domain.lower():
        return
    if a1 and a2 and set(a1) != set(a2):
        result.add(
            "dns-inconsistent",
            "later",
            f"{domain} and {www} answer different addresses",
            f"{domain} A {', '.join(a1)}; {www} A {', '.join(a2)}",
            "Fine when one redirects to the other (the redirect check tells); otherwise point "
            "www at the apex (CNAME) so both serve the same site and certificate.",
        )
    if bool(six1) != bool(six2):
        has, lacks = (domain, www) if six1 else (www, domain)
        result.add(
            "dns-inconsistent",
            "later",
            f"{has} has IPv6 (AAAA) and {lacks} does not",
            f"{has} AAAA {', '.join(six1 or six2)}",
            "Publish AAAA for both or neither: IPv6 visitors otherwise reach a different "
            "path than the one you tested.",
        )


def run(options: Options, deadline: float) -> PartResult:
    """The DNS part for every `--domain`."""
    result = PartResult()
    lookup = Lookup.for_part(options, result)
    if lookup is None:
        return result
    for domain in options.domains:
        try:
            _check_domain(lookup, domain, result)
        except LookupFailed as exc:
            result.skipped.append(f"{domain}: {exc}; its DNS was not checked")
    return result
