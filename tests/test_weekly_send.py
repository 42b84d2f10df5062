"""Done-when of the weekly edition, through ``newsletter send`` for a whole week.

A weekly reader (``weekday: fri``) and a daily reader are sent Monday to Friday from five
different days' files: the weekly reader gets exactly one email, on Friday, with papers
of at least three of those days and none sent to them before (they were a daily reader
the week before, and one of that week's papers comes back on Tuesday); the daily reader
gets five, and the paper that comes back is not sent to them twice either.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli

FRIDAY_BEFORE = dt.date(2026, 1, 2)
MONDAY = dt.date(2026, 1, 5)
WEEK = [MONDAY + dt.timedelta(days=n) for n in range(5)]
SUBJECTS = ("robot grasping", "diffusion images", "language reasoning", "speech audio")
COMEBACK = "2601.09999"
"""A paper of the week before that the source lists again on Tuesday."""


def _paper(pid: str, day: dt.date, n: int, upvotes: int) -> dict[str, object]:
    subject = SUBJECTS[n % len(SUBJECTS)]
    stamp = f"{day.isoformat()}T06:00:00.000Z"
    return {
        "paper": {
            "id": pid,
            "title": f"Paper {pid} on {subject}",
            "summary": f"We study {subject} in setting {n} and report results.",
            "authors": [{"name": f"Author {n}"}],
            "publishedAt": stamp,
            "submittedOnDailyAt": stamp,
            "upvotes": upvotes,
            "ai_keywords": [subject],
        },
        "title": f"Paper {pid} on {subject}",
        "publishedAt": stamp,
        "numComments": 0,
    }


def _day_file(folder: Path, day: dt.date, papers: list[dict[str, object]]) -> str:
    path = folder / f"{day.isoformat()}.json"
    path.write_text(json.dumps(papers), encoding="utf-8")
    return str(path)


def _ids(message: EmailMessage) -> set[str]:
    body = message.get_body(("html",))
    assert body is not None
    return set(re.findall(r"huggingface\.co/papers/(26\d\d\.\d{5})", body.get_content()))


def _mail(outbox: Path) -> dict[str, list[EmailMessage]]:
    out: dict[str, list[EmailMessage]] = {}
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        out.setdefault(message["To"].addresses[0].addr_spec, []).append(message)
    return out


def _subscribers(path: Path, weekly: bool) -> None:
    entry = "    frequency: weekly\n    weekday: fri\n" if weekly else ""
    path.write_text(
        "subscribers:\n  - email: daily@example.org\n  - email: weekly@example.org\n" + entry,
        encoding="utf-8",
    )


def test_a_weekly_reader_gets_one_email_on_friday_a_daily_reader_five(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "weekly-test-secret-weekly-test-secret-0123")
    outbox, days = tmp_path / "outbox", tmp_path / "days"
    days.mkdir()
    config = tmp_path / "newsletter.yaml"
    config.write_text(
        f"subscribers: {tmp_path / 'subscribers.yaml'}\n"
        f"state: sqlite:///{tmp_path / 'state.db'}\n"
        f"delivery:\n  backend: outbox\n  outbox: {outbox}\n",
        encoding="utf-8",
    )
    runner = CliRunner()

    def send(day: dt.date, source: str) -> None:
        result = runner.invoke(
            cli, ["send", "--date", day.isoformat(), "--source", source, "--config", str(config)]
        )
        assert result.exit_code == 0, result.output

    # the week before: both read daily; the comeback paper is sent to both
    _subscribers(tmp_path / "subscribers.yaml", weekly=False)
    before = [_paper(COMEBACK, FRIDAY_BEFORE, 0, 500), _paper("2601.09998", FRIDAY_BEFORE, 1, 5)]
    send(FRIDAY_BEFORE, _day_file(days, FRIDAY_BEFORE, before))
    assert {k: len(v) for k, v in _mail(outbox).items()} == {
        "daily@example.org": 1,
        "weekly@example.org": 1,
    }

    _subscribers(tmp_path / "subscribers.yaml", weekly=True)
    counts: list[dict[str, int]] = []
    for n, day in enumerate(WEEK):
        papers = [_paper(f"26{n + 1:02d}.{i:05d}", day, i, 10 * (5 - n) + i) for i in range(6)]
        if n == 1:
            papers.append(_paper(COMEBACK, day, 0, 900))  # the source lists it again
        send(day, _day_file(days, day, papers))
        counts.append({k: len(v) for k, v in _mail(outbox).items()})

    # nothing for the weekly reader Monday to Thursday, one email on Friday
    assert [c["weekly@example.org"] for c in counts] == [1, 1, 1, 1, 2]
    assert [c["daily@example.org"] for c in counts] == [2, 3, 4, 5, 6]
    mail = _mail(outbox)
    weekly = mail["weekly@example.org"][-1]
    assert "weekly edition" in weekly["Subject"]
    got = _ids(weekly)
    week_days = {pid[2:4] for pid in got if pid != COMEBACK}
    assert len(week_days) >= 3, got  # papers from at least three of the five days
    assert COMEBACK not in got  # sent the week before: never twice
    assert not got & _ids(mail["weekly@example.org"][0])
    # the daily reader: five emails this week, no paper twice across all six
    seen: list[str] = []
    for message in mail["daily@example.org"]:
        seen.extend(_ids(message))
    assert len(seen) == len(set(seen))
    assert COMEBACK in seen


def test_with_only_weekly_readers_the_days_are_still_kept_for_friday(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "weekly-test-secret-weekly-test-secret-0123")
    outbox, days = tmp_path / "outbox", tmp_path / "days"
    days.mkdir()
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: weekly@example.org\n    frequency: weekly\n", encoding="utf-8"
    )
    config = tmp_path / "newsletter.yaml"
    config.write_text(
        f"subscribers: {tmp_path / 'subscribers.yaml'}\n"
        f"state: sqlite:///{tmp_path / 'state.db'}\n"
        f"delivery:\n  backend: outbox\n  outbox: {outbox}\n",  # schedule.weekly_day: fri
        encoding="utf-8",
    )
    for n, day in enumerate(WEEK):
        papers = [_paper(f"26{n + 1:02d}.{i:05d}", day, i, 10 * (5 - n) + i) for i in range(6)]
        source = _day_file(days, day, papers)
        result = CliRunner().invoke(
            cli, ["send", "--date", day.isoformat(), "--config", str(config), "--source", source]
        )
        assert result.exit_code == 0, result.output
        if n < 4:
            assert "no reader is due today" in result.output
            assert not outbox.exists() or not list(outbox.glob("*.eml"))
    (message,) = _mail(outbox)["weekly@example.org"]
    assert len({pid[2:4] for pid in _ids(message)}) >= 3
