"""Cost of `launchready_sdk.redaction` on log events, measured in one run.

Rows:
  (a) an access-log event (10 fields, plus level and timestamp) through structlog
      (add_log_level, TimeStamper iso/utc, JSONRenderer with orjson) to a null sink;
  (b) the same with `DEFAULT_REDACTOR.processor` placed just before the renderer; every event
      has a request ID and a path never seen before (the worst case: one line per request);
  (b') as (b), but the request ID and path were seen before (a later line of the same request);
  (c) `redact()` on a 1 KB free-text line holding no secret;
  (d) `redact()` on the same line with one GitHub token in it.

Rows run interleaved, round after round, in alternating order; each figure is the median of
the rounds (time.perf_counter_ns), and the ratios are medians of per-round ratios, so load
from other processes on the machine affects both sides alike. Run:

    python benchmarks/bench_redact.py
"""

from __future__ import annotations

import logging
import platform
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from launchready_sdk.redaction import DEFAULT_REDACTOR, Redactor, redact

ROUNDS = 41
EVENTS_PER_ROUND = 2_000
LINES_PER_ROUND = 200
UNIQUE_EVENTS = 200_003  # more than a run emits: no request ID or path comes back
SEEN_EVENTS = 64  # few enough to stay in the redactor's cache of clean strings
TARGET_RATIO = 1.30
COMMAND = "python benchmarks/bench_redact.py"
WORDS = (
    "user request handled GET /api/v1/items status ok latency cache miss the for with order "
    "ORD-2024-000123 id took 12.5ms price $19.99 retry upstream 3f2b6c1e-9a4d-4c1b"
)


class NullLogger:
    """A structlog logger that drops every rendered line."""

    def msg(self, message: object) -> None:
        return None

    info = msg


def make_logger(redactor: Redactor | None) -> Any:
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if redactor is not None:
        processors.append(redactor.processor)
    processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
    return structlog.wrap_logger(
        NullLogger(),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


def access_event(log: Any, rng: random.Random, distinct: int) -> Callable[[], None]:
    """One access-log call per invocation, cycling through `distinct` request IDs and paths."""
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(distinct)]
    request_ids = [f"{i[:8]}-{i[8:12]}-{i[12:16]}-{i[16:20]}-{i[20:]}" for i in ids]
    paths = [f"/users/{rng.randrange(10**9)}/orders" for _ in range(distinct)]
    counter = iter(range(10**12))

    def emit() -> None:
        n = next(counter) % distinct
        log.info(
            "request.finished",
            method="GET",
            route="/users/{user_id}/orders",
            path=paths[n],
            status=200,
            duration_ms=12.345,
            bytes=5120,
            client_ip="203.0.113.7",
            request_id=request_ids[n],
            logger="launchready.access",
        )

    return emit


def free_text_line(rng: random.Random, secret: str | None) -> str:
    words = WORDS.split()
    line = " ".join(rng.choice(words) for _ in range(400))[:1024]
    if secret is not None:
        line = line[:500] + " " + secret + " " + line[500 : 1024 - len(secret) - 2]
    return line


def per_op_us(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return (time.perf_counter_ns() - start) / number / 1000


def interleaved(fns: list[Callable[[], object]], number: int) -> list[list[float]]:
    """Per-round µs/op of each function, run back to back in an order alternating by round."""
    samples: list[list[float]] = [[] for _ in fns]
    for round_no in range(ROUNDS):
        order = list(enumerate(fns))
        if round_no % 2:
            order.reverse()
        for i, fn in order:
            samples[i].append(per_op_us(fn, number))
    return samples


def ratios(base: list[float], other: list[float]) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratios other/base."""
    values = sorted(y / x for x, y in zip(base, other, strict=True))
    q1, median, q3 = statistics.quantiles(values, n=4)
    return median, q1, q3


def main() -> None:
    rng = random.Random(7)
    plain = access_event(make_logger(None), rng, UNIQUE_EVENTS)
    fresh = access_event(make_logger(DEFAULT_REDACTOR), rng, UNIQUE_EVENTS)
    seen = access_event(make_logger(Redactor()), rng, SEEN_EVENTS)
    token = "gh" + "p_" + "".join(rng.choice("abcdefghijklmnop0123456789") for _ in range(36))
    clean_line, secret_line = free_text_line(rng, None), free_text_line(rng, token)
    if token in str(redact(secret_line)):
        raise SystemExit("the benchmark secret was not redacted")

    interleaved([plain, fresh, seen], 500)  # warm the interpreter and the caches
    a, b, b2 = interleaved([plain, fresh, seen], EVENTS_PER_ROUND)
    c, d = interleaved([lambda: redact(clean_line), lambda: redact(secret_line)], LINES_PER_ROUND)
    print_table(a, b, b2, c, d)


def print_table(
    a: list[float], b: list[float], b2: list[float], c: list[float], d: list[float]
) -> None:
    """The results as markdown rows, ready for benchmarks/RESULTS.md."""
    med = statistics.median
    ratio, low, high = ratios(a, b)
    ratio2, low2, high2 = ratios(a, b2)
    print(f"Python {platform.python_version()} on {platform.machine()}; {ROUNDS} rounds, medians")
    print(f"command: {COMMAND}\n")
    print("| case | µs/op | vs (a) (quartiles) |")
    print("|---|---:|---:|")
    print(f"| (a) access event, structlog JSON, no redaction | {med(a):.2f} | 1.00 |")
    print(
        f"| (b) + `DEFAULT_REDACTOR.processor`, new request ID and path | {med(b):.2f} "
        f"| {ratio:.2f} ({low:.2f}-{high:.2f}) |"
    )
    print(
        f"| (b') + processor, request ID and path seen before | {med(b2):.2f} "
        f"| {ratio2:.2f} ({low2:.2f}-{high2:.2f}) |"
    )
    print(f"| (c) `redact()` 1 KB free text, no secret | {med(c):.2f} | |")
    print(f"| (d) `redact()` 1 KB free text, one token | {med(d):.2f} | |")
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    print(f"\ntarget b/a <= {TARGET_RATIO:.2f}: {verdict} (b/a = {ratio:.2f})")


if __name__ == "__main__":
    main()
