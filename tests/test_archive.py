"""The static archive: pages, index, a valid Atom feed, refreshes, web_url."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.archive import (
    ATOM_NS,
    FEED_ENTRIES,
    ArchiveDay,
    ArchiveError,
    archive_day,
    web_url,
    write_archive,
)
from newsletter.cli import cli
from newsletter.config import DigestSettings, Settings
from newsletter.pipeline import plan_page
from newsletter.sources import load_sample_day
from newsletter.templating import load_templates
from newsletter.topics import load_taxonomy

A = f"{{{ATOM_NS}}}"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
NOW = dt.datetime(2026, 3, 31, 9, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)


def page(date: dt.date, body: str = "papers") -> ArchiveDay:
    return ArchiveDay(
        date=date,
        title=f"Daily Papers {date}: robots & <diffusion>",
        html=f"<!DOCTYPE html><html><body><h1>{date}</h1><p>{body}</p></body></html>",
        summary="12 papers; top: world models",
    )


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def hrefs(path: Path) -> list[str]:
    parser = Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.hrefs


def check_atom(path: Path) -> ET.Element:
    """The RFC 4287 rules a reader relies on: ids, titles, updated times, an author."""
    feed = ET.parse(path).getroot()
    assert feed.tag == f"{A}feed"
    for tag in ("id", "title", "updated"):
        assert len(feed.findall(f"{A}{tag}")) == 1, tag
    assert feed.find(f"{A}author/{A}name") is not None
    assert RFC3339.match(feed.findtext(f"{A}updated") or "")
    ids = []
    for entry in feed.findall(f"{A}entry"):
        for tag in ("id", "title", "updated"):
            assert len(entry.findall(f"{A}{tag}")) == 1, tag
        assert RFC3339.match(entry.findtext(f"{A}updated") or "")
        assert entry.find(f"{A}link[@rel='alternate']") is not None
        ids.append(entry.findtext(f"{A}id") or "")
    assert all(i.startswith("urn:uuid:") for i in [*ids, feed.findtext(f"{A}id") or ""])
    assert len(set(ids)) == len(ids)
    return feed


def test_pages_index_and_feed_with_relative_links(tmp_path: Path) -> None:
    days = [page(dt.date(2026, 3, 27)), page(dt.date(2026, 3, 30))]
    result = write_archive(tmp_path / "site", days, title="Daily Papers", now=NOW)
    site = tmp_path / "site"
    assert result.written == (dt.date(2026, 3, 27), dt.date(2026, 3, 30))
    assert result.days == 2
    assert (site / "2026-03-30.html").read_text() == days[1].html
    assert hrefs(site / "index.html") == [
        "feed.xml",
        "feed.xml",
        "2026-03-30.html",
        "2026-03-27.html",
    ]
    index = (site / "index.html").read_text()
    assert "robots &amp; &lt;diffusion&gt;" in index
    assert "<diffusion>" not in index
    feed = check_atom(site / "feed.xml")
    entries = feed.findall(f"{A}entry")
    assert [e.find(f"{A}link").get("href") for e in entries] == [  # type: ignore[union-attr]
        "2026-03-30.html",
        "2026-03-27.html",
    ]
    assert feed.find(f"{A}link[@rel='self']") is None  # no absolute address known
    assert entries[0].findtext(f"{A}title") == "Daily Papers 2026-03-30: robots & <diffusion>"
    assert entries[0].findtext(f"{A}updated") == "2026-03-31T09:00:00Z"
    assert entries[0].findtext(f"{A}summary") == "12 papers; top: world models"
    assert not list(site.glob(".*.tmp"))


def test_with_a_base_url_feed_links_are_absolute_and_ids_stable(tmp_path: Path) -> None:
    write_archive(
        tmp_path, [page(dt.date(2026, 3, 30))], title="T", now=NOW, base_url="https://x.org/daily/"
    )
    first = check_atom(tmp_path / "feed.xml")
    assert first.find(f"{A}link[@rel='self']").get("href") == "https://x.org/daily/feed.xml"  # type: ignore[union-attr]
    entry = first.find(f"{A}entry")
    assert entry is not None
    assert entry.find(f"{A}link").get("href") == "https://x.org/daily/2026-03-30.html"  # type: ignore[union-attr]
    write_archive(
        tmp_path, [page(dt.date(2026, 3, 31))], title="T", now=LATER, base_url="https://x.org/daily"
    )
    second = check_atom(tmp_path / "feed.xml")
    ids = {e.findtext(f"{A}title"): e.findtext(f"{A}id") for e in second.findall(f"{A}entry")}
    assert ids[entry.findtext(f"{A}title")] == entry.findtext(f"{A}id")
    assert second.findtext(f"{A}id") == first.findtext(f"{A}id")
    assert second.findtext(f"{A}updated") == "2026-04-01T09:00:00Z"


def test_a_refresh_keeps_old_days_and_moves_updated_only_on_change(tmp_path: Path) -> None:
    monday, tuesday = dt.date(2026, 3, 30), dt.date(2026, 3, 31)
    write_archive(tmp_path, [page(monday)], title="T", now=NOW)
    result = write_archive(tmp_path, [page(monday), page(tuesday)], title="T", now=LATER)
    assert result.written == (tuesday,)
    assert result.unchanged == (monday,)
    assert result.days == 2
    entries = check_atom(tmp_path / "feed.xml").findall(f"{A}entry")
    assert [e.findtext(f"{A}updated") for e in entries] == [
        "2026-04-01T09:00:00Z",  # Tuesday, new
        "2026-03-31T09:00:00Z",  # Monday, unchanged since the first write
    ]
    result = write_archive(tmp_path, [page(monday, "corrected")], title="T", now=LATER)
    assert result.written == (monday,)
    manifest = json.loads((tmp_path / "archive.json").read_text())
    assert {d["date"]: d["updated"] for d in manifest["days"]} == {
        "2026-03-31": LATER.isoformat(),
        "2026-03-30": LATER.isoformat(),
    }
    assert "corrected" in (tmp_path / "2026-03-30.html").read_text()


def test_the_feed_carries_the_latest_days_only(tmp_path: Path) -> None:
    start = dt.date(2026, 1, 1)
    days = [page(start + dt.timedelta(days=n)) for n in range(FEED_ENTRIES + 5)]
    write_archive(tmp_path, days, title="T", now=NOW)
    feed = check_atom(tmp_path / "feed.xml")
    assert len(feed.findall(f"{A}entry")) == FEED_ENTRIES
    assert len(hrefs(tmp_path / "index.html")) == 2 + FEED_ENTRIES + 5


def test_an_empty_archive_is_still_valid(tmp_path: Path) -> None:
    write_archive(tmp_path, [], title="T", now=NOW)
    assert check_atom(tmp_path / "feed.xml").findall(f"{A}entry") == []
    assert "Nothing yet" in (tmp_path / "index.html").read_text()


def test_a_broken_manifest_is_an_archive_error(tmp_path: Path) -> None:
    (tmp_path / "archive.json").write_text('{"days": [{"date": "yesterday"}]}')
    with pytest.raises(ArchiveError, match=r"archive\.json"):
        write_archive(tmp_path, [], title="T", now=NOW)


def test_an_unwritable_folder_is_an_archive_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ArchiveError, match="cannot write"):
        write_archive(blocker / "site", [page(dt.date(2026, 3, 30))], title="T", now=NOW)


def test_web_url() -> None:
    date = dt.date(2026, 3, 30)
    assert web_url(Settings(), date) is None
    settings = Settings(digest=DigestSettings(archive_url="https://x.org/daily/"))
    assert web_url(settings, date) == "https://x.org/daily/2026-03-30.html"
    settings = dataclasses.replace(settings, digest=DigestSettings(archive_url="https://x.org"))
    assert web_url(settings, date) == "https://x.org/2026-03-30.html"


def _sample_page(date: dt.date) -> ArchiveDay:
    day = load_sample_day(date)
    variant = plan_page(
        day, settings=Settings(), taxonomy=load_taxonomy(None), templates=load_templates(None)
    )
    return archive_day(variant)


def test_a_day_page_is_the_full_digest_without_personal_text() -> None:
    date = dt.date(2026, 3, 30)
    day = _sample_page(date)
    text = re.sub(r"\s+", " ", day.html)
    for personal in ("Hi ", "You receive this", "Unsubscribe", "Preferences", "%%"):
        assert personal not in text
    for paper in load_sample_day(date).papers:
        title = html.escape(paper.title, quote=False)
        assert title.encode("ascii", "xmlcharrefreplace").decode() in text
    assert day.title.startswith("Daily Papers 30 Mar: ")
    assert 'href="index.html"' in text and 'href="feed.xml"' in text
    assert not re.search(r'href="https?://localhost', text)  # no bare base-URL links


def test_feed_entries_carry_the_days_papers(tmp_path: Path) -> None:
    date = dt.date(2026, 3, 30)
    day = _sample_page(date)
    write_archive(tmp_path, [day], title="Daily Papers", now=NOW)
    feed = check_atom(tmp_path / "feed.xml")
    (entry,) = feed.findall(f"{A}entry")
    content = entry.find(f"{A}content")
    assert content is not None and content.get("type") == "html"
    body = content.text or ""
    papers = load_sample_day(date).papers
    assert body.count("<li>") == len(papers)
    assert f'<a href="{papers[0].url}">' in body
    # the content survives a refresh that only rebuilds the index and feed
    write_archive(tmp_path, [page(dt.date(2026, 3, 31))], title="Daily Papers", now=LATER)
    again = ET.parse(tmp_path / "feed.xml").getroot().findall(f"{A}entry")
    assert [e.find(f"{A}content") is not None for e in again] == [False, True]


def test_the_index_shares_the_emails_look_and_fits_a_phone(tmp_path: Path) -> None:
    write_archive(tmp_path, [page(dt.date(2026, 3, 30))], title="Daily Papers", now=NOW)
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in index
    assert "max-width:640px" in index and "Helvetica,Arial,sans-serif" in index
    assert "prefers-color-scheme:dark" in index
    assert "Monday, 30 March 2026" in index


def test_send_then_archive_publishes_that_days_papers_and_nothing_personal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page is the day as sent from its file, not whatever the default source has."""
    monkeypatch.chdir(tmp_path)
    entries = [
        {
            "paper": {
                "id": f"2604.0000{i}",
                "title": f'Made-up paper {i} on G\\"odel machines',
                "summary": f"We propose machine {i}. It works.",
                "authors": [{"name": "Zo\\'e Example"}],
                "upvotes": 10 * i,
                "submittedOnDailyAt": "2026-04-07T02:00:00.000Z",
            }
        }
        for i in range(1, 4)
    ]
    day_file = tmp_path / "2026-04-07.json"
    day_file.write_text(json.dumps(entries), encoding="utf-8")
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: zed@example.org\n    name: Zed Reader\n", encoding="utf-8"
    )
    env = {
        "NEWSLETTER_SOURCE__DEFAULT": "http://127.0.0.1:9/never-asked",
        "NEWSLETTER_DIGEST__ARCHIVE_URL": "https://papers.example.org/archive",
    }
    runner = CliRunner()
    sent = runner.invoke(cli, ["send", "--date", "2026-04-07", "--source", str(day_file)], env=env)
    assert sent.exit_code == 0, sent.output
    done = runner.invoke(cli, ["archive"], env=env)
    assert done.exit_code == 0, done.output
    page = html.unescape((tmp_path / "archive" / "2026-04-07.html").read_text(encoding="utf-8"))
    titles = re.findall(r'class="t"[^>]*>([^<]+)<', page)
    assert sorted(titles) == [f"Made-up paper {i} on Gödel machines" for i in (1, 2, 3)]
    assert titles[0] == "Made-up paper 3 on Gödel machines"  # the day's votes order it
    for personal in ("Zed", "zed@example.org", "Hi ", "Unsubscribe", "token="):
        assert personal not in page
    # a day that was never sent has no page (nothing is fetched for it)
    other = runner.invoke(cli, ["archive", "--date", "2026-04-08"], env=env)
    assert other.exit_code == 0 and "2026-04-08: no papers, no page" in other.output
