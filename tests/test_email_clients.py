"""The digest's HTML stays inside what benchmarks/check_email_clients.py checked against the
caniemail data (that check needs node and npm; this one does not)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from benchmarks.check_email_clients import DEGRADES_ON_PURPOSE, SUPPORTED_CSS
from newsletter.config import Settings
from newsletter.pipeline import PreparedDay, prepare_day

DAY = dt.date(2026, 11, 25)
VALUES = {
    "name": "Ada",
    "email": "ada@example.org",
    "unsubscribe_url": "https://news.example.org/unsubscribe?token=x",
    "preferences_url": "https://news.example.org/preferences?token=x",
    "feedback_url": "https://papers.example/f/" + "F" * 36,
}


def _html(web_url: str | None) -> tuple[PreparedDay, str]:
    prepared = prepare_day(Settings(), DAY, source="sample", subscribers=[], web_url=web_url)
    html, _ = prepared.full.rendered.fill(VALUES)
    return prepared, html


def _properties(html: str) -> set[str]:
    found: set[str] = set()
    declarations = re.findall(r'style="([^"]*)"', html)
    for block in re.findall(r"<style[^>]*>(.*?)</style>", html, re.S):
        declarations += re.findall(r"\{([^{}]*)\}", block)
    for text in declarations:
        for declaration in text.split(";"):
            name, colon, _value = declaration.partition(":")
            if colon and name.strip():
                found.add(name.strip().lower())
    return found


@pytest.mark.parametrize("web_url", [None, "https://archive.example.org/d/2026-11-25.html"])
def test_no_in_message_anchor_links_and_the_contents_read_as_text(web_url: str | None) -> None:
    prepared, html = _html(web_url)
    assert not re.search(r'href="#', html)  # dead in Gmail iOS, Outlook apps, Yahoo, Samsung
    names = [group.name for group in prepared.full.digest.topics]
    contents = re.search(r"In this issue: (.*?)</div>", html.replace("\n", " "))
    assert contents is not None
    for name in names:
        assert name.replace("&", "&amp;") in contents.group(1)
    links = re.findall(r'href="([^"]+)"', contents.group(1))
    if web_url:
        assert len(links) == len(names) and all(h.startswith(web_url + "#") for h in links)
    else:
        assert links == []


def test_every_css_property_is_one_the_caniemail_check_accounts_for() -> None:
    _, html = _html("https://archive.example.org/d/2026-11-25.html")
    used = _properties(html)
    assert "overflow-wrap" in used and "color" in used  # the parser sees both kinds
    allowed = SUPPORTED_CSS | DEGRADES_ON_PURPOSE.keys()
    assert used - allowed == set(), "run python3 -m benchmarks.check_email_clients"
