"""The reader's pages (newsletter.reader_web) through the web app on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from newsletter.models import Day, Subscriber
from newsletter.prefs import PrefsStore
from newsletter.tokens import CONFIRM, PREFERENCES, make_token
from newsletter.web import ReaderOptions, WebApp
from tests.doubles import EXAMPLE_TOPICS, serving
from tests.steer_papers import DIFFUSION, ROBOTICS

SECRET = b"reader-web-secret"
TODAY = dt.date(2026, 1, 6)


@dataclass
class Site:
    base: str
    store: PrefsStore
    sent: list[tuple[str, str]]

    def prefs(self, email: str = "ada@example.org", **extra: str) -> str:
        url = f"{self.base}/preferences?token={make_token(SECRET, email, PREFERENCES)}"
        return url + "".join(f"&{k}={v}" for k, v in extra.items())


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    store = PrefsStore(f"sqlite:///{tmp_path}/state.db")
    store.save_day(Day(TODAY, (ROBOTICS[0], DIFFUSION[0]), "test"))
    sent: list[tuple[str, str]] = []
    listed = {"ada@example.org": Subscriber("ada@example.org", keywords=("grasping",))}
    with serving(
        WebApp(
            store=store,
            secret=SECRET,
            topics=EXAMPLE_TOPICS,
            lookup=listed.get,
            today=lambda: TODAY,
            reader=ReaderOptions(
                base_url="http://x.example",
                send_confirmation=lambda a, u: sent.append((a, u)),
            ),
        )
    ) as base:
        yield Site(base, store, sent)


def _form(page: httpx.Response) -> str:
    found = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert found is not None
    return found.group(1).replace("&amp;", "&")


def test_the_form_starts_from_the_list_and_every_field_persists(site: Site) -> None:
    page = httpx.get(site.prefs(), timeout=10)
    assert page.status_code == 200
    assert ">grasping</textarea>" in page.text  # the list's keywords
    form = {
        "do": "save",
        "topic": ["Multimodal LLMs", "Agents & tool use"],
        "keywords": "diffusion policy\r\nrobot arm\n\nrobot arm",
        "authors": "LeCun, Yann\nAda Lovelace",
        "max_papers": "7",
        "summary": "abstract",
        "timezone": "Europe/Berlin",
        "frequency": "weekly",
        "weekday": "tue",
        "paused": "1",
    }
    saved = httpx.post(site.prefs(), data=form, timeout=10)
    assert saved.status_code == 200 and "Saved. Your emails are paused." in saved.text
    overlay = site.store.preferences("ada@example.org")
    assert overlay is not None
    assert overlay.topics == ("Multimodal LLMs", "Agents & tool use")
    assert overlay.keywords == ("diffusion policy", "robot arm")
    assert overlay.authors == ("LeCun, Yann", "Ada Lovelace")
    assert (overlay.max_papers, overlay.summary, overlay.timezone) == (
        7,
        "abstract",
        "Europe/Berlin",
    )
    assert (overlay.frequency, overlay.weekday, overlay.paused) == ("weekly", "tue", True)
    again = httpx.get(site.prefs(), timeout=10).text  # shown back as saved
    assert 'value="7"' in again and 'value="Europe/Berlin"' in again
    assert '<option value="tue" selected>' in again and "LeCun, Yann\nAda Lovelace" in again


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("max_papers", "0", "Papers per digest"),
        ("max_papers", "many", "Papers per digest"),
        ("timezone", "../../etc/passwd", "Time zone"),
        ("frequency", "hourly", "Frequency"),
        ("weekday", "someday", "Weekday"),
        ("summary", "novel", "Summary"),
        ("topic", "Astrology", "Topics"),
        ("keywords", "x" * 101, "Keywords"),
        ("authors", "\n".join(f"a{i}" for i in range(21)), "Authors"),
    ],
)
def test_bad_values_change_nothing_and_say_what_to_fix(
    site: Site, field: str, value: str, says: str
) -> None:
    response = httpx.post(site.prefs(), data={"do": "save", field: value}, timeout=10)
    assert response.status_code == 400 and says in response.text
    assert site.store.preferences("ada@example.org") is None


def test_feedback_get_changes_nothing_and_post_records_it(site: Site) -> None:
    for param, paper in (("more", ROBOTICS[0]), ("less", DIFFUSION[0])):
        page = httpx.get(site.prefs(**{param: paper.key}), timeout=10)
        assert page.status_code == 200 and paper.title in page.text
        assert paper.key not in {s.target for s in site.store.signals("ada@example.org")}
        done = httpx.post(site.base + "/preferences" + _form(page), timeout=10)
        assert done.status_code == 200 and "Thank you" in done.text
    fewer = httpx.get(site.prefs(fewer="Image%20%26%20video%20generation"), timeout=10)
    assert "Image &amp; video generation" in fewer.text
    httpx.post(site.base + "/preferences" + _form(fewer), timeout=10)
    got = {(s.signal, s.target) for s in site.store.signals("ada@example.org")}
    assert got == {
        ("more", ROBOTICS[0].key),
        ("less", DIFFUSION[0].key),
        ("fewer_topic", "Image & video generation"),
    }
    page = httpx.get(site.prefs(), timeout=10).text
    assert ROBOTICS[0].title in page and "Fewer papers on" in page
    httpx.post(
        site.prefs(),
        data={"do": "clear", "signal": "more", "target": ROBOTICS[0].key},
        timeout=10,
    )
    assert len(site.store.signals("ada@example.org")) == 2
    httpx.post(site.prefs(), data={"do": "clear-all"}, timeout=10)
    assert site.store.signals("ada@example.org") == []


def test_an_unknown_paper_and_a_bad_token_change_nothing(site: Site) -> None:
    gone = httpx.post(site.prefs(more="2001.00001"), timeout=10)
    assert gone.status_code == 404
    forged = site.prefs().replace("token=", "token=x")
    assert httpx.post(forged + f"&more={ROBOTICS[0].key}", timeout=10).status_code == 400
    assert site.store.signals("ada@example.org") == []


def test_an_unsubscribed_reader_resubscribes_with_a_confirmation_email(site: Site) -> None:
    site.store.suppress("ada@example.org")
    page = httpx.get(site.prefs(), timeout=10)
    assert "This address is unsubscribed" in page.text and 'id="resubscribe"' in page.text
    asked = httpx.post(site.prefs(), data={"do": "resubscribe"}, timeout=10)
    assert "Check your inbox" in asked.text
    ((address, url),) = site.sent
    assert address == "ada@example.org" and url.startswith("http://x.example/resubscribe?token=")
    assert site.store.is_suppressed("ada@example.org")  # not before the click
    local = site.base + url.removeprefix("http://x.example")
    confirm = httpx.get(local, timeout=10)
    assert confirm.status_code == 200 and "Resubscribe" in confirm.text
    assert site.store.is_suppressed("ada@example.org")  # a GET changes nothing
    assert httpx.post(local, timeout=10).status_code == 200
    assert not site.store.is_suppressed("ada@example.org")
    stale = make_token(SECRET, "ada@example.org", CONFIRM, issued=TODAY - dt.timedelta(days=8))
    assert httpx.get(f"{site.base}/resubscribe?token={stale}", timeout=10).status_code == 400
