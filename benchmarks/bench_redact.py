"""Cost of `launchready_sdk.redact` on log events, measured in one run.

Rows:
  (a) a typical access-log event through structlog (add_log_level, TimeStamper iso/utc,
      JSONRenderer with orjson) to a null sink, without redaction;
  (b) the same with `DEFAULT_REDACTOR.processor` placed just before the renderer;
  (c) `redact()` on a 1 KB free-text line holding no secret;
  (d) `redact()` on the same line with one GitHub token in it.

Each row is the median of several rounds (time.perf_counter_ns); the figure that matters is
the ratio b/a, measured in the same process. Run: python benchmarks/bench_redact.py
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

from launchready_sdk.redact import DEFAULT_REDACTOR, redact

ROUNDS = 41
CLOCK = time.perf_counter_ns
UNIQUE_EVENTS = 200_003  # more than one run emits, so no request ID or path repeats
TARGET_RATIO = 1.30
COMMAND = "python benchmarks/bench_redact.py"


class NullLogger:
    """A structlog logger that drops every rendered line."""

    def msg(self, message: object) -> None:
        return None

    info = msg


def make_logger(redacting: bool) -> Any:
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if redacting:
        processors.append(DEFAULT_REDACTOR.processor)
    processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
    return structlog.wrap_logger(
        NullLogger(),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


def access_event(log: Any, rng: random.Random) -> Callable[[], None]:
    """One access-log call per invocation; every call has its own request ID and path."""
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(UNIQUE_EVENTS)]
    request_ids = [f"{i[:8]}-{i[8:12]}-{i[12:16]}-{i[16:20]}-{i[20:]}" for i in ids]
    paths = [f"/users/{rng.randrange(10**9)}/orders" for _ in range(UNIQUE_EVENTS)]
    counter = iter(range(10**12))

    def emit() -> None:
        n = next(counter) % UNIQUE_EVENTS
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
    words = [
        "user",
        "request",
        "handled",
        "GET",
        "/api/v1/items",
        "status",
        "ok",
        "latency",
        "cache",
        "miss",
        "the",
        "for",
        "with",
        "order",
        "ORD-2024-000123",
        "id",
        "took",
        "12.5ms",
        "price",
        "$19.99",
        "retry",
        "upstream",
        "3f2b6c1e-9a4d-4c1b",
    ]
    line = " ".join(rng.choice(words) for _ in range(400))[:1024]
    if secret is not None:
        line = line[:500] + " " + secret + " " + line[500 : 1024 - len(secret) - 2]
    return line


def per_op_us(fn: Callable[[], object], number: int) -> float:
    start = CLOCK()
    for _ in range(number):
        fn()
    return (CLOCK() - start) / number / 1000


def interleaved(fns: list[Callable[[], object]], number: int) -> list[list[float]]:
    """Per-round µs/op of each function; within a round the functions run back to back, in an
    order that alternates between rounds, so load from other processes hits them alike."""
    samples: list[list[float]] = [[] for _ in fns]
    for round_no in range(ROUNDS):
        order = list(enumerate(fns))
        if round_no % 2:
            order.reverse()
        for i, fn in order:
            samples[i].append(per_op_us(fn, number))
    return samples


def main() -> None:
    rng = random.Random(7)
    plain, redacting = access_event(make_logger(False), rng), access_event(make_logger(True), rng)
    clean_line = free_text_line(rng, None)
    token = (
        "gh" + "p_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(36))
    )
    secret_line = free_text_line(rng, token)
    assert token not in str(redact(secret_line)), "the benchmark secret was not redacted"

    interleaved([plain, redacting], 500)  # warm caches and the interpreter
    a_samples, b_samples = interleaved([plain, redacting], 2_000)
    c_samples, d_samples = interleaved(
        [lambda: redact(clean_line), lambda: redact(secret_line)], 200
    )
    a, b = statistics.median(a_samples), statistics.median(b_samples)
    c, d = statistics.median(c_samples), statistics.median(d_samples)
    ratio = statistics.median(y / x for x, y in zip(a_samples, b_samples, strict=True))
    print(f"Python {platform.python_version()} on {platform.machine()}, {ROUNDS} rounds, medians")
    print(f"command: {COMMAND}\n")
    print("| case | µs/op | ratio |")
    print("|---|---:|---:|")
    print(f"| (a) access event, structlog JSON, no redaction | {a:.2f} | 1.00 |")
    print(f"| (b) same + `DEFAULT_REDACTOR.processor` | {b:.2f} | {ratio:.2f} |")
    print(f"| (c) `redact()` 1 KB free text, no secret | {c:.2f} | |")
    print(f"| (d) `redact()` 1 KB free text, one token | {d:.2f} | |")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"\ntarget b/a <= {TARGET_RATIO:.2f}: {verdict} ({ratio:.2f})")


if __name__ == "__main__":
    main()
