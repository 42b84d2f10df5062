"""Weekly editions in the daemon's calendar and in ``status``."""

from __future__ import annotations

import datetime as dt

from newsletter import scheduler
from newsletter.cli.run import format_status
from newsletter.config import ScheduleSettings
from newsletter.models import Subscriber
from newsletter.send import editions_due
from newsletter.weekly import default_weekday

MONDAY = dt.date(2026, 1, 5)


def test_the_default_weekly_day_is_the_last_run_day() -> None:
    assert default_weekday(None, ("mon-fri",)) == "fri"
    assert default_weekday(None, ("mon",)) == "mon"
    assert default_weekday(None, ("tue", "Thursday")) == "thu"
    assert default_weekday("sun", ("mon-fri",)) == "sun"


def test_the_daemon_also_runs_on_the_weekly_day() -> None:
    assert scheduler.run_days(ScheduleSettings()) == ("mon", "tue", "wed", "thu", "fri")
    assert scheduler.run_days(ScheduleSettings(days=("mon",))) == ("mon",)
    both = scheduler.run_days(ScheduleSettings(days=("mon-fri",), weekly_day="sat"))
    assert both == ("mon", "tue", "wed", "thu", "fri", "sat")


def test_a_weekly_reader_whose_day_the_daemon_skips_is_served_the_next_run_day() -> None:
    people = [
        Subscriber("d@example.org"),
        Subscriber("sun@example.org", frequency="weekly", weekday="sun"),
        Subscriber("fri@example.org", frequency="weekly"),
    ]
    days = ("mon", "tue", "wed", "thu", "fri")
    got, waiting = editions_due(people, MONDAY, weekly_day="fri", run_days=days)
    assert [s.email for s in got] == ["d@example.org", "sun@example.org"] and waiting == 1
    friday = MONDAY + dt.timedelta(days=4)
    got, waiting = editions_due(people, friday, weekly_day="fri", run_days=days, daily=False)
    assert [s.email for s in got] == ["fri@example.org"] and waiting == 1
    sunday = MONDAY - dt.timedelta(days=1)  # a send by hand on the day itself serves it too
    got, _ = editions_due(people, sunday, weekly_day="fri")
    assert [s.email for s in got] == ["d@example.org", "sun@example.org"]


def test_status_shows_the_weekly_readers() -> None:
    report = {
        "daemon_pid": None,
        "schedule": {
            "time": "08:00",
            "timezone": "UTC",
            "days": "mon,tue,wed,thu,fri",
            "paper_day": "today",
            "weekly_day": "fri",
        },
        "weekly": {"readers": 3, "by_weekday": {"tue": 1, "fri": 2}},
        "next_runs": [],
        "last_run": None,
        "suppressed": 0,
        "problems": [],
    }
    assert "weekly edition: 3 readers (tue 1, fri 2); default day fri" in format_status(report)
