"""``newsletter status``: a pending catch-up, a scheduled day nobody sent, a dead daemon,
from the real state database."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.cli.run import DAEMON_KEY, FIRST_START_KEY, Ops
from newsletter.models import SendResult, SendStatus, Subscriber
from newsletter.state import State

NOW = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)  # a Wednesday, an hour after 08:00 UTC
READERS = [Subscriber("a@example.org"), Subscriber("b@example.org")]


def setup(tmp_path: Path) -> Path:
    config = tmp_path / "newsletter.yaml"
    config.write_text(
        "state: state.db\n"
        "schedule:\n  time: '08:00'\n  timezone: UTC\n  days: [mon-fri]\n"
        "  misfire_grace_seconds: 7200\n"
    )
    return config


def status(config: Path) -> dict[str, object]:
    ops = Ops(clock=lambda: NOW, load_subscribers=lambda s: READERS)
    result = CliRunner().invoke(cli, ["status", "-c", str(config), "--json"], obj=ops)
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.output)
    return report


def test_a_missed_run_after_the_first_start_is_a_pending_catch_up(tmp_path: Path) -> None:
    config = setup(tmp_path)
    with State(tmp_path / "state.db") as state:
        state.set_meta(FIRST_START_KEY, "2026-03-30T07:00:00+00:00")
        state.set_meta(
            DAEMON_KEY,
            json.dumps(
                {
                    "host": "elsewhere.example",
                    "pid": 4242,
                    "started_at": "2026-03-30T07:00:00+00:00",
                    "beat_at": "2026-03-31T22:00:00+00:00",
                    "stopped_at": None,
                }
            ),
        )
    report = status(config)
    assert report["catch_up"] == [
        {
            "zone": "UTC",
            "due_at": "2026-04-01T08:00:00+00:00",
            "paper_date": "2026-04-01",
            "subscribers": 2,
        }
    ]
    problems = report["problems"]
    assert isinstance(problems, list)
    assert any("died: last seen 2026-03-31T22:00:00+00:00" in p for p in problems)
    assert any(
        "papers of 2026-04-01 were due" in p and "the daemon catches it up" in p for p in problems
    )
    text = CliRunner().invoke(
        cli,
        ["status", "-c", str(config)],
        obj=Ops(clock=lambda: NOW, load_subscribers=lambda s: READERS),
    )
    assert "catch-up pending: papers of 2026-04-01 (UTC" in text.output


def test_before_any_daemon_started_a_due_day_is_a_problem_but_no_catch_up(tmp_path: Path) -> None:
    report = status(setup(tmp_path))
    assert report["catch_up"] == []
    assert report["daemon"] is None
    (problem,) = report["problems"]  # type: ignore[misc]
    assert "`newsletter send --date 2026-04-01` sends it" in str(problem)
    assert not (tmp_path / "state.db").exists()  # status created nothing


def test_a_sent_day_is_no_problem(tmp_path: Path) -> None:
    config = setup(tmp_path)
    day = dt.date(2026, 4, 1)
    with State(tmp_path / "state.db") as state:
        run = state.start_run(day, command="send", owner="x")
        state.claim(day, [r.email for r in READERS], owner="x")
        state.record(day, [SendResult(r.email, SendStatus.SENT) for r in READERS])
        state.finish_run(run, {"sent": 2}, outcome="ok")
    report = status(config)
    assert report["problems"] == [] and report["catch_up"] == []
    last = report["last_run"]
    assert isinstance(last, dict) and last["outcome"] == "ok" and last["counts"]["sent"] == 2
