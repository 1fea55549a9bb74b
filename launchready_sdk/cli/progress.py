"""The live progress line on stderr: a bar redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import asyncio
from typing import TextIO

from launchready_sdk.cli.stats import Recorder, percentile

TTY_INTERVAL_S = 0.5
PLAIN_INTERVAL_S = 5.0
_BAR = 24


class Progress:
    """Reports completed requests, their rate, p95 and errors while the run goes on."""

    def __init__(self, recorder: Recorder, stream: TextIO, warmup_s: float, duration_s: float):
        self.recorder = recorder
        self.stream = stream
        self.warmup_s = warmup_s
        self.duration_s = duration_s
        self.tty = stream.isatty()
        self.errors = 0

    async def run(self) -> None:
        """Draw until cancelled."""
        loop = asyncio.get_running_loop()
        start = last = loop.time()
        interval = TTY_INTERVAL_S if self.tty else PLAIN_INTERVAL_S
        try:
            while True:
                await asyncio.sleep(interval)
                now = loop.time()
                self.draw(now - start, now - last)
                last = now
        finally:
            if self.tty:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()

    def draw(self, elapsed: float, span: float) -> None:
        done, errors, latencies = self.recorder.take_live()
        self.errors += errors
        total = self.warmup_s + self.duration_s
        phase = "warm-up" if elapsed < self.warmup_s else "measuring"
        p95 = percentile(sorted(latencies), 0.95)
        p95_text = "-" if p95 is None else f"{p95 * 1000:.1f} ms"
        text = (
            f"{phase} {min(elapsed, total):5.1f}/{total:g} s  {done / span:7.1f} req/s  "
            f"p95 {p95_text}  errors {self.errors}"
        )
        if self.tty:
            filled = int(_BAR * min(elapsed / total, 1.0)) if total else _BAR
            bar = "#" * filled + "." * (_BAR - filled)
            self.stream.write(f"\r\x1b[2K[{bar}] {text}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
