"""The loop closed: links taken from messages that ``send_day`` really sent, used against the
web app on 127.0.0.1, change who gets the next send and what they get."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from newsletter.config import DeliverySettings, DigestSettings, Settings
from newsletter.models import DELIVERED, SendResult
from newsletter.prefs import PrefsStore, next_send_subscribers
from newsletter.send import RunReport, send_day
from newsletter.web import WebApp
from tests.doubles import EXAMPLE_LIST, EXAMPLE_TOPICS, send_collecting, serving

DAY1 = dt.date(2026, 3, 2)
DAY2 = dt.date(2026, 3, 3)
SECRET = "send-loop-secret-0123456789abcdef0123"


@dataclass
class Loop:
    settings: Settings
    store: PrefsStore
    outbox: Path


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    listfile = tmp_path / "subscribers.yaml"
    listfile.write_bytes(EXAMPLE_LIST.read_bytes())
    state = f"sqlite:///{tmp_path}/state.db"
    store = PrefsStore(state)
    app = WebApp(store=store, secret=SECRET.encode(), topics=EXAMPLE_TOPICS)
    with serving(app) as base_url:
        settings = Settings(
            subscribers=str(listfile),
            state=state,
            secret_key=SECRET,
            delivery=DeliverySettings(backend="outbox", outbox=str(tmp_path / "outbox")),
            digest=DigestSettings(base_url=base_url),
        )
        yield Loop(settings, store, tmp_path / "outbox")


def sent_to(outbox: Path, address: str) -> list[EmailMessage]:
    found = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if message["To"].addresses[0].addr_spec == address:
            found.append(message)
    return found


def delivered(sent: tuple[RunReport, list[SendResult]]) -> set[str]:
    return {r.email for r in sent[1] if r.status in DELIVERED}


def test_one_click_post_from_a_sent_message_skips_the_next_send(loop: Loop) -> None:
    first = send_collecting(loop.settings, DAY1, source="sample")
    assert "ada@example.org" in delivered(first)
    (message,) = sent_to(loop.outbox, "ada@example.org")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(http[^>]+)>", str(message["List-Unsubscribe"]))
    assert url is not None
    # Exactly what a mailbox provider does on "unsubscribe": one POST, no cookies.
    response = httpx.post(url.group(1), data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert response.status_code == 200
    assert loop.store.is_suppressed("ada@example.org")

    second = send_collecting(loop.settings, DAY2, source="sample")
    assert "ada@example.org" not in delivered(second)
    assert delivered(second) == delivered(first) - {"ada@example.org"}


def test_preferences_from_a_sent_message_reach_the_next_send(loop: Loop) -> None:
    send_day(loop.settings, DAY1, source="sample")
    (message,) = sent_to(loop.outbox, "grace@example.org")
    body = message.get_body(("html",))
    assert body is not None
    found = re.search(
        r'href="(http://127\.0\.0\.1:\d+/preferences\?token=[^"]+)">Preferences<',
        body.get_content(),
    )
    assert found is not None
    prefs_url = found.group(1).replace("&amp;", "&")
    page = httpx.get(prefs_url, timeout=10)
    assert page.status_code == 200 and "grace@example.org" in page.text
    saved = httpx.post(
        prefs_url, data={"topic": ["Agents & tool use"], "summary": "titles"}, timeout=10
    )
    assert saved.status_code == 200
    (grace,) = [s for s in next_send_subscribers(loop.settings) if s.email == "grace@example.org"]
    assert (grace.topics, grace.summary) == (("Agents & tool use",), "titles")

    httpx.post(prefs_url, data={"summary": "titles", "paused": "1"}, timeout=10)
    second = send_collecting(loop.settings, DAY2, source="sample")
    assert "grace@example.org" not in delivered(second)
    assert "ada@example.org" in delivered(second)
