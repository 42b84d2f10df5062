"""``newsletter run``, ``status`` and ``archive`` through click's runner (and one real process)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.archive import ArchiveDay
from newsletter.cli import cli
from newsletter.cli.run import (
    FIRST_START_KEY,
    LastRun,
    Ops,
    archive_refresher,
    ledger_final_recipients,
    ledger_last_run,
    ledger_sent_days,
    prefs_suppressed,
    zone_done_check,
)
from newsletter.config import Settings
from newsletter.errors import LedgerError, SubscribersError
from newsletter.ledger import Ledger
from newsletter.locking import InstanceLock
from newsletter.models import SendResult, SendStatus, Subscriber
from newsletter.prefs import PrefsStore
from newsletter.send import load_due_subscribers
from newsletter.state import RunRecord

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 3, 28, 13, 0, tzinfo=dt.UTC)  # a Saturday

SUBSCRIBERS = [
    Subscriber("a@example.org"),
    Subscriber("b@example.org", timezone="America/New_York"),
    Subscriber("c@example.org", timezone="America/New_York"),
]


def write_config(tmp_path: Path, **extra: str) -> Path:
    lines = [
        f"state: sqlite:///{tmp_path / 'state.db'}",
        f"archive: {tmp_path / 'site'}",
        "schedule:",
        "  time: '08:00'",
        "  timezone: Europe/Berlin",
        "  days: [mon-fri]",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path = tmp_path / "newsletter.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_ops(**changes: object) -> Ops:
    ops = Ops(
        clock=lambda: NOW,
        load_subscribers=lambda s: SUBSCRIBERS,
        last_run=lambda s: LastRun(
            run_id="3f2a9c1d",
            date=dt.date(2026, 3, 27),
            started_at=dt.datetime(2026, 3, 27, 7, 0, 2, tzinfo=dt.UTC),
            finished_at=dt.datetime(2026, 3, 27, 7, 1, 10, tzinfo=dt.UTC),
            counts={"sent": 118, "failed": 1, "pending": 0},
        ),
        suppressed=lambda s: 4,
        runs_for=lambda s, d: [RUN_0327] if d == RUN_0327.day else [],
    )
    return dataclasses.replace(ops, **changes)  # type: ignore[arg-type]


RUN_0327 = RunRecord(
    id="3f2a9c1d",
    day=dt.date(2026, 3, 27),
    command="run",
    owner="host:1:run:x",
    started_at="2026-03-27T07:00:02.000+00:00",
    finished_at="2026-03-27T07:01:10.000+00:00",
    outcome="transient",
    counts={"sent": 118, "failed": 1},
)


@pytest.mark.parametrize("command", ["run", "status", "archive"])
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--config" in result.output
    assert len(result.output.splitlines()) > 4


def test_status_shows_next_runs_per_zone_the_last_run_and_suppressed(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = CliRunner().invoke(cli, ["status", "-c", str(config)], obj=fake_ops())
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "daemon: not running"
    assert "schedule: 08:00 Europe/Berlin on mon,tue,wed,thu,fri, papers of today" in lines
    assert (
        "  Europe/Berlin     Mon 2026-03-30 08:00 CEST  papers of 2026-03-30  (1 subscribers)"
        in lines
    )
    assert (
        "  America/New_York  Mon 2026-03-30 08:00 EDT  papers of 2026-03-30  (2 subscribers)"
        in lines
    )
    assert (
        "last run: papers of 2026-03-27 (started 2026-03-27 07:00:02+00:00, "
        "finished 2026-03-27 07:01:10+00:00, run 3f2a9c1d)" in lines
    )
    assert "  sent 118, failed 1, pending 0" in lines
    assert "suppressed: 4" in lines


def test_status_names_the_running_daemon(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with InstanceLock(tmp_path / "state.db.lock"):
        result = CliRunner().invoke(cli, ["status", "-c", str(config), "--json"], obj=fake_ops())
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["daemon_pid"] == os.getpid()
    assert [r["zone"] for r in report["next_runs"]] == ["Europe/Berlin", "America/New_York"]
    assert report["last_run"]["counts"] == {"sent": 118, "failed": 1, "pending": 0}
    assert report["problems"] == [
        "papers of 2026-03-27: 1 deliveries failed (0 permanent, 1 transient: "
        "`newsletter send --date 2026-03-27` retries the transient ones)"
    ]


def test_status_survives_a_broken_ledger_and_list(tmp_path: Path) -> None:
    def broken_ledger(settings: Settings) -> LastRun | None:
        raise LedgerError("state.db: database disk image is malformed")

    def broken_list(settings: Settings) -> list[Subscriber]:
        raise SubscribersError("subscribers.yaml: 2 problems")

    config = write_config(tmp_path)
    ops = fake_ops(last_run=broken_ledger, load_subscribers=broken_list)
    result = CliRunner().invoke(cli, ["status", "-c", str(config)], obj=ops)
    assert result.exit_code == 0, result.output
    assert "last run: none" in result.output
    assert "warning: ledger: state.db: database disk image is malformed" in result.output
    assert "warning: subscribers: subscribers.yaml: 2 problems" in result.output
    assert "  Europe/Berlin  Mon 2026-03-30 08:00 CEST" in result.output


def test_a_config_error_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("mon-fri", "1-5"))
    result = CliRunner().invoke(cli, ["status", "-c", str(config)], obj=fake_ops())
    assert result.exit_code == 2
    assert result.output.startswith("error: schedule.days: '1-5': use day names")
    assert "Traceback" not in result.output


def test_archive_writes_the_sent_days(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    rendered: list[dt.date] = []

    def render_day(settings: Settings, date: dt.date, now: dt.datetime) -> ArchiveDay | None:
        rendered.append(date)
        if date.weekday() >= 5:
            return None
        return ArchiveDay(date, f"Papers of {date}", f"<html><body>{date}</body></html>")

    ops = fake_ops(
        sent_days=lambda s: [dt.date(2026, 3, 26), dt.date(2026, 3, 27)], render_day=render_day
    )
    result = CliRunner().invoke(cli, ["archive", "-c", str(config)], obj=ops)
    assert result.exit_code == 0, result.output
    assert (
        f"archive {tmp_path / 'site'}: 2 written, 0 unchanged, 2 days in the index" in result.output
    )
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == [
        "2026-03-26.html",
        "2026-03-27.html",
        "archive.json",
        "feed.xml",
        "index.html",
    ]
    result = CliRunner().invoke(
        cli,
        ["archive", "-c", str(config), "--date", "2026-03-28", "--date", "2026-03-27"],
        obj=ops,
    )
    assert result.exit_code == 0, result.output
    assert "2026-03-28: no papers, no page" in result.output
    assert "0 written, 1 unchanged, 2 days in the index" in result.output
    assert rendered[-2:] == [dt.date(2026, 3, 28), dt.date(2026, 3, 27)]
    result = CliRunner().invoke(cli, ["archive", "-c", str(config)], obj=ops)
    assert "0 written, 0 unchanged, 2 days in the index" in result.output  # nothing missing
    result = CliRunner().invoke(cli, ["archive", "-c", str(config), "--all"], obj=ops)
    assert "0 written, 2 unchanged, 2 days in the index" in result.output
    assert len(rendered) == 6


def test_after_each_run_the_days_page_goes_into_the_archive(tmp_path: Path) -> None:
    settings = Settings(archive=str(tmp_path / "site"))
    ops = fake_ops(
        render_day=lambda s, d, now: (
            None if d.weekday() >= 5 else ArchiveDay(d, f"Papers of {d}", "<html></html>")
        )
    )
    refresh = archive_refresher(ops)
    refresh(settings, dt.date(2026, 3, 28))
    assert not (tmp_path / "site").exists()  # a day without papers has no page
    refresh(settings, dt.date(2026, 3, 27))
    assert (tmp_path / "site" / "2026-03-27.html").exists()
    assert "2026-03-27.html" in (tmp_path / "site" / "index.html").read_text()


def test_run_is_refused_while_another_daemon_holds_the_lock(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with InstanceLock(tmp_path / "state.db.lock"):
        result = CliRunner().invoke(cli, ["run", "-c", str(config)], obj=fake_ops())
    assert result.exit_code == 2
    assert f"error: another newsletter daemon is running (pid {os.getpid()}" in result.output


def test_the_ledger_done_check_wants_every_subscriber_of_the_zone(tmp_path: Path) -> None:
    finals: dict[dt.date, set[str]] = {dt.date(2026, 3, 30): {"a@example.org", "b@example.org"}}
    settings = Settings(schedule=dataclasses.replace(Settings().schedule, timezone="Europe/Berlin"))
    ops = fake_ops(final_recipients=lambda s, d: finals.get(d, set()))
    done = zone_done_check(settings, SUBSCRIBERS, ops)
    assert done(dt.date(2026, 3, 30), "Europe/Berlin")
    assert not done(dt.date(2026, 3, 30), "America/New_York")  # c@ is still missing
    finals[dt.date(2026, 3, 30)].add("C@example.org".lower())
    assert done(dt.date(2026, 3, 30), "America/New_York")
    assert not done(dt.date(2026, 3, 31), "Europe/Berlin")
    assert done(dt.date(2026, 3, 31), "Asia/Tokyo")  # nobody there: nothing to do

    def no_ledger(settings: Settings, date: dt.date) -> set[str]:
        raise LedgerError("locked")

    assert not zone_done_check(settings, SUBSCRIBERS, fake_ops(final_recipients=no_ledger))(
        dt.date(2026, 3, 30), "Europe/Berlin"
    )


RUN_COMMAND = textwrap.dedent(
    """
    import datetime as dt, sys, time
    from pathlib import Path
    from newsletter.cli import cli
    from newsletter.cli.run import Ops
    from newsletter.models import Subscriber

    out = Path(sys.argv[1])

    def slow_send(settings, date, *, only_timezone, stop, now):
        (out / f"started-{only_timezone.replace('/', '_')}").write_text(date.isoformat())
        while not stop.wait(0.05):
            pass
        (out / "stopped").write_text("yes")

    ops = Ops(
        load_subscribers=lambda s: [Subscriber("a@example.org")],
        final_recipients=lambda s, d: set(),
        job=slow_send,
        probe=lambda s, d: True,
    )
    cli.main(["run", "-c", sys.argv[2], "--log-format", "json"], obj=ops, standalone_mode=True)
    """
)


def test_the_run_command_in_a_real_process_catches_up_and_stops_on_sigterm(tmp_path: Path) -> None:
    due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    config = tmp_path / "n.yaml"
    config.write_text(
        f"state: sqlite:///{tmp_path / 'state.db'}\n"
        f"schedule:\n  time: '{due:%H:%M}'\n  timezone: UTC\n  days: [mon-sun]\n"
    )
    with Ledger(f"sqlite:///{tmp_path / 'state.db'}") as state:  # first started a day ago
        state.set_meta(FIRST_START_KEY, (due - dt.timedelta(days=1)).isoformat())
    daemon = subprocess.Popen(
        [sys.executable, "-c", RUN_COMMAND, str(tmp_path), str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NEWSLETTER_DELIVERY__PASSWORD": "hunter2"},
    )
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "started-UTC").exists():
            assert daemon.poll() is None, daemon.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=15)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    assert (tmp_path / "started-UTC").read_text() == due.date().isoformat()
    assert (tmp_path / "stopped").read_text() == "yes"
    events = [json.loads(line) for line in err.splitlines()]
    assert any(e["message"].startswith("missed the run of") for e in events)
    assert events[-1]["message"] == "daemon stopped"
    assert "hunter2" not in err


# ------------------------------------------------------------------ the default seams


def test_the_ledger_seams_read_the_real_ledger(tmp_path: Path) -> None:
    settings = Settings(state=f"sqlite:///{tmp_path / 'state.db'}")
    assert ledger_last_run(settings) is None  # no database yet...
    assert ledger_sent_days(settings) == []
    assert not (tmp_path / "state.db").exists()  # ...and status did not create one
    thursday, friday = dt.date(2026, 3, 26), dt.date(2026, 3, 27)
    with Ledger(settings.state) as ledger:
        assert ledger_last_run(settings) is None  # a database without rows
        ledger.mark_pending(thursday, {"a@x.org": None})
        ledger.record(thursday, [SendResult("a@x.org", SendStatus.REJECTED)])
        ledger.mark_pending(friday, {e: None for e in ("A@x.org", "b@x.org", "c@x.org", "d@x.org")})
        ledger.record(
            friday,
            [
                SendResult("A@x.org", SendStatus.SENT),
                SendResult("b@x.org", SendStatus.INVALID),
                SendResult("c@x.org", SendStatus.FAILED, transient=True),
            ],
        )
    last = ledger_last_run(settings)
    assert last is not None
    assert (last.date, last.counts) == (
        friday,
        {"sent": 1, "failed": 2, "pending": 1, "failed_permanent": 1},
    )
    assert last.started_at is not None and last.finished_at is not None
    assert last.started_at <= last.finished_at <= dt.datetime.now(dt.UTC)
    assert ledger_final_recipients(settings, friday) == {"a@x.org", "b@x.org"}
    assert ledger_sent_days(settings) == [friday]  # Thursday reached nobody


def test_the_ledger_seams_turn_database_errors_into_ledger_errors(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_text("not a database")
    with pytest.raises(LedgerError, match="state database"):
        ledger_last_run(Settings(state=f"sqlite:///{tmp_path / 'state.db'}"))


def test_the_subscriber_seams_apply_the_preference_overlay(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text(
        "subscribers:\n"
        "  - email: a@x.org\n"
        "  - email: gone@x.org\n"
        "  - email: paused@x.org\n"
        "    active: false\n"
    )
    state = f"sqlite:///{tmp_path / 'x.db'}"
    PrefsStore(state).suppress("gone@x.org")
    settings = Settings(state=state, subscribers=str(listed))
    assert [s.email for s in load_due_subscribers(settings)] == ["a@x.org"]
    assert prefs_suppressed(settings) == 1
