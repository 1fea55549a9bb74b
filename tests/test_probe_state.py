"""The probe's incident state machine, driven with a fake clock (no I/O, no sleeping)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from launchready_sdk.cli.probe import (
    DETECT_WITHIN_S,
    SEND_BUDGET_S,
    Outcome,
    Phase,
    Policy,
    Step,
    TargetState,
    adopted,
    advance,
    needs_canary,
)

EPOCH = 1_800_000_000.0  # wall clock = EPOCH + fake monotonic time


class FakeClock:
    """Monotonic seconds that only move when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def check(self, ok: bool | None, takes: float = 0.01, reason: str = "HTTP 503") -> Outcome:
        """An outcome of a check that starts now and takes `takes` seconds."""
        started = self.now
        self.now += takes
        return Outcome(ok, "" if ok else reason, started, self.now, EPOCH + started)


def run(policy: Policy, results: list[bool | None]) -> tuple[TargetState, list[Step]]:
    clock, state, steps = FakeClock(), TargetState(), []
    for ok in results:
        state, step = advance(policy, state, clock.check(ok))
        clock.now = max(clock.now, step.due)
        steps.append(step)
    return state, steps


def test_one_blip_is_silent() -> None:
    """A failure followed by a passing re-check opens nothing and returns to up."""
    state, steps = run(Policy(), [True, False, True, True])
    assert not any(s.opened or s.closed for s in steps)
    assert state == TargetState()
    assert [s.retry for s in steps] == [False, True, False, False]


def test_two_failures_open_one_incident() -> None:
    """The second failure in a row opens the incident; more failures open nothing more."""
    state, steps = run(Policy(), [True, False, False, False, False])
    assert [s.opened for s in steps] == [False, False, True, False, False]
    assert state.phase is Phase.DOWN
    assert state.failures == 4


def test_long_outage_opens_once() -> None:
    """A thousand failed checks in a row open exactly one incident."""
    _, steps = run(Policy(), [False] * 1000)
    assert sum(s.opened for s in steps) == 1
    assert not any(s.closed for s in steps)


def test_first_success_closes_and_keeps_since() -> None:
    """The first success after an incident closes it once; `since` was the first failure."""
    clock = FakeClock()
    clock.now = 100.0
    state, _ = advance(Policy(), TargetState(), clock.check(False))
    assert state.since_wall == EPOCH + 100.0
    clock.now = 115.0
    state, step = advance(Policy(), state, clock.check(False))
    assert step.opened
    assert state.since_wall == EPOCH + 100.0
    clock.now = 130.0
    state, step = advance(Policy(), state, clock.check(True))
    assert step.closed
    assert state == TargetState()
    _, again = advance(Policy(), state, clock.check(True))
    assert not again.closed


def test_recoveries_need_successes_in_a_row() -> None:
    """With recoveries=2, a single success between failures keeps the incident open."""
    policy = Policy(recoveries=2)
    _state, steps = run(policy, [False, False, True, False, True, True])
    assert [s.closed for s in steps] == [False, False, False, False, False, True]
    assert sum(s.opened for s in steps) == 1


def test_one_failure_opens_when_failures_is_one() -> None:
    """--failures 1 opens the incident on the first failure."""
    _, steps = run(Policy(failures=1), [False])
    assert steps[0].opened
    assert steps[0].settled


def test_blind_outcomes_change_nothing() -> None:
    """A blind outcome (target and canary both failed) neither counts nor clears a failure."""
    state, steps = run(Policy(), [False, None, None, None])
    assert state.phase is Phase.SUSPECT
    assert state.failures == 1
    assert not any(s.opened for s in steps)
    assert all(s.retry for s in steps[1:])


def test_blind_does_not_close_an_open_incident() -> None:
    """While down, blind outcomes keep the incident open."""
    state, steps = run(Policy(), [False, False, None, None])
    assert state.phase is Phase.DOWN
    assert not any(s.closed for s in steps)


def test_schedule_start_to_start_and_retry_after_the_failure() -> None:
    """Passing checks repeat interval after they started; failures retry after they ended."""
    policy = Policy(interval_s=60, retry_interval_s=15, timeout_s=10)
    clock = FakeClock()
    state, step = advance(policy, TargetState(), clock.check(True, takes=3.0))
    assert step.due == 60.0
    assert not step.retry
    clock.now = 60.0
    state, step = advance(policy, state, clock.check(False, takes=10.0))
    assert step.due == 60.0 + 10.0 + 15.0
    assert step.retry
    clock.now = step.due
    state, step = advance(policy, state, clock.check(False, takes=10.0))
    assert step.opened
    assert step.due == 85.0 + 10.0 + 15.0
    clock.now = step.due
    _, step = advance(policy, state, clock.check(True, takes=1.0))
    assert step.closed
    assert step.due == 110.0 + 60.0


def test_canary_only_vouches_for_a_failure_that_would_open() -> None:
    """The canary is consulted only when the next failure would open an incident."""
    policy = Policy(failures=3)
    assert not needs_canary(policy, TargetState())
    assert not needs_canary(policy, TargetState(Phase.SUSPECT, 1))
    assert needs_canary(policy, TargetState(Phase.SUSPECT, 2))
    assert not needs_canary(policy, adopted(EPOCH, 3, "HTTP 503"))
    assert needs_canary(Policy(failures=1), TargetState())


def test_adopted_incident_stays_open_on_failure_and_closes_on_success() -> None:
    """After a restart the open incident resumes: failures send nothing, a success closes."""
    state = adopted(EPOCH, 2, "HTTP 503")
    clock = FakeClock()
    state, step = advance(Policy(), state, clock.check(False))
    assert not step.opened
    assert state.since_wall == EPOCH
    assert step.settled
    _, step = advance(Policy(), state, clock.check(True))
    assert step.closed


def detection_delay(policy: Policy, outage_at: float) -> float:
    """Seconds from the outage to the incident opening, every failing check hanging for the
    whole timeout; checks start at 0, I, 2I... while the target is up."""
    clock, state, due = FakeClock(), TargetState(), 0.0
    while True:
        clock.now = due
        down = clock.now >= outage_at
        outcome = clock.check(not down, takes=policy.timeout_s if down else 0.05)
        state, step = advance(policy, state, outcome)
        if step.opened:
            return outcome.ended - outage_at
        due = step.due


def test_worst_case_detection_matches_the_formula() -> None:
    """Swept over the outage's start, detection never exceeds I + 2T + R and reaches it."""
    policy = Policy()  # 60, 15, 10, 2
    delays = [detection_delay(policy, 0.05 + k * 0.25) for k in range(240)]
    bound = policy.worst_case_alert_s(send_s=0.0)
    assert bound == 60 + 10 + 15 + 10
    assert max(delays) <= bound
    assert max(delays) >= bound - 0.3  # the bound is tight, not padding
    assert min(delays) >= policy.retry_interval_s + 2 * policy.timeout_s


def test_defaults_alert_within_two_minutes_send_included() -> None:
    """With the defaults the worst case, alert send budget included, is under 120 s."""
    worst = Policy().worst_case_alert_s(SEND_BUDGET_S)
    assert SEND_BUDGET_S == 19.0
    assert worst == 114.0 < DETECT_WITHIN_S


def test_without_a_retry_interval_two_minutes_are_missed() -> None:
    """Retrying at the normal interval (R = I) would miss the bar: 150 s with a 10 s send."""
    assert Policy(retry_interval_s=60).worst_case_alert_s(10.0) == 150.0


def test_more_failures_cost_a_retry_and_a_timeout_each() -> None:
    """Each extra failure in a row adds R + T to the worst case, and the sweep agrees."""
    policy = Policy(interval_s=30, retry_interval_s=5, timeout_s=2, failures=4)
    assert policy.worst_case_alert_s(0.0) == 30 + 2 + 3 * (5 + 2)
    delays = [detection_delay(policy, 0.01 + k * 0.5) for k in range(60)]
    assert max(delays) <= policy.worst_case_alert_s(0.0)


@given(st.lists(st.sampled_from([True, False, None]), max_size=200), st.integers(1, 4))
def test_opens_and_closes_alternate(results: list[bool | None], failures: int) -> None:
    """Any sequence of outcomes gives open, close, open... and an open only after N failures."""
    policy = Policy(failures=failures)
    clock, state = FakeClock(), TargetState()
    events: list[str] = []
    streak = 0
    for ok in results:
        state, step = advance(policy, state, clock.check(ok))
        if ok is False:
            streak += 1
        elif ok:
            streak = 0
        if step.opened:
            assert streak >= failures
            events.append("open")
        if step.closed:
            events.append("close")
    assert all(a != b for a, b in itertools.pairwise(events))
    assert not events or events[0] == "open"
    assert (state.phase is Phase.DOWN) == (events[-1:] == ["open"])
