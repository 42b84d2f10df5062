"""The static archive: one HTML page per sent day, an index and an Atom feed.

Any web server can serve the folder as it is; every link in it is relative, so it can
live at any path. Layout::

    archive/
      2026-03-30.html   the day's full digest as it was sent (the papers the state
                        database kept when the day was prepared), as a web page: the
                        email's look, no greeting, no per-reader footer or links
      index.html        every day, newest first, in the email's look, readable on a phone
      feed.xml          Atom (RFC 4287): the latest FEED_ENTRIES days, each entry carrying
                        the day's papers (titles, links, summaries) as its content
      archive.json      what the index and feed are built from (kept between runs)

Writing is a refresh: days already in the folder stay, a day given again replaces its
page (its ``updated`` time moves only when the page changed), and the index and feed are
rebuilt from the manifest. Every file is written to a temporary name and renamed, so a
web server never serves half a page.

The emails link to :func:`web_url` (``digest.archive_url`` + ``/YYYY-MM-DD.html``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import json
import os
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.files import atomic_write
from newsletter.models import Digest
from newsletter.render import summary_text

if TYPE_CHECKING:
    from newsletter.pipeline import Variant

INDEX_FILE = "index.html"
FEED_FILE = "feed.xml"
MANIFEST_FILE = "archive.json"
PAGE_SUFFIX = ".html"

FEED_ENTRIES = 30
"""How many days (newest first) the Atom feed carries."""

ATOM_NS = "http://www.w3.org/2005/Atom"

_HTTP_URL = re.compile(r"https?://[^\s\"<>]+")

MANIFEST_VERSION = 2
"""Version 2 keeps each day's feed content; version 1 manifests are read (content empty)."""

INDEX_STYLE = (
    "body{margin:0;background:#ffffff;color:#1f2328;"
    "font:15px/1.45 Helvetica,Arial,sans-serif}"
    "main{max-width:640px;margin:0 auto;padding:16px}"
    "h1{font-size:24px;margin:0 0 4px}"
    ".m{font-size:13px;color:#59636e}"
    "ol{list-style:none;padding:0;margin:16px 0}"
    "li{margin:0 0 14px;padding-top:8px;border-top:2px solid #d0d7de}"
    "a{color:#0b57d0;text-decoration:none}"
    ".t{font-size:16px;font-weight:bold;overflow-wrap:anywhere}"
    "@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}"
    "a{color:#7cb7ff}.m{color:#9da7b3}li{border-top-color:#30363d}}"
)
"""The index page's look: the email's fonts, colours, widths and dark mode."""


class ArchiveError(NewsletterError):
    """The archive folder cannot be read or written."""


@dataclass(frozen=True, slots=True)
class ArchiveDay:
    """One sent day, rendered: what the archive needs to publish it."""

    date: dt.date
    title: str
    """The email's subject line; the page and feed entry title."""
    html: str
    """The full digest as a complete HTML document (per-subscriber slots filled)."""
    summary: str = ""
    """One or two sentences for the index and the feed (the preheader)."""
    content: str = ""
    """The day's papers as an HTML fragment: the feed entry's content."""


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    date: dt.date
    title: str
    summary: str
    updated: dt.datetime
    sha256: str
    content: str = ""


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """What a refresh did."""

    folder: Path
    written: tuple[dt.date, ...]
    unchanged: tuple[dt.date, ...]
    days: int
    """How many days the index lists now."""


def page_name(date: dt.date) -> str:
    """``2026-03-30.html``."""
    return date.isoformat() + PAGE_SUFFIX


def web_url(settings: Settings, date: dt.date) -> str | None:
    """The web version of ``date``'s digest, or None when no ``digest.archive_url`` is set."""
    base = settings.digest.archive_url
    if not base:
        return None
    return base.rstrip("/") + "/" + page_name(date)


def write_archive(
    folder: str | os.PathLike[str],
    days: Iterable[ArchiveDay],
    *,
    title: str,
    now: dt.datetime,
    base_url: str | None = None,
    feed_entries: int = FEED_ENTRIES,
) -> ArchiveResult:
    """Write the pages of ``days`` into ``folder`` and rebuild the index and the feed."""
    root = Path(folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
        manifest = read_manifest(root)
        written: list[dt.date] = []
        unchanged: list[dt.date] = []
        for day in days:
            digest = hashlib.sha256(day.html.encode("utf-8")).hexdigest()
            old = manifest.get(day.date)
            page = root / page_name(day.date)
            if old is not None and old.sha256 == digest and page.exists():
                unchanged.append(day.date)
                manifest[day.date] = dataclasses.replace(
                    old, title=day.title, summary=day.summary, content=day.content
                )
                continue
            _write_atomic(page, day.html)
            manifest[day.date] = ManifestEntry(
                day.date, day.title, day.summary, now, digest, day.content
            )
            written.append(day.date)
        entries = sorted(manifest.values(), key=lambda e: e.date, reverse=True)
        _write_atomic(root / INDEX_FILE, render_index(entries, title=title))
        feed = render_feed(entries[:feed_entries], title=title, base_url=base_url, now=now)
        _write_atomic(root / FEED_FILE, feed)
        _write_atomic(root / MANIFEST_FILE, dump_manifest(entries))
    except OSError as exc:
        raise ArchiveError(f"{root}: cannot write the archive: {exc.strerror or exc}") from None
    return ArchiveResult(root, tuple(written), tuple(unchanged), len(entries))


def read_manifest(root: Path) -> dict[dt.date, ManifestEntry]:
    """The manifest of an archive folder (empty when there is none yet)."""
    path = root / MANIFEST_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        out = {}
        for item in data["days"]:
            entry = ManifestEntry(
                date=dt.date.fromisoformat(item["date"]),
                title=str(item["title"]),
                summary=str(item.get("summary", "")),
                updated=dt.datetime.fromisoformat(item["updated"]),
                sha256=str(item["sha256"]),
                content=str(item.get("content", "")),
            )
            out[entry.date] = entry
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"{path}: not an archive manifest ({exc})") from None
    return out


def dump_manifest(entries: Sequence[ManifestEntry]) -> str:
    days = [
        {
            "date": e.date.isoformat(),
            "title": e.title,
            "summary": e.summary,
            "updated": e.updated.isoformat(),
            "sha256": e.sha256,
            "content": e.content,
        }
        for e in entries
    ]
    return json.dumps({"version": MANIFEST_VERSION, "days": days}, indent=1) + "\n"


def render_index(entries: Sequence[ManifestEntry], *, title: str) -> str:
    """The index page: every day, newest first, with relative links, in the email's look."""
    esc = html.escape
    items = "\n".join(
        f'      <li><div class="m"><time datetime="{e.date.isoformat()}">'
        f"{_long_date(e.date)}</time></div>"
        f'<a class="t" href="{esc(page_name(e.date))}">{esc(e.title)}</a>'
        + (f'<div class="m">{esc(e.summary)}</div>' if e.summary else "")
        + "</li>"
        for e in entries
    )
    body = f"    <ol>\n{items}\n    </ol>" if entries else "    <p>Nothing yet.</p>"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        "  <head>\n"
        '    <meta charset="utf-8">\n'
        '    <meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '    <meta name="color-scheme" content="light dark">\n'
        f"    <title>{esc(title)} &#8212; archive</title>\n"
        f'    <link rel="alternate" type="application/atom+xml" title="{esc(title)}" '
        f'href="{FEED_FILE}">\n'
        f"    <style>{INDEX_STYLE}</style>\n"
        "  </head>\n"
        "  <body><main>\n"
        f"    <h1>{esc(title)}</h1>\n"
        f'    <div class="m">Every issue, newest first &#183; <a href="{FEED_FILE}">Atom feed</a>'
        "</div>\n"
        f"{body}\n"
        "  </main></body>\n"
        "</html>\n"
    )


def _long_date(day: dt.date) -> str:
    return f"{day:%A}, {day.day} {day:%B %Y}"


def render_feed(
    entries: Sequence[ManifestEntry],
    *,
    title: str,
    now: dt.datetime,
    base_url: str | None = None,
) -> str:
    """The Atom feed. Links are absolute under ``base_url`` when given, relative otherwise."""
    ET.register_namespace("", ATOM_NS)
    key = base_url.rstrip("/") if base_url else f"newsletter:{title}"
    feed = ET.Element(_atom("feed"))
    _text(feed, "id", _urn(key))
    _text(feed, "title", title)
    newest = max((e.updated for e in entries), default=now)
    _text(feed, "updated", _stamp(newest))
    author = ET.SubElement(feed, _atom("author"))
    _text(author, "name", title)
    prefix = key + "/" if base_url else ""
    if base_url:
        _link(feed, prefix + FEED_FILE, rel="self", type_="application/atom+xml")
    _link(feed, prefix + INDEX_FILE, rel="alternate", type_="text/html")
    for entry in entries:
        item = ET.SubElement(feed, _atom("entry"))
        _text(item, "id", _urn(f"{key}/{entry.date.isoformat()}"))
        _text(item, "title", entry.title)
        _text(item, "updated", _stamp(entry.updated))
        _text(item, "published", _stamp(dt.datetime.combine(entry.date, dt.time(), dt.UTC)))
        _link(item, prefix + page_name(entry.date), rel="alternate", type_="text/html")
        if entry.summary:
            _text(item, "summary", entry.summary)
        if entry.content:
            ET.SubElement(item, _atom("content"), {"type": "html"}).text = entry.content
    ET.indent(feed, space=" ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="unicode") + "\n"


def _atom(tag: str) -> str:
    return f"{{{ATOM_NS}}}{tag}"


def _text(parent: ET.Element, tag: str, value: str) -> None:
    ET.SubElement(parent, _atom(tag)).text = value


def _link(parent: ET.Element, href: str, *, rel: str, type_: str) -> None:
    ET.SubElement(parent, _atom("link"), {"rel": rel, "type": type_, "href": href})


def _urn(key: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, key).urn


def _stamp(when: dt.datetime) -> str:
    """RFC 3339 in UTC: ``2026-03-30T06:00:00Z``."""
    if when.tzinfo is None:
        raise ValueError("archive times must be timezone-aware")
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _write_atomic(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"), public=True)  # the archive is for everyone


def archive_day(variant: Variant) -> ArchiveDay:
    """An :class:`ArchiveDay` from the day's web page (``newsletter.pipeline.plan_page``):
    the page as rendered, its subject and preheader, and its papers as the feed content."""
    digest, rendered = variant.digest, variant.rendered
    return ArchiveDay(
        date=digest.date,
        title=rendered.subject,
        html=rendered.html,
        summary=rendered.preheader,
        content=feed_content(digest, summary_chars=rendered.summary_chars),
    )


def feed_content(digest: Digest, *, summary_chars: int | None) -> str:
    """The day's papers as a small HTML fragment for a feed reader: a heading per section,
    each paper's title (a link when it has an http(s) page) and the summary it shows."""
    esc = html.escape
    parts = []
    for group in digest.topics:
        items = []
        for rp in group.papers:
            url = rp.paper.url if rp.paper.url and _HTTP_URL.fullmatch(rp.paper.url) else None
            title = esc(" ".join(rp.paper.title.split()))
            head = f'<a href="{esc(url)}">{title}</a>' if url else f"<b>{title}</b>"
            summary = summary_text(rp.paper, digest.profile.summary, summary_chars)
            items.append(f"<li>{head}" + (f"<br>{esc(summary)}" if summary else "") + "</li>")
        parts.append(f"<h2>{esc(group.name)}</h2><ul>{''.join(items)}</ul>")
    return "".join(parts)
