"""The scheduler: every target on its own timer, checks, the state machine, store and alerts.

Each target is one task on the monotonic clock: it sleeps until its check is due, checks,
feeds the outcome to `advance` (`_state.py`), logs one line, and acts on the step (open or
close an incident in the store, deliver alerts), then sleeps until the next due time. A slow or
hanging target delays nobody else. First checks are spread over the interval (at most
`STAGGER_S` apart), so a thousand targets do not start in one burst.

The canary: when a failure would open an incident, the canary URL is checked at the same
time (one canary check is shared by every target that needs one within a second). If it fails
too, the probe's own network is down: the outcome is "blind", nothing is paged, and one
`probe.blind` line says so until the canary answers again (`probe.sighted`).

`--once` runs each target until its state is settled (up; or down with its incident open),
with the same retries and alerts, then exits 0 when every target is up and 1 otherwise.

Security stance: a failing store, channel or check is logged and the target keeps its
schedule (an unexpected error costs one retry interval, never the process), and every alert
is bounded: one `down` and one `up` per incident per channel, plus bounded redelivery.

Limits, candidly: an alert a channel missed is retried at the target's next checks, at most
`MAX_DELIVERY_ROUNDS` times per incident, then abandoned with an error line; a receiver that
keeps failing after accepting would otherwise get a copy per check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from collections.abc import Callable, Sequence

import httpx

from launchready_sdk.cli.probe._channels import Alert, Channel, deliver, iso
from launchready_sdk.cli.probe._check import Checker
from launchready_sdk.cli.probe._state import (
    Outcome,
    Phase,
    Policy,
    Step,
    TargetState,
    adopted,
    advance,
    needs_canary,
)
from launchready_sdk.cli.probe._store import Incident, IncidentStore
from launchready_sdk.cli.probe._targets import Target
from launchready_sdk.logs import get_logger

STAGGER_S = 0.05
ONCE_STAGGER_S = 0.005
CANARY_SHARE_S = 1.0
MAX_DELIVERY_ROUNDS = 10
EXIT_UP, EXIT_DOWN = 0, 1

_log = get_logger("launchready.probe")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    targets: tuple[Target, ...]
    policy: Policy = dataclasses.field(default_factory=Policy)
    canary: Target | None = None
    heartbeat: str | None = None
    once: bool = False


@dataclasses.dataclass
class _Watch:
    """One target's live state."""

    target: Target
    state: TargetState = dataclasses.field(default_factory=TargetState)
    incident: Incident | None = None  # the open incident
    closing: Incident | None = None  # a closed incident whose `up` alerts are still due
    blind: int = 0  # blind outcomes in a row


class Canary:
    """The probe's own connectivity: a URL that should always answer."""

    def __init__(self, target: Target, checker: Checker, clock: Callable[[], float]) -> None:
        self.target = target
        self._checker = checker
        self._clock = clock
        self._task: asyncio.Task[Outcome] | None = None
        self._started = -math.inf
        self._blind_since: float | None = None

    async def answers(self, since: float) -> bool:
        """Whether a canary check started at `since` (or within a second before) passed."""
        if self._task is None or self._started < since - CANARY_SHARE_S:
            self._started = self._clock()
            self._task = asyncio.get_running_loop().create_task(self._checker.check(self.target))
        outcome = await asyncio.shield(self._task)
        if not outcome.ok and self._blind_since is None:
            self._blind_since = outcome.started
            _log.error(
                "probe.blind",
                canary=self.target.url,
                reason=outcome.reason,
                consequence="the probe's own network is down: no alerts until the canary answers",
            )
        elif outcome.ok and self._blind_since is not None:
            blind_s = round(outcome.started - self._blind_since, 1)
            self._blind_since = None
            _log.info("probe.sighted", canary=self.target.url, blind_s=blind_s)
        return bool(outcome.ok)


class Prober:
    """Runs the configured checks until stopped (or, with `once`, until every state settles)."""

    def __init__(
        self,
        config: ProbeConfig,
        *,
        checker: Checker,
        store: IncidentStore,
        channels: Sequence[Channel],
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.policy = config.policy
        self.checker = checker
        self.store = store
        self.channels = list(channels)
        self._client = client
        self._clock = clock
        self._canary = Canary(config.canary, checker, clock) if config.canary else None
        self.watches = [_Watch(t) for t in config.targets]

    async def run(self) -> int:
        """Check until cancelled (or settled, with `once`); the exit status."""
        loaded = await self.store.load([w.target.name for w in self.watches])
        for watch in self.watches:
            incident = loaded.get(watch.target.name)
            if incident is None:
                continue
            if incident.closed is None:
                watch.incident = incident
                watch.state = adopted(incident.since, incident.failures, incident.reason)
                _log.info(
                    "probe.incident_resumed",
                    target=watch.target.name,
                    since_s_ago=round(time.time() - incident.since, 1),
                    sent=sorted(c for c in incident.sent["down"] if self._known(c)),
                )
            else:
                watch.closing = incident
        stagger = ONCE_STAGGER_S if self.config.once else STAGGER_S
        spacing = min(stagger, self.policy.interval_s / max(1, len(self.watches)))
        start = self._clock()
        heartbeat = None
        if self.config.heartbeat and not self.config.once and self._client is not None:
            heartbeat = asyncio.create_task(self._heartbeat(self._client, self.config.heartbeat))
        try:
            await asyncio.gather(
                *(self._watch(w, start + i * spacing) for i, w in enumerate(self.watches))
            )
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
        return self.verdict()

    def verdict(self) -> int:
        """0 when every target's last state is up, else 1."""
        up = all(w.state.phase is Phase.UP and not w.blind for w in self.watches)
        return EXIT_UP if up else EXIT_DOWN

    def _known(self, channel_id: str) -> bool:
        return any(c.id == channel_id for c in self.channels)

    async def _watch(self, watch: _Watch, due: float) -> None:
        retry = False
        if watch.closing is not None:
            await self._send_up(watch)
        while True:
            await asyncio.sleep(max(0.0, due - self._clock()))
            try:
                step = await self._round(watch, due, retry)
            except Exception:  # a bug or an I/O surprise: log it, keep watching
                _log.exception("probe.internal_error", target=watch.target.name)
                if self.config.once:
                    watch.blind = max(watch.blind, 1)  # unknown: not counted as up
                    return
                step = Step(due=self._clock() + self.policy.retry_interval_s, retry=True)
            if self.config.once and (step.settled or watch.blind >= self.policy.failures):
                return
            due, retry = step.due, step.retry

    async def _round(self, watch: _Watch, due: float, retry: bool) -> Step:
        late_ms = round(max(0.0, self._clock() - due) * 1000, 1)
        outcome = await self._observe(watch)
        before = watch.state
        watch.state, step = advance(self.policy, before, outcome)
        watch.blind = watch.blind + 1 if outcome.ok is None else 0
        self._log_check(watch, outcome, late_ms, retry)
        if step.opened:
            await self._open(watch)
        elif step.closed:
            await self._close(watch, outcome, before.failures)
        elif outcome.ok is False and watch.state.phase is Phase.DOWN:
            step = await self._still_down(watch, outcome, step)
        elif outcome.ok and watch.closing is not None:
            await self._send_up(watch)  # an `up` a channel missed at the close
        return step

    async def _observe(self, watch: _Watch) -> Outcome:
        if self._canary is None or not needs_canary(self.policy, watch.state):
            return await self.checker.check(watch.target)
        since = self._clock()
        outcome, canary_ok = await asyncio.gather(
            self.checker.check(watch.target), self._canary.answers(since)
        )
        if outcome.ok or canary_ok:
            return outcome
        reason = f"{outcome.reason}; the canary failed too (the probe is blind)"
        return dataclasses.replace(outcome, ok=None, reason=reason)

    def _log_check(self, watch: _Watch, outcome: Outcome, late_ms: float, retry: bool) -> None:
        fields: dict[str, object] = {
            "target": watch.target.name,
            "url": watch.target.url,
            "check": "retry" if retry else "scheduled",
            "ok": bool(outcome.ok),
            "status": outcome.status,
            "latency_ms": outcome.latency_ms,
            "phase": str(watch.state.phase),
            "failures": watch.state.failures,
            "late_ms": late_ms,
        }
        if outcome.ok is None:
            fields["blind"] = True
        if outcome.reason:
            fields["reason"] = outcome.reason
        if outcome.ok:
            _log.info("probe.check", **fields)
        else:
            _log.warning("probe.check", **fields)

    # -- incidents ---------------------------------------------------------------------------

    async def _open(self, watch: _Watch) -> None:
        state = watch.state
        target = watch.target
        fresh = Incident(
            key=target.name,
            id=uuid.uuid4().hex,
            target=target.url,
            since=state.since_wall or time.time(),
            reason=state.reason,
            failures=state.failures,
        )
        if watch.closing is not None:
            _log.warning(
                "probe.alert_abandoned",
                target=target.name,
                alert="up",
                why="the target went down again before its up alert got out",
            )
            watch.closing = None
        incident, created = await self.store.open(fresh)
        watch.incident = incident
        if created:
            _log.error(
                "probe.incident_opened",
                target=target.name,
                url=target.url,
                reason=incident.reason,
                failures=incident.failures,
                since=iso(incident.since),
            )
        else:
            watch.state = adopted(
                incident.since, max(state.failures, incident.failures), incident.reason
            )
            _log.info(
                "probe.incident_adopted",
                target=target.name,
                since=iso(incident.since),
                why="already open (an earlier run or another probe process)",
            )
        await self._send(incident, "down", self._down_alert(watch, incident))

    async def _still_down(self, watch: _Watch, outcome: Outcome, step: Step) -> Step:
        incident = watch.incident
        if incident is None:  # opening failed half-way (logged): open it now
            await self._open(watch)
            return step
        if not await self.store.is_open(incident):
            # Closed by another probe process that saw the target answer: a new streak.
            _log.info("probe.incident_closed_elsewhere", target=watch.target.name)
            watch.incident = None
            watch.state, step = advance(self.policy, TargetState(), outcome)
            if step.opened:
                await self._open(watch)
            return step
        if incident.rounds < MAX_DELIVERY_ROUNDS and self._pending(incident, "down"):
            await self._send(incident, "down", self._down_alert(watch, incident))
        return step

    async def _close(self, watch: _Watch, outcome: Outcome, failures: int) -> None:
        incident, watch.incident = watch.incident, None
        if incident is None:
            return
        closed = await self.store.close(incident, outcome.started_wall)
        if closed is None:
            _log.info("probe.incident_closed_elsewhere", target=watch.target.name)
            return
        closed.failures = max(closed.failures, failures)
        closed.rounds = 0
        duration_s = round((closed.closed or outcome.started_wall) - closed.since, 3)
        _log.info(
            "probe.incident_closed",
            target=watch.target.name,
            duration_s=duration_s,
            reason=closed.reason,
        )
        watch.closing = closed
        await self._send_up(watch)

    async def _send_up(self, watch: _Watch) -> None:
        closing = watch.closing
        if closing is None:
            return
        if not closing.sent["down"]:
            _log.info(
                "probe.up_not_sent",
                target=watch.target.name,
                why="no channel got this incident's down alert",
            )
        elif closing.rounds < MAX_DELIVERY_ROUNDS and self._pending(closing, "up"):
            duration_s = round((closing.closed or time.time()) - closing.since, 3)
            alert = Alert(
                event="up",
                target=closing.target,
                name=watch.target.name,
                reason=closing.reason,
                since=closing.since,
                failures=closing.failures,
                incident_id=closing.id,
                duration_s=duration_s,
            )
            await self._send(closing, "up", alert)
            if self._pending(closing, "up") and closing.rounds < MAX_DELIVERY_ROUNDS:
                return  # tried again at the next check
        if self._pending(closing, "up"):
            _log.error(
                "probe.alert_abandoned",
                target=watch.target.name,
                alert="up",
                rounds=closing.rounds,
            )
        watch.closing = None
        await self.store.finish(closing)

    def _pending(self, incident: Incident, event: str) -> list[Channel]:
        if event == "down":
            return [c for c in self.channels if c.id not in incident.sent["down"]]
        return [
            c
            for c in self.channels
            if c.id in incident.sent["down"] and c.id not in incident.sent["up"]
        ]

    def _down_alert(self, watch: _Watch, incident: Incident) -> Alert:
        return Alert(
            event="down",
            target=incident.target,
            name=watch.target.name,
            reason=incident.reason,
            since=incident.since,
            failures=incident.failures,
            incident_id=incident.id,
        )

    async def _send(self, incident: Incident, event: str, alert: Alert) -> None:
        """Deliver `alert` to every channel still owed it, concurrently."""
        pending = self._pending(incident, event)
        if not pending:
            return
        tried = False

        async def one(channel: Channel) -> None:
            nonlocal tried
            claim = await self.store.claim(incident, event, channel.id)
            if claim in ("sent", "gone"):  # by another process, or the incident moved on
                incident.sent[event].add(channel.id)
                return
            if claim == "busy":  # another probe process is sending it right now
                return
            tried = True
            if await deliver(channel, alert):
                incident.sent[event].add(channel.id)
                await self.store.delivered(incident, event, channel.id)

        await asyncio.gather(*(one(c) for c in pending))
        if not tried:
            return
        incident.rounds += 1
        left = self._pending(incident, event)
        if left and incident.rounds >= MAX_DELIVERY_ROUNDS:
            _log.error(
                "probe.alert_abandoned",
                target=incident.key,
                alert=event,
                rounds=incident.rounds,
                channels=[c.label for c in left],
            )

    # -- the probe's own heartbeat -------------------------------------------------------------

    async def _heartbeat(self, client: httpx.AsyncClient, url: str) -> None:
        """GET `url` every interval while the probe runs (healthchecks.io-style)."""
        while True:
            await ping(client, url)
            await asyncio.sleep(self.policy.interval_s)


async def ping(client: httpx.AsyncClient, url: str) -> None:
    """One heartbeat GET; failures are logged, never raised."""
    try:
        response = await client.get(url)
        if response.status_code >= 400:
            _log.warning("probe.heartbeat_failed", status=response.status_code)
    except httpx.HTTPError as exc:
        _log.warning("probe.heartbeat_failed", error=type(exc).__name__)
