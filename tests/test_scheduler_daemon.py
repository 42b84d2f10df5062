"""The real APScheduler: catch-up after a missed run, restart after a sent run, signals."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from newsletter.config import ScheduleSettings, Settings
from newsletter.locking import AlreadyRunning, InstanceLock
from newsletter.models import Subscriber
from newsletter.scheduler import JOB_ID_PREFIX, Wiring, run_daemon

ROOT = Path(__file__).resolve().parents[1]
EVERY_DAY = ("mon-sun",)
SETTLE_SECONDS = 1.0
"""How long to watch a started scheduler for a (wrong) second call."""


def minutes_ago(minutes: int) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).replace(
        second=0, microsecond=0
    )


def settings_due(at: dt.datetime, *, grace: int, tmp_path: Path) -> Settings:
    """Settings whose daily run (UTC, every day) was due at ``at``."""
    return Settings(
        schedule=ScheduleSettings(
            time=at.strftime("%H:%M"), timezone="UTC", days=EVERY_DAY, misfire_grace_seconds=grace
        ),
        state=f"sqlite:///{tmp_path / 'state.db'}",
    )


class FakeLedger:
    """Stands in for the delivery ledger: the job records what it sent, is_done reads it."""

    def __init__(self) -> None:
        self.sent: set[tuple[dt.date, str]] = set()
        self.calls: list[tuple[dt.date, str | None]] = []
        self.called = threading.Event()

    def job(self, settings: Settings, date: dt.date, **options: object) -> object:
        zone = options.get("only_timezone")
        assert isinstance(zone, str)
        self.calls.append((date, zone))
        self.sent.add((date, zone))
        self.called.set()
        return None

    def is_done(self, date: dt.date, zone: str) -> bool:
        return (date, zone) in self.sent


def run_scheduler_briefly(settings: Settings, ledger: FakeLedger, *, expect_call: bool) -> object:
    scheduler = Wiring(
        settings, job=ledger.job, probe=lambda s, d: True, is_done=ledger.is_done
    ).build()
    scheduler.start()
    try:
        if expect_call:
            assert ledger.called.wait(5)
        time.sleep(SETTLE_SECONDS)
        return scheduler.get_job(JOB_ID_PREFIX + "UTC").next_run_time
    finally:
        scheduler.shutdown(wait=True)


def test_a_restart_after_missed_runs_sends_once_then_a_restart_after_the_send_sends_nothing(
    tmp_path: Path,
) -> None:
    due = minutes_ago(2)
    # A grace of three days covers three missed runs (today's and the two before): coalesced.
    settings = settings_due(due, grace=3 * 86400, tmp_path=tmp_path)
    ledger = FakeLedger()
    next_time = run_scheduler_briefly(settings, ledger, expect_call=True)
    assert ledger.calls == [(due.date(), "UTC")]
    assert next_time == due + dt.timedelta(days=1)

    ledger.called.clear()
    next_time = run_scheduler_briefly(settings, ledger, expect_call=False)  # a restart
    assert ledger.calls == [(due.date(), "UTC")]  # no second call: the ledger says done
    assert next_time == due + dt.timedelta(days=1)


def test_three_missed_runs_are_coalesced_into_one_call_even_without_a_ledger(
    tmp_path: Path,
) -> None:
    due = minutes_ago(2)
    settings = settings_due(due, grace=3 * 86400, tmp_path=tmp_path)
    ledger = FakeLedger()
    scheduler = Wiring(settings, job=ledger.job, probe=lambda s, d: True).build()
    job = scheduler.get_job(JOB_ID_PREFIX + "UTC")
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 3 * 86400)
    assert job.next_run_time == due - dt.timedelta(days=2)  # the oldest missed run...
    scheduler.start()
    try:
        assert ledger.called.wait(5)
        time.sleep(SETTLE_SECONDS)
    finally:
        scheduler.shutdown(wait=True)
    assert ledger.calls == [(due.date(), "UTC")]  # ...but one call, for the latest


def test_a_run_missed_by_more_than_the_grace_is_not_caught_up(tmp_path: Path) -> None:
    settings = settings_due(minutes_ago(3), grace=60, tmp_path=tmp_path)
    ledger = FakeLedger()
    run_scheduler_briefly(settings, ledger, expect_call=False)
    assert ledger.calls == []


def test_one_job_per_zone_each_sending_its_own_zone(tmp_path: Path) -> None:
    due = minutes_ago(1)
    settings = settings_due(due, grace=7200, tmp_path=tmp_path)
    # Same local time in UTC and in a zone a whole number of hours away: both missed.
    subscribers = [
        Subscriber("a@example.org"),
        Subscriber("b@example.org", timezone="Etc/GMT-1"),  # UTC+1: due an hour earlier
        Subscriber("c@example.org", timezone="Etc/GMT+12"),  # UTC-12: due in 11 hours
    ]
    ledger = FakeLedger()
    scheduler = Wiring(
        settings, job=ledger.job, probe=lambda s, d: True, is_done=ledger.is_done
    ).build(subscribers)
    assert sorted(job.id for job in scheduler.get_jobs()) == [
        "daily:Etc/GMT+12",
        "daily:Etc/GMT-1",
        "daily:UTC",
    ]
    scheduler.start()
    try:
        deadline = time.monotonic() + 5
        while len(ledger.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(SETTLE_SECONDS)
    finally:
        scheduler.shutdown(wait=True)
    # Each zone's run is for its own local date: the same wall time, so the same date.
    assert sorted(ledger.calls) == [(due.date(), "Etc/GMT-1"), (due.date(), "UTC")]


def test_zone_jobs_follow_the_subscriber_list_without_catching_up_new_zones(
    tmp_path: Path,
) -> None:
    settings = settings_due(minutes_ago(1), grace=7200, tmp_path=tmp_path)
    ledger = FakeLedger()
    wiring = Wiring(settings, job=ledger.job, probe=lambda s, d: True, is_done=ledger.is_done)
    scheduler = wiring.new_scheduler(["UTC"])
    wiring.add_zone(scheduler, "UTC", catch_up=False)
    tokyo = Subscriber("t@example.org", timezone="Asia/Tokyo")
    assert wiring.sync(scheduler, [Subscriber("u@example.org"), tokyo]) == (["Asia/Tokyo"], [])
    assert wiring.sync(scheduler, [Subscriber("u@example.org"), tokyo]) == ([], [])
    assert wiring.sync(scheduler, [tokyo]) == ([], ["UTC"])
    assert [job.id for job in scheduler.get_jobs()] == ["daily:Asia/Tokyo"]
    scheduler.start()
    try:
        time.sleep(SETTLE_SECONDS)
    finally:
        scheduler.shutdown(wait=True)
    assert ledger.calls == []  # the UTC run due a minute ago was not caught up by a sync


def test_run_daemon_stops_on_its_event_and_holds_the_lock_meanwhile(tmp_path: Path) -> None:
    settings = settings_due(minutes_ago(1), grace=3600, tmp_path=tmp_path)
    ledger = FakeLedger()
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(
            run_daemon(
                settings,
                job=ledger.job,
                probe=lambda s, d: True,
                is_done=ledger.is_done,
                stop=stop,
                signals=(),
            )
        )
    )
    thread.start()
    try:
        assert ledger.called.wait(5)
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            InstanceLock(tmp_path / "state.db.lock").acquire()
    finally:
        stop.set()
        thread.join(10)
    assert codes == [0]
    assert len(ledger.calls) == 1
    with InstanceLock(tmp_path / "state.db.lock"):  # released on the way out
        pass


SLOW_DAEMON = textwrap.dedent(
    """
    import datetime as dt, json, sys, time
    from pathlib import Path
    from newsletter.config import ScheduleSettings, Settings
    from newsletter.logs import setup_logging
    from newsletter.models import Subscriber
    from newsletter.scheduler import run_daemon

    out = Path(sys.argv[1])
    due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    settings = Settings(
        schedule=ScheduleSettings(
            time=due.strftime("%H:%M"), timezone="UTC", days=("mon-sun",),
            misfire_grace_seconds=3600,
        ),
        state=f"sqlite:///{out / 'state.db'}",
    )

    def slow_send(settings, date, *, only_timezone, stop, now):
        (out / "started").write_text(date.isoformat())
        sent = 0
        while not stop.is_set() and sent < 400:  # one message every 50 ms
            time.sleep(0.05)
            sent += 1
        time.sleep(0.3)  # the message in flight when the stop came still goes out
        (out / "finished").write_text(json.dumps({"stop_seen": stop.is_set(), "sent": sent}))

    def reload():
        zones = json.loads((out / "zones.json").read_text())
        (out / "reloaded").write_text("yes")
        return [Subscriber(f"{n}@example.org", timezone=z) for n, z in enumerate(zones)]

    setup_logging(fmt="json")
    sys.exit(run_daemon(settings, job=slow_send, probe=lambda s, d: True, reload=reload))
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_send_finishes_the_message_and_exits_zero(
    tmp_path: Path, signum: signal.Signals
) -> None:
    daemon = subprocess.Popen(
        [sys.executable, "-c", SLOW_DAEMON, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "started").exists():
            assert daemon.poll() is None, daemon.communicate()
            assert time.monotonic() < deadline, "the daemon never started its send"
            time.sleep(0.02)
        # A second daemon on the same state is refused while this one runs.
        with pytest.raises(AlreadyRunning, match=f"pid {daemon.pid}"):
            InstanceLock(tmp_path / "state.db.lock").acquire()
        # SIGHUP: the subscriber list now has a Tokyo subscriber: a job for that zone.
        (tmp_path / "zones.json").write_text('["UTC", "Asia/Tokyo"]')
        daemon.send_signal(signal.SIGHUP)
        while not (tmp_path / "reloaded").exists():
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.02)
        daemon.send_signal(signum)
        _, err = daemon.communicate(timeout=15)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    finished = json.loads((tmp_path / "finished").read_text())
    assert finished["stop_seen"] is True
    assert finished["sent"] < 400  # it stopped early, not at the end of the list
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    messages = [event["message"] for event in events]
    assert f"{signum.name}: taking no new work; finishing the message in flight" in messages
    assert messages[-1] == "daemon stopped"
    assert "time zones: +Asia/Tokyo" in messages
    assert messages.index("time zones: +Asia/Tokyo") < messages.index(
        f"{signum.name}: taking no new work; finishing the message in flight"
    )
    run_ids = {e["run_id"] for e in events if e["message"].startswith("sending the papers")}
    assert len(run_ids) == 1 and "-" not in run_ids


RESUMING_DAEMON = textwrap.dedent(
    """
    import datetime as dt, os, sys, time
    from pathlib import Path
    from newsletter.config import ScheduleSettings, Settings
    from newsletter.logs import setup_logging
    from newsletter.models import Subscriber
    from newsletter.scheduler import run_daemon

    out = Path(sys.argv[1])
    ledger = out / "ledger.txt"
    emails = [f"s{n:02d}@example.org" for n in range(20)]
    due = dt.datetime.fromisoformat(sys.argv[2])
    settings = Settings(
        schedule=ScheduleSettings(
            time=due.strftime("%H:%M"), timezone="UTC", days=("mon-sun",),
            misfire_grace_seconds=3600,
        ),
        state=f"sqlite:///{out / 'state.db'}",
    )

    def recorded():
        return set(ledger.read_text().split()) if ledger.exists() else set()

    def send_missing(settings, date, *, only_timezone, stop, now):
        # A stand-in for send_day: the ledger file says who has it; one message per 50 ms.
        for email in emails:
            if stop.is_set():
                return
            if email in recorded():
                continue
            time.sleep(0.05)
            with ledger.open("a") as handle:
                handle.write(email + "\\n")
                handle.flush()
                os.fsync(handle.fileno())

    def is_done(date, zone):
        return set(emails) <= recorded()

    setup_logging(fmt="json")
    sys.exit(run_daemon(
        settings, job=send_missing, probe=lambda s, d: True, is_done=is_done,
        subscribers=[Subscriber(e) for e in emails],
    ))
    """
)


def ledger_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger.txt"
    return path.read_text().split() if path.exists() else []


def wait_for_lines(tmp_path: Path, count: int, daemon: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while len(ledger_lines(tmp_path)) < count:
        assert daemon.poll() is None, daemon.communicate()
        assert time.monotonic() < deadline, f"fewer than {count} sends"
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_daemon_stopped_mid_send_is_completed_by_the_next_start_without_duplicates(
    tmp_path: Path, signum: signal.Signals
) -> None:
    due = minutes_ago(1).isoformat()
    command = [sys.executable, "-c", RESUMING_DAEMON, str(tmp_path), due]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_lines(tmp_path, 3, first)
        first.send_signal(signum)
        first.communicate(timeout=15)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
    after_first = ledger_lines(tmp_path)
    assert 3 <= len(after_first) < 20

    second = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_lines(tmp_path, 20, second)
        time.sleep(SETTLE_SECONDS)
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=15)
    finally:
        if second.poll() is None:
            second.kill()
            second.communicate()
    assert second.returncode == 0, err
    lines = ledger_lines(tmp_path)
    assert sorted(lines) == [f"s{n:02d}@example.org" for n in range(20)]  # all, once each
    assert lines[: len(after_first)] == after_first
    assert any(
        json.loads(line)["message"].startswith("missed the run") for line in err.splitlines()
    )


def test_no_catch_up_of_runs_due_before_the_daemon_first_started(tmp_path: Path) -> None:
    due = minutes_ago(10)
    settings = settings_due(due, grace=3 * 86400, tmp_path=tmp_path)
    ledger = FakeLedger()
    fresh = Wiring(
        settings, job=ledger.job, probe=lambda s, d: True, first_started=minutes_ago(1)
    ).build()
    fresh.start(paused=True)  # works out the next run times, runs nothing
    try:
        job = fresh.get_job(JOB_ID_PREFIX + "UTC")
        assert job.next_run_time == due + dt.timedelta(days=1)  # what status showed: next run
    finally:
        fresh.shutdown(wait=False)
    # started once yesterday evening: of the three missed runs only today's is caught up
    earlier = Wiring(
        settings, job=ledger.job, probe=lambda s, d: True, first_started=due - dt.timedelta(hours=3)
    ).build()
    assert earlier.get_job(JOB_ID_PREFIX + "UTC").next_run_time == due
