"""Per-call cost of client-address resolution, path normalisation and pattern matching.

Run: `python benchmarks/bench_proxy.py`. Prints a markdown table of median ns/op over several
rounds (time.perf_counter_ns), ready to paste into benchmarks/RESULTS.md. The baseline row
(a bare dict lookup on the scope) puts the other figures in proportion. Repeated inputs hit
the module's LRU caches; the "10k distinct clients" and "uncached" rows show the cost without.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

from launchready_sdk.patterns import PatternTable, normalize_path
from launchready_sdk.proxy import ProxyResolver

ROUNDS = 7
CALLS = 100_000


def _headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    common = [("host", "api.example.com"), ("user-agent", "curl/8.5"), ("accept", "*/*")]
    return [(k.encode(), v.encode()) for k, v in [*common, *pairs]]


def _scope(peer: str, *pairs: tuple[str, str]) -> dict[str, Any]:
    return {"type": "http", "scheme": "http", "client": (peer, 51234), "headers": _headers(*pairs)}


def measure(call: Callable[[], object]) -> float:
    """Median ns per call over ROUNDS rounds of CALLS calls."""
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(CALLS):
            call()
        samples.append((time.perf_counter_ns() - start) / CALLS)
    return statistics.median(samples)


def cases() -> list[tuple[str, Callable[[], object]]]:
    """The operations to time, each as a zero-argument callable."""
    plain = ProxyResolver()
    trusted = ProxyResolver(["10.0.0.0/8", "127.0.0.1"])
    direct = _scope("203.0.113.9", ("x-forwarded-for", "6.6.6.6"))
    proxied = _scope("10.0.0.5", ("x-forwarded-for", "203.0.113.9, 10.0.0.7"))
    patterns = {f"/api/v1/resource{i}": i for i in range(6)}
    patterns |= {"/products/{id}": 6, "/users/{uid}/orders": 7, "/webhooks/*": 8, "/static/*": 9}
    cold = itertools.cycle(
        [
            _scope("10.0.0.5", ("x-forwarded-for", f"203.0.{i // 256}.{i % 256}"))
            for i in range(10_000)
        ]
    )
    exact_only = PatternTable({f"/api/v1/resource{i}": i for i in range(10)})
    table = PatternTable(patterns)
    return [
        ("baseline: scope['client'][0]", lambda: direct["client"][0]),
        ("client_ip, no trusted proxies", lambda: plain.client_ip(direct)),
        ("client_ip, trusted peer, 2-entry XFF", lambda: trusted.client_ip(proxied)),
        ("client_ip, trusted peer, 10k distinct clients", lambda: trusted.client_ip(next(cold))),
        ("client_ip, untrusted peer, proxies set", lambda: trusted.client_ip(direct)),
        ("scheme, no trusted proxies", lambda: plain.scheme(direct)),
        ("normalize_path('/api/v1/users/42')", lambda: normalize_path("/api/v1/users/42")),
        ("normalize_path('/api//v1/./users/42/')", lambda: normalize_path("/api//v1/./users/42/")),
        ("match exact hit, 10 patterns", lambda: table.match("/api/v1/resource3")),
        ("match wildcard hit, 10 patterns", lambda: table.match("/users/42/orders")),
        ("match miss, 10 patterns", lambda: table.match("/nothing/here")),
        ("match wildcard hit, uncached", lambda: table._lookup("/users/42/orders")),
        ("match miss, uncached", lambda: table._lookup("/nothing/here")),
        ("match exact hit, 10 exact-only", lambda: exact_only.match("/api/v1/resource3")),
        ("match miss, 10 exact-only", lambda: exact_only.match("/nothing/here")),
    ]


def main() -> None:
    """Print the table."""
    rows = [(name, measure(call)) for name, call in cases()]
    baseline = rows[0][1]
    print(f"| operation | ns/op (median of {ROUNDS}) | x baseline |")
    print("|---|---:|---:|")
    for name, ns in rows:
        print(f"| {name} | {ns:.0f} | {ns / baseline:.1f} |")


if __name__ == "__main__":
    main()
