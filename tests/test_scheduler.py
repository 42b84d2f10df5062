"""The scheduler's pure parts: day names, DST, which papers, zones, the late-source poll."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import threading
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from newsletter.config import ScheduleSettings, Settings
from newsletter.errors import ConfigError, SourceUnavailable
from newsletter.models import Subscriber
from newsletter.scheduler import (
    DailyRun,
    build_trigger,
    day_of_week,
    fire_times,
    in_zone,
    next_runs,
    paper_date,
    parse_time,
    skipped_days,
    zones_for,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
EVERY_DAY = ("mon-sun",)


def schedule(**changes: object) -> ScheduleSettings:
    return dataclasses.replace(ScheduleSettings(), **changes)  # type: ignore[arg-type]


def fires(time: str, zone: str, start: dt.datetime, count: int) -> list[dt.datetime]:
    trigger = build_trigger(schedule(time=time, days=EVERY_DAY), zone)
    return fire_times(trigger, start=start, end=start + dt.timedelta(days=count))[:count]


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


# ----------------------------------------------------------------------------- day names


def test_day_names_become_an_apscheduler_expression() -> None:
    assert day_of_week(["mon-fri"]) == "mon,tue,wed,thu,fri"
    assert day_of_week(("Monday", "wed", "FRI")) == "mon,wed,fri"
    assert day_of_week(["sat-mon"]) == "mon,sat,sun"  # a range may wrap over the week's end
    assert day_of_week(["mon", "mon-tue"]) == "mon,tue"


@pytest.mark.parametrize("days", [["1-5"], ["0"], ["mon", "6"]])
def test_day_numbers_are_refused_because_apscheduler_counts_monday_as_zero(days: list[str]) -> None:
    with pytest.raises(ConfigError, match="use day names"):
        day_of_week(days)


@pytest.mark.parametrize("days", [["funday"], ["mo"], ["mon-tue-wed"], []])
def test_bad_day_names_are_refused(days: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"schedule\.days"):
        day_of_week(days)


def test_a_monday_schedule_fires_on_mondays_not_tuesdays() -> None:
    trigger = build_trigger(schedule(days=("mon",), time="08:00", timezone="UTC"), "UTC")
    got = fire_times(trigger, start=utc(2026, 3, 1), end=utc(2026, 3, 31))
    assert [d.date() for d in got] == [dt.date(2026, 3, d) for d in (2, 9, 16, 23, 30)]
    assert {d.strftime("%a") for d in got} == {"Mon"}


def test_weekends_are_skipped_on_a_weekday_schedule() -> None:
    trigger = build_trigger(schedule(days=("mon-fri",), time="08:00"), "Europe/Berlin")
    friday_after_run = dt.datetime(2026, 3, 27, 9, 0, tzinfo=BERLIN)
    nxt = trigger.get_next_fire_time(None, friday_after_run)
    assert nxt == dt.datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN)
    assert skipped_days(friday_after_run.date(), nxt.date()) == ["sat", "sun"]


@pytest.mark.parametrize("text", ["8", "25:00", "08:61", "eight", ""])
def test_bad_times_name_the_setting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"schedule\.time"):
        parse_time(text)


def test_a_bad_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="IANA"):
        build_trigger(schedule(), "Mars/Olympus")


# ----------------------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("zone", "start", "offsets"),
    [
        # Europe/Berlin springs forward on 2026-03-29 and falls back on 2026-10-25.
        ("Europe/Berlin", dt.datetime(2026, 3, 28), (1, 2, 2)),
        ("Europe/Berlin", dt.datetime(2026, 10, 24), (2, 1, 1)),
        # America/New_York springs forward on 2026-03-08 and falls back on 2026-11-01.
        ("America/New_York", dt.datetime(2026, 3, 7), (-5, -4, -4)),
        ("America/New_York", dt.datetime(2026, 10, 31), (-4, -5, -5)),
    ],
)
def test_eight_oclock_stays_eight_oclock_local_across_dst(
    zone: str, start: dt.datetime, offsets: tuple[int, int, int]
) -> None:
    tz = ZoneInfo(zone)
    got = fires("08:00", zone, start.replace(tzinfo=tz), 3)
    assert [(d.date(), d.hour, d.minute) for d in got] == [
        (start.date() + dt.timedelta(days=n), 8, 0) for n in range(3)
    ]
    assert [d.utcoffset() for d in got] == [dt.timedelta(hours=h) for h in offsets]
    # The UTC instants move by an hour across the change: the day is 23 or 25 hours long.
    gaps = {
        (b.astimezone(dt.UTC) - a.astimezone(dt.UTC)).total_seconds() / 3600
        for a, b in itertools.pairwise(got)
    }
    assert gaps == {24 + offsets[0] - offsets[1], 24}


def test_a_time_in_the_spring_forward_gap_fires_once_an_hour_later_berlin() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29 (02:00 CET -> 03:00 CEST).
    got = fires("02:30", "Europe/Berlin", dt.datetime(2026, 3, 28, 12, tzinfo=BERLIN), 2)
    assert got[0].astimezone(dt.UTC) == utc(2026, 3, 29, 1, 30)  # where 02:30 CET would be
    assert got[0].astimezone(dt.UTC).astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    assert got[1].astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %Z") == "2026-03-30 02:30 CEST"


def test_a_time_in_the_spring_forward_gap_fires_once_an_hour_later_new_york() -> None:
    got = fires("02:30", "America/New_York", dt.datetime(2026, 3, 7, 12, tzinfo=NEW_YORK), 2)
    assert got[0].astimezone(dt.UTC) == utc(2026, 3, 8, 7, 30)
    assert got[0].astimezone(dt.UTC).astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:30 EDT"
    assert got[1].date() == dt.date(2026, 3, 9)


@pytest.mark.parametrize(
    ("zone", "time", "day", "first_utc"),
    [
        ("Europe/Berlin", "02:30", dt.date(2026, 10, 25), utc(2026, 10, 25, 0, 30)),
        ("America/New_York", "01:30", dt.date(2026, 11, 1), utc(2026, 11, 1, 5, 30)),
    ],
)
def test_a_time_repeated_at_fall_back_fires_once_at_its_first_occurrence(
    zone: str, time: str, day: dt.date, first_utc: dt.datetime
) -> None:
    tz = ZoneInfo(zone)
    start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), tz)
    got = fires(time, zone, start, 2)
    assert got[0].astimezone(dt.UTC) == first_utc
    assert got[1].date() == day + dt.timedelta(days=1)
    # Plain CronTrigger would have fired twice that night, an hour apart:
    at = parse_time(time)
    plain = CronTrigger(hour=at.hour, minute=at.minute, timezone=tz)
    first = plain.get_next_fire_time(None, start)
    second = plain.get_next_fire_time(first, first)
    assert (first.date(), second.date()) == (day, day)
    assert second.astimezone(dt.UTC) - first.astimezone(dt.UTC) == dt.timedelta(hours=1)


def test_next_runs_lists_every_zone_soonest_first() -> None:
    settings = Settings(schedule=schedule(time="08:00", timezone="Europe/Berlin", days=EVERY_DAY))
    runs = next_runs(settings, ("America/New_York", "Europe/Berlin"), now=utc(2026, 3, 28, 13))
    assert [(r.zone, r.at) for r in runs] == [
        ("Europe/Berlin", dt.datetime(2026, 3, 29, 8, tzinfo=BERLIN)),
        ("America/New_York", dt.datetime(2026, 3, 29, 8, tzinfo=NEW_YORK)),
    ]
    assert runs[0].paper_date == dt.date(2026, 3, 29)


# ----------------------------------------------------------------------------- which papers


@pytest.mark.parametrize(
    ("run", "today", "previous"),
    [
        (dt.date(2026, 3, 30), dt.date(2026, 3, 30), dt.date(2026, 3, 27)),  # Mon -> Fri
        (dt.date(2026, 3, 31), dt.date(2026, 3, 31), dt.date(2026, 3, 30)),  # Tue -> Mon
        (dt.date(2026, 3, 28), dt.date(2026, 3, 28), dt.date(2026, 3, 27)),  # Sat -> Fri
        (dt.date(2026, 3, 29), dt.date(2026, 3, 29), dt.date(2026, 3, 27)),  # Sun -> Fri
        (dt.date(2026, 1, 1), dt.date(2026, 1, 1), dt.date(2025, 12, 31)),  # over the year
    ],
)
def test_paper_date(run: dt.date, today: dt.date, previous: dt.date) -> None:
    assert paper_date(run, "today") == today
    assert paper_date(run, "previous_weekday") == previous


def test_paper_date_refuses_unknown_policies() -> None:
    with pytest.raises(ConfigError, match="paper_day"):
        paper_date(dt.date(2026, 3, 30), "yesterday")


# ----------------------------------------------------------------------------- zones


def test_one_zone_per_zone_present_default_first() -> None:
    subs = [
        Subscriber("a@example.org"),
        Subscriber("b@example.org", timezone="Asia/Tokyo"),
        Subscriber("c@example.org", timezone="America/New_York"),
        Subscriber("d@example.org", timezone="Asia/Tokyo"),
        Subscriber("e@example.org", timezone="Europe/Berlin"),
        Subscriber("f@example.org", timezone="Australia/Sydney", active=False),
    ]
    assert zones_for(subs, "Europe/Berlin") == ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
    assert [s.email for s in in_zone(subs, "Europe/Berlin", default="Europe/Berlin")] == [
        "a@example.org",
        "e@example.org",
    ]
    assert [s.email for s in in_zone(subs, "Asia/Tokyo", default="Europe/Berlin")] == [
        "b@example.org",
        "d@example.org",
    ]


def test_zones_without_subscribers_is_the_schedule_zone_and_without_default_users_no_default() -> (
    None
):
    assert zones_for([], "UTC") == ("UTC",)
    only_tokyo = [Subscriber("b@example.org", timezone="Asia/Tokyo")]
    assert zones_for(only_tokyo, "UTC") == ("Asia/Tokyo",)


def test_a_misspelt_subscriber_zone_fails_at_start_up() -> None:
    with pytest.raises(ConfigError, match="subscriber timezone"):
        zones_for([Subscriber("b@example.org", timezone="Europe/Berln")], "UTC")


# ----------------------------------------------------------------------------- one run


class FakeTime:
    """A clock that only moves when the run waits."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start
        self.waits: list[float] = []

    def clock(self) -> dt.datetime:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += dt.timedelta(seconds=seconds)
        return False


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[dt.date, dict[str, object]]] = []

    def __call__(self, settings: Settings, date: dt.date, **options: object) -> object:
        self.calls.append((date, options))
        return None


def make_run(
    settings: Settings,
    fake: FakeTime,
    *,
    probe: object,
    job: Recorder,
    zone: str = "Europe/Berlin",
    is_done: object = lambda d, z: False,
    stop: threading.Event | None = None,
) -> DailyRun:
    return DailyRun(
        settings=settings,
        zone=zone,
        trigger=build_trigger(settings.schedule, zone),
        job=job,
        clock=fake.clock,
        probe=probe,  # type: ignore[arg-type]
        is_done=is_done,  # type: ignore[arg-type]
        stop=stop or threading.Event(),
        wait=fake.wait,
    )


BERLIN_SETTINGS = Settings(
    schedule=schedule(time="08:00", timezone="Europe/Berlin", days=EVERY_DAY, poll_until="12:00")
)


def test_a_late_source_is_polled_with_backoff_until_it_appears() -> None:
    fake = FakeTime(dt.datetime(2026, 3, 30, 8, 0, 1, tzinfo=BERLIN))
    answers = iter([False, False, False, True])
    asked: list[dt.date] = []

    def probe(settings: Settings, date: dt.date) -> bool:
        asked.append(date)
        return next(answers)

    job = Recorder()
    make_run(BERLIN_SETTINGS, fake, probe=probe, job=job).run()
    assert fake.waits == [120.0, 240.0, 480.0]
    assert asked == [dt.date(2026, 3, 30)] * 4
    assert len(job.calls) == 1
    date, options = job.calls[0]
    assert date == dt.date(2026, 3, 30)
    assert options["only_timezone"] == "Europe/Berlin"
    assert isinstance(options["stop"], threading.Event)


def test_a_source_that_never_publishes_is_polled_until_the_deadline_then_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime(dt.datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN))
    job = Recorder()
    with caplog.at_level(logging.INFO, logger="newsletter"):
        make_run(BERLIN_SETTINGS, fake, probe=lambda s, d: False, job=job).run()
    assert fake.now == dt.datetime(2026, 3, 30, 12, 0, tzinfo=BERLIN)  # never past 12:00
    assert max(fake.waits) == 1800.0
    assert len(job.calls) == 1  # the send applies the empty-day policy
    assert "by 12:00 Europe/Berlin" in caplog.text
    assert "empty-day policy 'skip': nothing goes out" in caplog.text


def test_source_errors_count_as_not_yet() -> None:
    fake = FakeTime(dt.datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN))
    answers = iter([SourceUnavailable("HTTP 503"), True])

    def probe(settings: Settings, date: dt.date) -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    job = Recorder()
    make_run(BERLIN_SETTINGS, fake, probe=probe, job=job).run()
    assert fake.waits == [120.0]
    assert len(job.calls) == 1


def test_a_weekend_day_is_not_polled_and_the_log_says_why(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime(dt.datetime(2026, 3, 28, 8, 0, tzinfo=BERLIN))  # a Saturday
    job = Recorder()
    with caplog.at_level(logging.INFO, logger="newsletter"):
        make_run(BERLIN_SETTINGS, fake, probe=lambda s, d: False, job=job).run()
    assert fake.waits == []
    assert "2026-03-28 is a Saturday" in caplog.text
    assert "publishes no list on weekends" in caplog.text


def test_previous_weekday_on_monday_sends_fridays_papers() -> None:
    settings = dataclasses.replace(
        BERLIN_SETTINGS,
        schedule=schedule(
            time="08:00", timezone="Europe/Berlin", days=("mon-fri",), paper_day="previous_weekday"
        ),
    )
    fake = FakeTime(dt.datetime(2026, 3, 30, 8, 0, 2, tzinfo=BERLIN))
    job = Recorder()
    make_run(settings, fake, probe=lambda s, d: True, job=job).run()
    assert [d for d, _ in job.calls] == [dt.date(2026, 3, 27)]


def test_a_catch_up_run_uses_the_date_of_the_missed_run_not_of_now() -> None:
    # Due at 23:30 on the 30th, the daemon came back at 00:10 on the 31st (within grace).
    settings = Settings(schedule=schedule(time="23:30", timezone="Europe/Berlin", days=EVERY_DAY))
    fake = FakeTime(dt.datetime(2026, 3, 31, 0, 10, tzinfo=BERLIN))
    job = Recorder()
    make_run(settings, fake, probe=lambda s, d: True, job=job).run()
    assert [d for d, _ in job.calls] == [dt.date(2026, 3, 30)]


def test_a_day_the_ledger_calls_done_sends_nothing() -> None:
    fake = FakeTime(dt.datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN))
    job = Recorder()
    asked: list[tuple[dt.date, str]] = []

    def done(date: dt.date, zone: str) -> bool:
        asked.append((date, zone))
        return True

    make_run(BERLIN_SETTINGS, fake, probe=lambda s, d: True, job=job, is_done=done).run()
    assert job.calls == []
    assert asked == [(dt.date(2026, 3, 30), "Europe/Berlin")]


def test_a_stop_during_the_poll_sends_nothing() -> None:
    fake = FakeTime(dt.datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN))
    stop = threading.Event()

    def stopping_wait(seconds: float) -> bool:
        stop.set()
        return True

    job = Recorder()
    run = make_run(BERLIN_SETTINGS, fake, probe=lambda s, d: False, job=job, stop=stop)
    run.wait = stopping_wait
    run.run()
    assert job.calls == []


def test_a_failing_job_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime(dt.datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN))

    def broken(settings: Settings, date: dt.date, **options: object) -> object:
        raise ConfigError("delivery.password is not set")

    run = make_run(BERLIN_SETTINGS, fake, probe=lambda s, d: True, job=Recorder())
    run.job = broken
    with caplog.at_level(logging.INFO, logger="newsletter"):
        run()
    assert "run failed: delivery.password is not set" in caplog.text


def test_after_the_send_the_follow_up_gets_the_paper_date_and_its_failure_is_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime(dt.datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN))
    seen: list[dt.date] = []

    def after(settings: Settings, date: dt.date) -> None:
        seen.append(date)
        raise OSError("disk full")

    job = Recorder()
    run = make_run(BERLIN_SETTINGS, fake, probe=lambda s, d: True, job=job)
    run.after = after
    with caplog.at_level(logging.INFO, logger="newsletter"):
        run()
    assert seen == [dt.date(2026, 3, 30)]
    assert len(job.calls) == 1
    assert "follow-up failed" in caplog.text
