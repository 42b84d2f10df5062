"""The reader's pages (newsletter.reader_web) through the web app on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from newsletter.headers import message_id_for
from newsletter.models import Day, Subscriber
from newsletter.prefs import PrefsStore
from newsletter.tokens import (
    CONFIRM,
    PREFERENCES,
    RESUBSCRIBE,
    SigningKeys,
    feedback_token,
    make_token,
)
from newsletter.web import ReaderOptions, WebApp
from tests.doubles import EXAMPLE_TOPICS, serving
from tests.steer_papers import DIFFUSION, ROBOTICS

SECRET = b"reader-web-secret"
NEW_KEY = b"reader-web-secret-after-rotation"
TODAY = dt.date(2026, 1, 6)
LIST_ID = "Daily Papers <daily.papers.example>"
DOMAIN = "papers.example"


@dataclass
class Site:
    base: str
    store: PrefsStore
    sent: list[tuple[str, str]]

    def prefs(self, email: str = "ada@example.org", **extra: str) -> str:
        url = f"{self.base}/preferences?token={make_token(SECRET, email, PREFERENCES)}"
        return url + "".join(f"&{k}={v}" for k, v in extra.items())

    def feedback(self, word: str, target: str, *, token: str | None = None) -> str:
        """A feedback link of Ada's email of TODAY (signed with the old key, SECRET)."""
        ada = feedback_token(SECRET, "ada@example.org", list_id=LIST_ID, date=TODAY)
        return f"{self.base}/f/{token or ada}/{word}/{target}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    store = PrefsStore(f"sqlite:///{tmp_path}/state.db")
    store.save_day(Day(TODAY, (ROBOTICS[0], DIFFUSION[0]), "test"))
    # the delivery rows of TODAY's emails, as a send leaves them (feedback links name them)
    store.mark_pending(
        TODAY,
        {
            a: message_id_for(LIST_ID, TODAY, a, DOMAIN)
            for a in ("ada@example.org", "bob@b.example")
        },
    )
    sent: list[tuple[str, str]] = []
    listed = {"ada@example.org": Subscriber("ada@example.org", keywords=("grasping",))}
    with serving(
        WebApp(
            store=store,
            secret=SigningKeys(NEW_KEY, (SECRET,)),  # links signed with SECRET still work
            topics=EXAMPLE_TOPICS,
            lookup=listed.get,
            today=lambda: TODAY,
            reader=ReaderOptions(
                base_url="http://x.example",
                send_confirmation=lambda a, u: sent.append((a, u)),
                message_domain=DOMAIN,
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


def _local(action: str, site: Site) -> str:
    assert action.startswith("http://x.example/f/")
    return site.base + action.removeprefix("http://x.example")


def test_feedback_get_changes_nothing_and_post_records_it(site: Site) -> None:
    for word, paper in (("more", ROBOTICS[0]), ("less", DIFFUSION[0])):
        page = httpx.get(site.feedback(word, paper.key), timeout=10)
        assert page.status_code == 200 and paper.title in page.text
        assert paper.key not in {s.target for s in site.store.signals("ada@example.org")}
        done = httpx.post(_local(_form(page), site), timeout=10)
        assert done.status_code == 200 and "Thank you" in done.text
    fewer = httpx.get(site.feedback("fewer", "Image%20%26%20video%20generation"), timeout=10)
    assert "Image &amp; video generation" in fewer.text
    httpx.post(_local(_form(fewer), site), timeout=10)
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
    gone = httpx.post(site.feedback("more", "2001.00001"), timeout=10)
    assert gone.status_code == 404
    ada = feedback_token(SECRET, "ada@example.org", list_id=LIST_ID, date=TODAY)
    bob = feedback_token(SECRET, "bob@b.example", list_id=LIST_ID, date=TODAY)
    flipped = ada[:30] + ("A" if ada[30] != "A" else "B") + ada[31:]
    bad = [
        flipped,  # the MAC altered
        ada[:22] + bob[22:],  # Ada's delivery with Bob's MAC
        feedback_token(b"some other key", "ada@example.org", list_id=LIST_ID, date=TODAY),
        feedback_token(SECRET, "ada@example.org", list_id=LIST_ID, date=TODAY.replace(day=1)),
        ada[:-1],
        ada + "A",
        "x" * 3000,
    ]
    for token in bad:
        for method in ("GET", "POST"):
            answer = httpx.request(method, site.feedback("more", ROBOTICS[0].key, token=token))
            assert answer.status_code == 400 and "Link not valid" in answer.text, token
    unknown = httpx.post(site.feedback("most", ROBOTICS[0].key), timeout=10)
    assert unknown.status_code == 400
    assert httpx.post(site.feedback("more", "x" * 5000), timeout=10).status_code == 404
    assert site.store.signals("ada@example.org") == []
    assert site.store.signals("bob@b.example") == []


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
    stale = make_token(SECRET, "ada@example.org", RESUBSCRIBE, issued=TODAY - dt.timedelta(days=8))
    assert httpx.get(f"{site.base}/resubscribe?token={stale}", timeout=10).status_code == 400


def test_a_sign_up_confirmation_token_does_not_resubscribe(site: Site) -> None:
    site.store.suppress("ada@example.org")
    confirm = make_token(SECRET, "ada@example.org", CONFIRM, issued=TODAY)
    for method in ("GET", "POST"):
        answer = httpx.request(method, f"{site.base}/resubscribe?token={confirm}", timeout=10)
        assert answer.status_code == 400 and "Link not valid" in answer.text
    assert site.store.is_suppressed("ada@example.org")
