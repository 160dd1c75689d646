"""The schedules store on SQLite and PostgreSQL: claims, policies and failure counting.

Times are passed explicitly (`now=`), so each policy is checked at exact instants; the scheduler
process and real firings are `test_scheduler.py`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from switchyard.core.cron import Timing, jitter, stamp
from switchyard.core.errors import InvalidInputError
from switchyard.storage.schedules import (
    LEASE_S,
    MISFIRE_GRACE_S,
    Job,
    JobNotFoundError,
    Outcome,
    ScheduleStore,
    new_job_id,
)

T0 = 1_800_000_000.0  # a whole minute: 2027-01-15T08:00:00Z


@pytest.fixture
def store(persistence_setting: str, tmp_path: object) -> ScheduleStore:
    """A store on each backend (the SQLite one in its own file)."""
    if persistence_setting.startswith("postgresql://"):
        return ScheduleStore(persistence_setting)
    return ScheduleStore(persistence_setting.replace("state.sqlite", "schedules.sqlite"))


def _job(store: ScheduleStore, **fields: object) -> Job:
    values: dict[str, object] = {"pattern": "router", "message": "m", "every_s": 1.0}
    values |= fields
    return store.add(Job(id=new_job_id(), created_at=T0, **values), now=T0)


def _statuses(store: ScheduleStore, job: Job) -> list[tuple[float, str]]:
    return sorted((f.scheduled_at - T0, f.status) for f in store.firings(job.id, limit=1000))


def test_a_due_time_is_claimed_by_exactly_one_of_several_schedulers(store: ScheduleStore) -> None:
    job = _job(store)
    first = store.claim("a", now=T0 + 1)
    second = store.claim("b", now=T0 + 1)
    assert [f.id for f in first] == [f"{job.id}@20270115T080001Z"]
    assert second == []
    assert _statuses(store, job) == [(1.0, "running")]


def test_overlap_skip_records_the_times_that_came_while_a_firing_ran(store: ScheduleStore) -> None:
    job = _job(store, overlap="skip")
    [running] = store.claim("a", now=T0 + 1)
    assert store.claim("b", now=T0 + 3) == []
    store.finish(running, Outcome(status="ok"), now=T0 + 3.5)
    assert [f.scheduled_at - T0 for f in store.claim("b", now=T0 + 4)] == [4.0]
    assert _statuses(store, job) == [(1, "ok"), (2, "skipped"), (3, "skipped"), (4, "running")]


def test_overlap_queue_runs_each_time_in_order_once_the_previous_ends(
    store: ScheduleStore,
) -> None:
    job = _job(store, overlap="queue")
    [first] = store.claim("a", now=T0 + 1)
    assert store.claim("b", now=T0 + 3) == []  # 2 and 3 wait
    assert _statuses(store, job) == [(1, "running"), (2, "queued"), (3, "queued")]
    store.finish(first, Outcome(status="ok"), now=T0 + 3.2)
    [second] = store.claim("b", now=T0 + 3.3)
    assert second.scheduled_at == T0 + 2
    assert second.owner == "b"
    assert store.claim("a", now=T0 + 3.4) == []  # one at a time
    store.finish(second, Outcome(status="ok"), now=T0 + 3.5)
    [third] = store.claim("a", now=T0 + 3.6)
    assert third.scheduled_at == T0 + 3


def test_overlap_cancel_tells_the_running_firing_to_stop_and_starts_the_new_one(
    store: ScheduleStore,
) -> None:
    job = _job(store, overlap="cancel")
    [old] = store.claim("a", now=T0 + 1)
    [new] = store.claim("b", now=T0 + 2)
    assert store.renew("a", [old.id], now=T0 + 2.1) == {old.id}  # a must cancel its run
    assert store.renew("b", [new.id], now=T0 + 2.1) == set()
    store.finish(old, Outcome(status="cancelled", end_reason="cancelled"), now=T0 + 2.2)
    assert _statuses(store, job) == [(1, "cancelled"), (2, "running")]


def test_after_downtime_recent_times_catch_up_and_older_ones_are_counted_missed(
    store: ScheduleStore,
) -> None:
    job = _job(store, every_s=10.0, catchup_s=25.0, overlap="queue")
    # Down from T0 until T0 + 100: times 10..60 are older than the 25 s window and the grace,
    # 70..100 are not.
    assert MISFIRE_GRACE_S == 10
    started = store.claim("a", now=T0 + 100)
    assert [f.scheduled_at - T0 for f in started] == [70.0]
    statuses = _statuses(store, job)
    assert statuses == [
        (60, "missed"),
        (70, "running"),
        (80, "queued"),
        (90, "queued"),
        (100, "queued"),
    ]
    [missed] = store.firings(job.id, status=("missed",))
    assert missed.detail == {"missed": 6, "since": T0 + 10}
    assert store.get(job.id).next_fire_at == T0 + 110


def test_a_downtime_of_more_than_a_thousand_times_jumps_to_the_window(
    store: ScheduleStore,
) -> None:
    job = _job(store, every_s=1.0, catchup_s=0.0)
    started = store.claim("a", now=T0 + 5000)
    assert [f.scheduled_at - T0 for f in started] == [4990.0]  # the grace: 10 s late still runs
    [missed] = store.firings(job.id, status=("missed",))
    assert missed.detail["missed"] == 1000  # a floor: the walk stopped there
    assert len(store.firings(job.id, status=("skipped",), limit=100)) == 10  # 4991..5000


def test_a_long_catch_up_is_recorded_a_thousand_times_per_claim(store: ScheduleStore) -> None:
    job = _job(store, every_s=1.0, catchup_s=5000.0, overlap="skip")
    store.claim("a", now=T0 + 2500)
    assert len(store.firings(job.id, limit=5000)) == 1000
    assert store.get(job.id).next_fire_at == T0 + 1001
    store.claim("a", now=T0 + 2500)
    assert len(store.firings(job.id, limit=5000)) == 2000


def test_jitter_delays_a_firing_by_the_same_amount_on_every_scheduler(
    store: ScheduleStore,
) -> None:
    job = _job(store, every_s=60.0, jitter_s=30.0)
    delay = jitter(f"{job.id}@20270115T080100Z", 30.0)
    assert 0 < delay < 30
    assert job.next_due_at == T0 + 60 + delay
    assert store.claim("a", now=T0 + 60 + delay - 0.01) == []
    [firing] = store.claim("b", now=T0 + 60 + delay)
    assert firing.scheduled_at == T0 + 60


def test_a_dead_schedulers_firing_is_taken_over_then_recorded_lost_after_max_attempts(
    store: ScheduleStore,
) -> None:
    job = _job(store, every_s=3600.0, max_failures=1)
    at = T0 + 3600
    [firing] = store.claim("first", now=at)
    # Each runner dies in turn (its lease lapses): the next claim takes the firing over.
    for attempt, runner in enumerate(("second", "third"), start=2):
        at += LEASE_S + 1
        [taken] = store.claim(runner, now=at)
        assert taken.id == firing.id
        assert taken.correlation_id == firing.correlation_id  # the same run, to be resumed
        assert taken.detail["attempts"] == attempt
        assert store.firing(firing.id).owner == runner
    # The first runner, were it to come back, must stop: the firing is not its own any more.
    assert store.renew("first", [firing.id], now=at) == {firing.id}
    assert store.finish(firing, Outcome(status="ok")) is None
    at += LEASE_S + 1
    assert store.claim("fourth", now=at) == []  # the third runner died too: enough
    lost = store.firing(firing.id)
    assert (lost.status, lost.end_reason) == ("lost", "lost")
    assert "scheduler third stopped renewing its lease (attempt 3 of 3)" in (lost.error or "")
    paused = store.get(job.id)
    assert paused.status == "paused"
    assert "1 failed firings" in (paused.paused_reason or "")


def test_failures_in_a_row_pause_the_job_and_a_success_resets_the_count(
    store: ScheduleStore,
) -> None:
    job = _job(store, every_s=10.0, max_failures=2)
    [one] = store.claim("a", now=T0 + 10)
    assert store.finish(one, Outcome(status="failed", error="boom")) is None
    [two] = store.claim("a", now=T0 + 20)
    assert store.finish(two, Outcome(status="ok")) is None
    assert store.get(job.id).failures == 0
    [three] = store.claim("a", now=T0 + 30)
    store.finish(three, Outcome(status="failed", error="boom"))
    [four] = store.claim("a", now=T0 + 40)
    paused = store.finish(four, Outcome(status="failed", error="still down"))
    assert paused is not None
    assert paused.status == "paused"
    assert paused.paused_reason == "paused after 2 failed firings: still down"
    assert store.claim("a", now=T0 + 50) == []  # a paused job does not fire


def test_a_misconfigured_firing_pauses_its_job_at_once(store: ScheduleStore) -> None:
    job = _job(store, every_s=10.0, max_failures=5)
    [firing] = store.claim("a", now=T0 + 10)
    outcome = Outcome(status="failed", end_reason="misconfigured", error="bad model", pause=True)
    paused = store.finish(firing, outcome)
    assert paused is not None
    assert paused.paused_reason == "paused after a misconfigured firing: bad model"
    assert store.get(job.id).status == "paused"


def test_resume_fires_from_now_on_and_forgets_the_failures(store: ScheduleStore) -> None:
    job = _job(store, every_s=10.0)
    store.set_status(job.id, "paused", reason="maintenance", now=T0 + 5)
    assert store.claim("a", now=T0 + 100) == []
    resumed = store.set_status(job.id, "active", now=T0 + 1000)
    assert resumed.next_fire_at == T0 + 1010
    assert resumed.failures == 0
    assert [f.scheduled_at - T0 for f in store.claim("a", now=T0 + 1010)] == [1010.0]
    assert _statuses(store, job) == [(1010, "running")]  # nothing from the pause is "missed"


def test_claim_at_runs_a_firing_timed_elsewhere_once_and_takes_over_a_dead_one(
    store: ScheduleStore,
) -> None:
    job = _job(store, every_s=60.0)
    first = store.claim_at(job.id, T0 + 60, "w1", now=T0 + 60)
    assert first is not None
    assert store.claim_at(job.id, T0 + 60, "w2", now=T0 + 61) is None  # a duplicate start
    taken = store.claim_at(job.id, T0 + 60, "w2", now=T0 + 60 + LEASE_S + 1)  # w1 died
    assert taken is not None
    assert taken.owner == "w2"
    assert taken.detail["attempts"] == 2
    store.finish(taken, Outcome(status="ok"))
    assert store.claim_at(job.id, T0 + 60, "w3", now=T0 + 500) is None


def test_remove_deletes_the_job_and_its_firings(store: ScheduleStore) -> None:
    job = _job(store)
    store.claim("a", now=T0 + 1)
    store.remove(job.id)
    with pytest.raises(JobNotFoundError, match="schedule list"):
        store.get(job.id)
    assert store.firings(job.id) == []


def test_spend_is_summed_per_job_from_a_given_time(store: ScheduleStore) -> None:
    job = _job(store, every_s=10.0, overlap="queue")
    [one] = store.claim("a", now=T0 + 10)
    store.finish(one, Outcome(status="ok", cost_usd=0.25))
    [two] = store.claim("a", now=T0 + 20)
    store.finish(two, Outcome(status="ok", cost_usd=0.5))
    assert store.spent_since(job.id, T0) == pytest.approx(0.75)
    assert store.spent_since(job.id, T0 + 15) == pytest.approx(0.5)
    assert store.last_cost(job.id) == pytest.approx(0.5)


def test_cron_in_a_zone_fires_at_local_time_across_daylight_saving() -> None:
    timing = Timing(cron="0 9 * * 1-5", tz="Europe/Zurich")
    friday_before_dst = datetime(2027, 3, 26, 12, tzinfo=UTC).timestamp()
    monday = datetime.fromtimestamp(timing.next_after(friday_before_dst), tz=ZoneInfo("UTC"))
    assert monday == datetime(2027, 3, 29, 7, tzinfo=UTC)  # 09:00 CEST (UTC+2) after the switch
    winter = datetime.fromtimestamp(timing.next_after(T0), tz=UTC)
    assert winter.hour == 8  # 09:00 CET (UTC+1)
    seconds = Timing(cron="*/15 * * * * *")
    assert seconds.next_after(T0) == T0 + 15
    assert seconds.temporal_cron() == "*/15 * * * * * *"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid"),
        ({"cron": "* * *"}, "has 3 fields"),
        ({"cron": "0 9 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"every_s": 0.5}, "whole number of seconds from 1"),
        ({"every_s": 1.1}, "whole number of seconds from 1"),
        ({"every_s": 1e20}, "whole number of seconds from 1"),
        ({}, "either a cron expression or an interval"),
        ({"cron": "0 9 * * *", "every_s": 5.0}, "either a cron expression or an interval"),
    ],
)
def test_a_bad_timing_is_one_clear_error(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Timing(**fields)  # type: ignore[arg-type]


def test_an_interval_always_moves_on_whatever_the_float_rounding() -> None:
    for anchor in (0.0, 1_765_000_000.0, 1_800_000_123.0):
        for every in (1.0, 7.0, 86_400.0):
            timing = Timing(every_s=every, anchor=anchor)
            when = anchor
            for _ in range(500):
                after = timing.next_after(when)
                assert after > when
                assert after - when <= every
                when = after + 0.999 * (every - 1)


def test_stamps_round_once_to_the_millisecond() -> None:
    assert stamp(T0 + 0.9996) == "20270115T080001Z"
    assert stamp(T0 + 0.25) == "20270115T080000.250Z"


def test_a_catch_up_window_of_zero_still_fires_a_firing_claimed_late(store: ScheduleStore) -> None:
    job = _job(store, every_s=60.0, catchup_s=0.0)
    assert [f.scheduled_at - T0 for f in store.claim("a", now=T0 + 60.3)] == [60.0]
    assert _statuses(store, job) == [(60, "running")]


def test_jitter_longer_than_the_catch_up_window_does_not_make_firings_missed(
    store: ScheduleStore,
) -> None:
    job = _job(store, every_s=600.0, jitter_s=300.0, catchup_s=0.0)
    due = job.next_due_at
    assert due - job.next_fire_at > MISFIRE_GRACE_S  # due well after its scheduled time
    assert [f.scheduled_at for f in store.claim("a", now=due + 0.3)] == [job.next_fire_at]


def test_overlap_queue_starts_the_oldest_queued_firing_before_a_new_one(
    store: ScheduleStore,
) -> None:
    job = _job(store, every_s=10.0, overlap="queue")
    [first] = store.claim("a", now=T0 + 10)
    store.claim("a", now=T0 + 30)  # 20 and 30 wait
    store.finish(first, Outcome(status="ok"))
    [started] = store.claim("a", now=T0 + 40.1)
    assert started.scheduled_at == T0 + 20  # not 40, which queues behind 30
    statuses = _statuses(store, job)
    assert statuses == [(10, "ok"), (20, "running"), (30, "queued"), (40, "queued")]


def test_overlap_cancel_after_downtime_runs_only_the_newest_due_time(store: ScheduleStore) -> None:
    job = _job(store, every_s=10.0, overlap="cancel", catchup_s=100.0)
    started = store.claim("a", now=T0 + 50)
    assert [f.scheduled_at - T0 for f in started] == [50.0]
    statuses = _statuses(store, job)
    assert statuses == [(10, "skipped"), (20, "skipped"), (30, "skipped"), (40, "skipped"),
                        (50, "running")]  # fmt: skip


def test_a_stalled_scheduler_keeps_its_firing_and_a_restarted_one_takes_its_orphan_over(
    store: ScheduleStore,
) -> None:
    job = _job(store, every_s=3600.0)
    [firing] = store.claim("s1", now=T0 + 3600)
    late = T0 + 3600 + LEASE_S + 1
    assert store.claim("s1", now=late, running={firing.id}) == []  # stalled, still runs it
    assert store.firing(firing.id).lease_until == late + LEASE_S
    # Restarted under the same name, it does not run the firing any more: an orphan.
    [taken] = store.claim("s1", now=late + LEASE_S + 1)
    assert taken.id == firing.id
    assert taken.detail["attempts"] == 2
    assert job.id == taken.job_id


def test_run_now_has_an_id_of_its_own_beside_the_scheduled_firing(store: ScheduleStore) -> None:
    job = _job(store, every_s=60.0)
    manual = store.claim_now(job.id, "me", now=T0 + 60)
    assert store.claim("a", now=T0 + 60) == []  # the run-now runs: the time is skipped
    scheduled = store.firing(f"{job.id}@20270115T080100Z")
    assert scheduled.status == "skipped"
    assert manual.id == f"{scheduled.id}/run-now"


def test_a_claim_starts_at_most_its_limit_orphans_and_queued_firings_included(
    store: ScheduleStore,
) -> None:
    jobs = [_job(store, every_s=10.0, overlap="queue") for _ in range(3)]
    first = store.claim("dead", now=T0 + 10)
    assert len(first) == 3
    store.claim("dead", now=T0 + 20)  # each job queues its 20
    late = T0 + 20 + LEASE_S + 1
    taken = store.claim("alive", now=late, limit=2)
    assert len(taken) == 2  # two orphans taken over; the third waits for room
    assert {f.detail["attempts"] for f in taken} == {2}
    rest = store.claim("other", now=late, limit=5)
    assert [f.id for f in rest if f.detail.get("attempts") == 2]  # the third orphan, elsewhere
    running = [f for job in jobs for f in store.firings(job.id, status=("running",))]
    assert len(running) == 3  # one per job: the queued ones wait behind them
