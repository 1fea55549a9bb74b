"""Virtual users and the two load models.

Each virtual user has a number, its own client address (sent as `X-Forwarded-For`, so
per-client limits see many clients), and the variables its setup captured. A user runs one
flow at a time, so its cart and its checkout do not race each other.

Open model (`rate`): flows arrive on a fixed schedule, `rate / mean requests per flow` a
second, whatever the server does. An arrival waits for an idle user, then sends its first
request; that request's latency is measured from the *scheduled* arrival, so a server that
stalls is charged for the queue it builds (no coordinated omission). Later steps of a flow are
timed from their own send, since they could not have been sent earlier.

Closed model (`users`): every user sends its flows back to back; latency is from the send.

The generator watches itself: how late arrivals are dispatched, how late the event loop wakes,
and how much CPU it uses. `GeneratorHealth.reasons` lists why its figures may describe the
generator rather than the server.

Every request ends in the results, whatever happens to it: a response that breaks HTTP/1.1
framing is an error of kind "protocol", and a fault of the bench itself (a request it could not
encode, a parser bug) is an error of kind "internal error". Both are counted per request and
described once, by their first occurrence, in `GeneratorHealth`.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import itertools
import json
import random
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from launchready_sdk.cli.client import ClientError, Pool, Response
from launchready_sdk.cli.scenario import Flow, Scenario, Step
from launchready_sdk.cli.stats import Recorder, percentile
from launchready_sdk.cli.template import TemplateError
from launchready_sdk.cli.wire import encode_request

DISPATCH_LAG_LIMIT_S = 0.010
LOOP_LAG_LIMIT_S = 0.020
CPU_SHARE_LIMIT = 0.90
HELD_RATE_SHARE = 0.95  # the open model holds its rate when it sends at least this share
MAX_WAITING_ARRIVALS = 20_000
SETUP_CONCURRENCY = 4
USER_AGENT = "launchready-bench"
_MONITOR_INTERVAL_S = 0.02
_now = time.perf_counter  # the clock of every timestamp; the loop's may tick in whole ms
_FAILED_FLOW_PAUSE_S = 0.01
_CATCH_UP_BATCH = 64
_DISPATCH_TICK_S = 0.001  # uvloop's timers count whole milliseconds
INTERNAL_ERROR = "internal error"  # the error kind of a request the bench itself failed


@dataclasses.dataclass(frozen=True, slots=True)
class LoadPlan:
    """How much load, for how long."""

    model: Literal["open", "closed"]
    users: int
    duration_s: float
    warmup_s: float
    rate: float | None = None


class Arrivals:
    """The open model's queue of scheduled arrivals, and how many users wait on it."""

    __slots__ = ("idle", "queue")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[float | None] = asyncio.Queue()
        self.idle = 0


@dataclasses.dataclass(slots=True)
class Outcome:
    """How one request went: its status (0: no response), the error (None: as expected), the
    response when one came, and when it was actually sent."""

    status: int
    error: str | None
    response: Response | None = None
    sent_at: float | None = None


@dataclasses.dataclass(slots=True)
class VirtualUser:
    index: int
    ip: str
    values: dict[str, Any]
    recent: dict[str, deque[float]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class GeneratorHealth:
    """Whether the generator kept up; `saturated` when any reason was found."""

    requested_rps: float | None = None
    achieved_rps: float | None = None  # requests actually sent per second of the window
    held_rate: bool | None = None  # open model: False when the generator fell behind
    dispatch_lag_p95_ms: float | None = None
    loop_lag_p95_ms: float | None = None
    cpu_share: float | None = None
    waited_for_user: int = 0
    not_sent: int = 0
    reasons: list[str] = dataclasses.field(default_factory=list)
    protocol_errors: int = 0  # responses that broke HTTP/1.1 framing
    first_protocol_error: str | None = None
    internal_errors: int = 0  # requests the bench itself failed: never a pass
    first_internal_error: str | None = None

    def note_protocol(self, route: str, message: str) -> None:
        self.protocol_errors += 1
        if self.first_protocol_error is None:
            self.first_protocol_error = f"{route}: {message}"

    def note_internal(self, route: str, exc: BaseException) -> str:
        """Count a fault of the bench's own; the error kind to record."""
        self.internal_errors += 1
        if self.first_internal_error is None:
            self.first_internal_error = f"{route}: {describe_fault(exc)}"
        return INTERNAL_ERROR

    @property
    def saturated(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {"saturated": self.saturated, **dataclasses.asdict(self)}


class LoadGenerator:
    """Runs a scenario against one origin through `pool`, recording into `recorder`."""

    def __init__(
        self,
        pool: Pool,
        scenario: Scenario,
        recorder: Recorder,
        *,
        run_id: str,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.scenario = scenario
        self.recorder = recorder
        self.run_id = run_id
        self.rng = rng or random.Random()
        self._net = self.rng.randrange(1, 255)
        self._cum = list(itertools.accumulate(f.weight for f in scenario.flows))
        self._dispatch_lags: list[float] = []
        self._loop_lags: list[float] = []
        self._health = GeneratorHealth()

    # --- users ---------------------------------------------------------------------------------

    def new_user(self, index: int) -> VirtualUser:
        """User `index` (from 1) with its address and `[vars]` rendered."""
        ip = f"10.{self._net}.{(index >> 8) & 255}.{index & 255}"
        values: dict[str, Any] = {"vu": index, "ip": ip, "run": self.run_id}
        for name, template in self.scenario.vars:
            values[name] = template.value(values)
        return VirtualUser(index, ip, values)

    async def setup_users(self, n: int) -> tuple[list[VirtualUser], Counter[str]]:
        """Create `n` users and run the setup steps of each; (ready users, setup errors)."""
        users = [self.new_user(i) for i in range(1, n + 1)]
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(user: VirtualUser) -> str | None:
            async with gate:
                for step in self.scenario.setup:
                    error = (await self._send(user, step)).error
                    if error is not None:
                        return f"{step.route}: {error}"
                return None

        results = await asyncio.gather(*(one(u) for u in users))
        errors = Counter(e for e in results if e is not None)
        return [u for u, e in zip(users, results, strict=True) if e is None], errors

    # --- requests ------------------------------------------------------------------------------

    @property
    def health(self) -> GeneratorHealth:
        """What the generator noticed so far (setup included)."""
        return self._health

    async def send(
        self, user: VirtualUser, step: Step, extra: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        """How one step for `user` went (with `extra` headers); captures land in `user.values`.
        Never raises (but for cancellation): whatever goes wrong is an error of the step."""
        return await self._send(user, step, extra)

    async def _send(
        self, user: VirtualUser, step: Step, extra: Sequence[tuple[str, str]] = ()
    ) -> Outcome:
        try:
            target, headers, body = step.build(user.values)
            data = encode_request(
                step.method,
                self.pool.origin.prefix + target,
                self.pool.origin.host_header,
                [*self._headers(user, headers), *extra],
                body,
            )
        except (TemplateError, ValueError) as exc:
            return Outcome(0, f"request not built: {exc}")
        except Exception as exc:
            return Outcome(0, self._health.note_internal(step.route, exc))
        sent_at = _now()
        try:
            response = await self.pool.send(data, head_only=step.method == "HEAD")
        except ClientError as exc:
            if exc.kind == "internal":
                return Outcome(0, self._health.note_internal(step.route, exc), sent_at=sent_at)
            if exc.kind == "protocol":
                self._health.note_protocol(step.route, str(exc))
            return Outcome(0, exc.kind, sent_at=sent_at)
        except Exception as exc:
            return Outcome(0, self._health.note_internal(step.route, exc), sent_at=sent_at)
        outcome = Outcome(response.status, None, response, sent_at)
        if response.status not in step.expect:
            outcome.error = f"status {response.status}"
        elif step.capture:
            try:
                outcome.error = _capture(user.values, step.capture, response)
            except Exception as exc:
                outcome.error = self._health.note_internal(step.route, exc)
        return outcome

    def _headers(self, user: VirtualUser, own: list[tuple[str, str]]) -> list[tuple[str, str]]:
        names = {name.lower() for name, _ in own}
        base = [("User-Agent", USER_AGENT)]
        if self.scenario.forwarded_for:
            base.append(("X-Forwarded-For", user.ip))
        base.extend((name, t.render(user.values)) for name, t in self.scenario.headers)
        return [h for h in base if h[0].lower() not in names] + own

    async def _step(self, user: VirtualUser, step: Step, start: float) -> tuple[bool, bool]:
        """Send and record one measured step: (succeeded, got a response)."""
        try:
            outcome = await self._send(user, step)
        except asyncio.CancelledError:  # cut off when the run ended: an unanswered request
            self.recorder.add(step.route, start, _now(), 0, "timeout")
            raise
        except Exception as exc:  # never a request that vanishes from the results
            outcome = Outcome(0, self._health.note_internal(step.route, exc))
        response = outcome.response
        if response is None or step.method == "HEAD":
            size, json_body = -1, False
        else:
            size = len(response.body)
            json_body = "json" in response.headers.get("content-type", "")
        status, error = outcome.status, outcome.error
        self.recorder.add(
            step.route, start, _now(), status, error, size, json_body, outcome.sent_at
        )
        return error is None, status != 0

    # --- flows ---------------------------------------------------------------------------------

    def _pick(self) -> Flow:
        flows = self.scenario.flows
        i = bisect.bisect_right(self._cum, self.rng.random() * self._cum[-1])
        return flows[min(i, len(flows) - 1)]

    def _allowed(self, user: VirtualUser, flow: Flow, now: float) -> bool:
        cap = flow.max_per_user_per_minute
        if cap is None:
            return True
        recent = user.recent.setdefault(flow.name, deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        return len(recent) < cap

    def _choose(self, user: VirtualUser, flow: Flow, now: float) -> Flow | None:
        """`flow`, or another one when `user` has used up its per-minute share of it."""
        if not self._allowed(user, flow, now):
            others = [f for f in self.scenario.flows if self._allowed(user, f, now)]
            if not others:
                return None
            flow = self.rng.choices(others, weights=[f.weight for f in others])[0]
        if flow.max_per_user_per_minute is not None:
            user.recent[flow.name].append(now)
        return flow

    async def _run_flow(self, user: VirtualUser, flow: Flow, start: float, end: float) -> bool:
        """The steps of `flow` in order, none started after `end`; False when one failed."""
        for i, step in enumerate(flow.steps):
            if i and _now() >= end:
                return True
            ok, _ = await self._step(user, step, start)
            if not ok:
                return False
            start = _now()
        return True

    async def _open_user(self, user: VirtualUser, arrivals: Arrivals, end: float) -> None:
        """One virtual user of the open model: takes the next arrival, runs a flow from it."""
        while True:
            arrivals.idle += 1
            try:
                scheduled = await arrivals.queue.get()
            finally:
                arrivals.idle -= 1
            if scheduled is None:
                return
            chosen = self._choose(user, self._pick(), _now())
            if chosen is not None:
                await self._run_flow(user, chosen, scheduled, end)

    async def _closed_user(self, user: VirtualUser, end: float) -> None:
        while _now() < end:
            flow = self._choose(user, self._pick(), _now())
            if flow is None or not await self._run_flow(user, flow, _now(), end):
                await asyncio.sleep(_FAILED_FLOW_PAUSE_S)  # no busy loop on a dead server

    # --- the run -------------------------------------------------------------------------------

    async def run(self, plan: LoadPlan, users: Sequence[VirtualUser]) -> GeneratorHealth:
        """Warm up, measure for `plan.duration_s`, then wait for the requests in flight."""
        loop = asyncio.get_running_loop()
        start = _now()
        window = start + plan.warmup_s
        end = window + plan.duration_s
        self.recorder.open_window(window, end)
        cpu: list[float] = []
        loop.call_later(plan.warmup_s, lambda: cpu.append(time.process_time()))
        monitor = asyncio.create_task(self._monitor(window, end))
        arrivals: Arrivals | None = None
        if plan.model == "open" and plan.rate is not None:
            arrivals = Arrivals()
            tasks = [asyncio.create_task(self._open_user(u, arrivals, end)) for u in users]
            await asyncio.sleep(0)  # every user waits on the queue before the first arrival
            await self._open(plan.rate, arrivals, start, window, end)
            for _ in tasks:
                arrivals.queue.put_nowait(None)  # each user stops once the queue is empty
        else:
            tasks = [asyncio.create_task(self._closed_user(u, end)) for u in users]
            await asyncio.sleep(max(0.0, end - _now()))
        cpu_share = (time.process_time() - cpu[0]) / plan.duration_s if cpu else None
        await self._drain(tasks, arrivals)
        await monitor
        return self._judge(plan, cpu_share)

    async def _open(
        self, rate: float, arrivals: Arrivals, start: float, window: float, end: float
    ) -> None:
        """Put arrivals on the queue on schedule: every one due is put at once, then the
        dispatcher sleeps until the next (a sleep per arrival would cost more than the send)."""
        interval = self.scenario.mean_requests_per_flow / rate
        queue = arrivals.queue
        n = 0
        while True:
            now = _now()
            batch = 0
            while True:
                scheduled = start + n * interval
                if scheduled >= end:
                    return
                if scheduled > now:
                    break
                n += 1
                if scheduled >= window:
                    self._dispatch_lags.append(now - scheduled)
                if queue.qsize() >= MAX_WAITING_ARRIVALS:
                    self._health.not_sent += 1
                    self.recorder.add_unsent(self._pick().steps[0].route, scheduled)
                    continue
                if arrivals.idle <= queue.qsize():
                    self._health.waited_for_user += 1
                queue.put_nowait(scheduled)
                batch += 1
                if batch >= _CATCH_UP_BATCH:
                    break  # behind schedule: let responses in between batches
            if batch >= _CATCH_UP_BATCH:
                await asyncio.sleep(0)
            else:  # at least a tick of the loop's timers: shorter sleeps would spin
                await asyncio.sleep(max(_DISPATCH_TICK_S, start + n * interval - _now()))

    async def _drain(self, tasks: list[asyncio.Task[None]], arrivals: Arrivals | None) -> None:
        """Wait for the requests in flight; what is still unanswered after the timeout (and
        every arrival still queued) is a timeout."""
        if not tasks:
            return
        _, pending = await asyncio.wait(set(tasks), timeout=self.pool.timeout_s + 1.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if arrivals is None:
            return
        now = _now()
        while not arrivals.queue.empty():
            scheduled = arrivals.queue.get_nowait()
            if scheduled is not None:
                self.recorder.add(self._pick().steps[0].route, scheduled, now, 0, "timeout")

    async def _monitor(self, window: float, end: float) -> None:
        while _now() < end:
            before = _now()
            await asyncio.sleep(_MONITOR_INTERVAL_S)
            if before >= window:
                self._loop_lags.append(_now() - before - _MONITOR_INTERVAL_S)

    def _judge(self, plan: LoadPlan, cpu_share: float | None) -> GeneratorHealth:
        health = self._health
        health.requested_rps = plan.rate
        health.achieved_rps = round(self.recorder.sent_in_window / plan.duration_s, 3)
        dispatch = percentile(sorted(self._dispatch_lags), 0.95)
        loop_lag = percentile(sorted(self._loop_lags), 0.95)
        health.dispatch_lag_p95_ms = None if dispatch is None else round(dispatch * 1000, 3)
        health.loop_lag_p95_ms = None if loop_lag is None else round(loop_lag * 1000, 3)
        health.cpu_share = None if cpu_share is None else round(cpu_share, 3)
        if dispatch is not None and dispatch > DISPATCH_LAG_LIMIT_S:
            health.reasons.append(
                f"arrivals left p95 {dispatch * 1000:.0f} ms behind schedule "
                f"(limit {DISPATCH_LAG_LIMIT_S * 1000:.0f} ms)"
            )
        if loop_lag is not None and loop_lag > LOOP_LAG_LIMIT_S:
            health.reasons.append(
                f"the generator's event loop woke p95 {loop_lag * 1000:.0f} ms late "
                f"(limit {LOOP_LAG_LIMIT_S * 1000:.0f} ms)"
            )
        if cpu_share is not None and cpu_share > CPU_SHARE_LIMIT:
            health.reasons.append(f"the generator used {cpu_share:.0%} of a CPU core")
        if health.not_sent:
            health.reasons.append(
                f"{health.not_sent} arrivals were not sent: more than "
                f"{MAX_WAITING_ARRIVALS} were already waiting for a free virtual user"
            )
        if plan.model == "open" and plan.rate:
            fell_behind = health.achieved_rps < plan.rate * HELD_RATE_SHARE
            # Behind because every user was busy is the app's slowness, not the generator's.
            health.held_rate = not (fell_behind and bool(health.reasons))
        return health

    def cannot_hold(self) -> str | None:
        """Why the open model did not hold its rate through the generator's own fault."""
        health = self._health
        if health.held_rate is not False or not health.requested_rps:
            return None
        achieved, requested = health.achieved_rps or 0.0, health.requested_rps
        return (
            f"the load generator could not hold the requested rate: it sent {achieved:,.0f} "
            f"requests/s of the {requested:,.0f} requested ({achieved / requested:.0%}); "
            + "; ".join(health.reasons)
            + ". These figures describe the bench, not the app: lower --rate, or run the bench "
            "on a machine of its own"
        )


def _capture(values: dict[str, Any], capture: Mapping[str, str], response: Response) -> str | None:
    """Store captured values; an error message when one is missing."""
    document: Any = None
    parsed = False
    for name, where in capture.items():
        if where.startswith("header:"):
            value = response.headers.get(where[7:].lower())
        else:
            if not parsed:
                try:
                    document = orjson.loads(response.body)
                except orjson.JSONDecodeError:
                    return f"capture {name}: the response is not JSON"
                parsed = True
            value = _dig(document, where)
            if isinstance(value, float):  # orjson reads integers over 64 bits as floats
                value = _dig(json.loads(response.body), where)
        if value is None:
            return f"capture {name}: {where} not in the response"
        values[name] = value
    return None


def describe_fault(exc: BaseException) -> str:
    """`Type: message (file:line)` of an exception's innermost frame, for a bug report."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = ""
    if tb is not None:
        code = tb.tb_frame.f_code
        where = f" ({code.co_filename.rsplit('/', 2)[-1]}:{tb.tb_lineno} in {code.co_name})"
    text = str(exc)
    text = text if len(text) <= 200 else text[:199] + "\u2026"
    return f"{type(exc).__name__}: {text}{where}" if text else type(exc).__name__ + where


def _dig(document: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(document, dict):
            document = document.get(part)
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return None
    return document
