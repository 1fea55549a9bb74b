"""The incident state machine of one target: pure, no I/O, no clock of its own.

`advance(policy, state, outcome)` takes a target's state and the outcome of one check and
returns the new state and a `Step`: when the next check is due (on the monotonic clock the
outcome was measured with), whether an incident opens or closes now, and whether the target's
state is settled (what `--once` waits for). The caller supplies every time, so tests drive it
with a fake clock and the runner with the real one.

    UP ──failure──▶ SUSPECT ──failures in a row reach N──▶ DOWN (open: one `down`)
     ▲                 │                                     │
     └────success──────┘ (silent: a blip)                    │ M successes in a row
     └───────────────────────────────────────────────────────┘ (close: one `up`)

Scheduling: a check that passes on the normal cadence is followed `interval_s` after it
*started* (start to start, so a slow target does not drift); a failed check is re-checked
`retry_interval_s` after it *ended*, and so is every check while an incident is open (the `up`
comes as fast as the `down`). A blind outcome (the target failed and the canary too: the
probe's own network is down) changes nothing and is retried like a failure.

Worst case from outage to alert, for N failures in a row (`worst_case_alert_s`): the outage
starts just after a passing check, so the next check starts up to I later; each failing check
can take the whole timeout T; between them the retry waits R; then the alert is sent within S:

    I + T + (N - 1) * (R + T) + S        defaults: 60 + 10 + 1 * (15 + 10) + 19 = 114 s

Limits, candidly: the bound assumes the event loop starts checks on time (the runner logs
each check's lateness as `late_ms`) and a canary that answers within the timeout.
"""

from __future__ import annotations

import dataclasses
import enum

DEFAULT_INTERVAL_S = 60.0
DEFAULT_RETRY_INTERVAL_S = 15.0
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_FAILURES = 2
DEFAULT_RECOVERIES = 1
DETECT_WITHIN_S = 120.0


class Phase(enum.StrEnum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


@dataclasses.dataclass(frozen=True)
class Policy:
    """How often to check and how many results in a row open and close an incident."""

    interval_s: float = DEFAULT_INTERVAL_S
    retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    failures: int = DEFAULT_FAILURES
    recoveries: int = DEFAULT_RECOVERIES

    def worst_case_alert_s(self, send_s: float) -> float:
        """Outage start to alert delivered, at worst, when sending takes up to `send_s`."""
        confirm = (self.failures - 1) * (self.retry_interval_s + self.timeout_s)
        return self.interval_s + self.timeout_s + confirm + send_s


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One check. `ok` is None when the target failed while the canary failed too (blind).

    `started`/`ended` are monotonic seconds, `started_wall` epoch seconds.
    """

    ok: bool | None
    reason: str
    started: float
    ended: float
    started_wall: float
    status: int | None = None
    latency_ms: float | None = None


@dataclasses.dataclass(frozen=True)
class TargetState:
    """What is known of one target: its phase and the current streak."""

    phase: Phase = Phase.UP
    failures: int = 0  # failed checks in a row (the incident's count while DOWN)
    successes: int = 0  # passing checks in a row while DOWN
    since_wall: float | None = None  # start of the first failed check of the streak
    reason: str = ""  # why the streak's latest failure failed


@dataclasses.dataclass(frozen=True)
class Step:
    """What the runner does after a check."""

    due: float  # monotonic time the next check starts
    retry: bool  # whether the next check is a re-check
    opened: bool = False  # the incident opens now: send `down`
    closed: bool = False  # the incident closes now: send `up`
    settled: bool = False  # the phase is confirmed by this check (`--once` stops here)


def needs_canary(policy: Policy, state: TargetState) -> bool:
    """Whether a failure of the next check would open an incident (so the canary must vouch)."""
    return state.phase is not Phase.DOWN and state.failures + 1 >= policy.failures


def advance(policy: Policy, state: TargetState, outcome: Outcome) -> tuple[TargetState, Step]:
    """The state after `outcome` and what to do next."""
    retry_at = outcome.ended + policy.retry_interval_s
    if outcome.ok is None:
        return state, Step(due=retry_at, retry=True)
    if outcome.ok:
        return _passed(policy, state, outcome, retry_at)
    return _failed(policy, state, outcome, retry_at)


def _passed(
    policy: Policy, state: TargetState, outcome: Outcome, retry_at: float
) -> tuple[TargetState, Step]:
    cadence = Step(due=outcome.started + policy.interval_s, retry=False, settled=True)
    if state.phase is not Phase.DOWN:
        return TargetState(), cadence
    successes = state.successes + 1
    if successes < policy.recoveries:
        return dataclasses.replace(state, successes=successes), Step(due=retry_at, retry=True)
    return TargetState(), dataclasses.replace(cadence, closed=True)


def _failed(
    policy: Policy, state: TargetState, outcome: Outcome, retry_at: float
) -> tuple[TargetState, Step]:
    failures = state.failures + 1
    since = state.since_wall if state.failures and state.since_wall is not None else None
    if since is None:
        since = outcome.started_wall
    if state.phase is Phase.DOWN:
        new = dataclasses.replace(state, failures=failures, successes=0, reason=outcome.reason)
        return new, Step(due=retry_at, retry=True, settled=True)
    if failures >= policy.failures:
        new = TargetState(Phase.DOWN, failures, 0, since, outcome.reason)
        return new, Step(due=retry_at, retry=True, opened=True, settled=True)
    new = TargetState(Phase.SUSPECT, failures, 0, since, outcome.reason)
    return new, Step(due=retry_at, retry=True)


def adopted(since_wall: float, failures: int, reason: str) -> TargetState:
    """The state of a target whose incident is already open (after a restart, or elsewhere)."""
    return TargetState(Phase.DOWN, failures, 0, since_wall, reason)
