from __future__ import annotations

import datetime as dt
import email
import json
import time
from email.message import Message
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.state import State
from newsletter.tokens import UNSUBSCRIBE, verify_token

PAGE_HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "by AK and the research community\n\n"
)


def _page(n: int) -> str:
    body = "".join(
        f"Paper number {i}: robot manipulation with diffusion policies\n\n"
        f"We study robot manipulation {i}. " + "Long abstract text. " * 40 + "\n\n"
        for i in range(n)
    )
    return PAGE_HEADER + body


def _parts(path: Path) -> dict[str, Message]:
    message = email.message_from_bytes(path.read_bytes())
    return {part.get_content_type(): part for part in message.walk()}


def test_preview_writes_the_four_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.txt"
    page.write_text(_page(12), encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["preview", "--source", str(page), "--date", "2026-11-25", "--out", "out"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for name in ("digest.html", "digest.txt", "digest.eml", "digest.json"):
        assert (out / name).is_file()
        assert f"out/{name}" in result.output
    summary = json.loads((out / "digest.json").read_text())
    assert summary["date"] == "2026-11-25"
    titles = [p["title"] for t in summary["topics"] for p in t["papers"]]
    assert sorted(titles) == sorted(
        f"Paper number {i}: robot manipulation with diffusion policies" for i in range(12)
    )
    for topic in summary["topics"]:
        assert topic["name"]
        for paper in topic["papers"]:
            assert paper["url"].startswith("https://")
            assert isinstance(paper["score"], int | float)
    parts = _parts(out / "digest.eml")
    assert {"text/plain", "text/html"} <= parts.keys()
    assert "HTML " in result.output and "bytes" in result.output


def test_preview_of_an_empty_day_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    result = CliRunner().invoke(
        cli,
        ["preview", "--source", str(empty), "--date", "2026-11-28", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 0, result.output
    assert "no papers" in result.output
    assert json.loads((tmp_path / "o" / "digest.json").read_text())["topics"] == []


def test_preview_reports_a_broken_source_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"paper": {"id": "1"')
    result = CliRunner().invoke(
        cli, ["preview", "--source", str(bad), "--date", "2026-11-25", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- preview is the email

SECRET = "preview-test-secret-0123456789abcdef"


def _preview(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    page = tmp_path / "page.txt"
    page.write_text(_page(6), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["preview", "--source", str(page), "--out", str(out), *args], env=env
    )
    assert result.exit_code == 0, result.output
    return out


def test_the_full_preview_greets_neutrally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = _preview(tmp_path, "--date", "2026-11-25")
    text = (out / "digest.txt").read_text()
    assert "Hi there," in text and "Hi preview" not in text
    assert "View in browser" not in text  # no digest.archive_url
    summary = json.loads((out / "digest.json").read_text())
    for topic in summary["topics"]:
        for paper in topic["papers"]:
            assert paper["summary"] and paper["summary"] in text.replace("\n  ", " ")
            assert len(paper["summary"]) <= 280


def test_subscriber_preview_is_their_own_email(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n"
        "  - email: ada@example.org\n"
        "    name: Ada Lovelace\n"
        "    keywords: [robot manipulation]\n"
        "    max_papers: 3\n",
        encoding="utf-8",
    )
    env = {
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_DIGEST__ARCHIVE_URL": "https://archive.example.org/daily",
    }
    out = _preview(tmp_path, "--subscriber", "ADA@example.org", "--date", "2026-11-25", env=env)
    text = (out / "digest.txt").read_text()
    assert "Hi Ada Lovelace," in text
    assert "Sent to: ada@example.org" in text
    assert "View in browser: https://archive.example.org/daily/2026-11-25.html" in text
    summary = json.loads((out / "digest.json").read_text())
    assert sum(len(t["papers"]) for t in summary["topics"]) == 3  # their variant
    token = text.split("Unsubscribe: http://localhost:8080/unsubscribe?token=", 1)[1].split()[0]
    assert verify_token(SECRET.encode(), token, UNSUBSCRIBE) == "ada@example.org"
    html = (out / "digest.html").read_text()
    assert 'href="https://archive.example.org/daily/2026-11-25.html#' in html  # contents


def test_the_date_defaults_to_today_in_utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # a zone whose "today" is not UTC's right now: UTC-12 before noon UTC, else UTC+14
    zone = "Etc/GMT+12" if dt.datetime.now(dt.UTC).hour < 12 else "Etc/GMT-14"
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert dt.date.today() != dt.datetime.now(dt.UTC).date()
        out = _preview(tmp_path)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert json.loads((out / "digest.json").read_text())["date"] == (
        dt.datetime.now(dt.UTC).date().isoformat()
    )


def test_subscriber_preview_leaves_out_what_send_would_as_recently_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    name: Ada\n", encoding="utf-8"
    )
    with State(f"sqlite:///{tmp_path / 'state.db'}") as state:
        state.record_papers(
            dt.date(2026, 11, 24),
            ["title:paper number 0: robot manipulation with diffusion policies"],
        )
    env = {
        "NEWSLETTER_DIGEST__DEDUPE_DAYS": "3",
        "NEWSLETTER_STATE": f"sqlite:///{tmp_path / 'state.db'}",
    }
    out = _preview(tmp_path, "--subscriber", "ada@example.org", "--date", "2026-11-25", env=env)
    titles = [
        p["title"]
        for t in json.loads((out / "digest.json").read_text())["topics"]
        for p in t["papers"]
    ]
    assert len(titles) == 5
    assert "Paper number 0: robot manipulation with diffusion policies" not in titles
