"""The web app, served for real on 127.0.0.1 and spoken to over HTTP."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from newsletter.models import Subscriber
from newsletter.prefs import PrefsStore
from newsletter.subscribers import load_subscribers
from newsletter.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, make_token, subscriber_links
from newsletter.web import SignupOptions, WebApp
from tests.doubles import EXAMPLE_TOPICS, serving

SECRET = b"web-test-secret"
TODAY = dt.date(2026, 4, 1)
SUBS = [
    Subscriber(email="ada@example.org", topics=("Multimodal LLMs",)),
    Subscriber(email="bob@example.org", summary="abstract"),
]
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@dataclass
class Mailbox:
    sent: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, address: str, url: str) -> None:
        self.sent.append((address, url))


@dataclass
class Server:
    url: str
    store: PrefsStore
    mailbox: Mailbox
    list_path: Path
    client: httpx.Client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    store = PrefsStore(f"sqlite:///{tmp_path}/state.db")
    list_path = tmp_path / "subscribers.yaml"
    list_path.write_text(
        "# our readers\nsubscribers:\n  - email: ada@example.org\n    name: Ada\n",
        encoding="utf-8",
    )
    mailbox = Mailbox()
    lookup = {s.email: s for s in SUBS}
    app = WebApp(
        store=store,
        secret=SECRET,
        topics=EXAMPLE_TOPICS,
        title="Daily Papers",
        lookup=lookup.get,
        today=lambda: TODAY,
        signup=SignupOptions(
            list_path=str(list_path), send_confirmation=mailbox, base_url="http://x.invalid/"
        ),
    )
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield Server(base, store, mailbox, list_path, client)


def unsub_path(address: str) -> str:
    return f"/unsubscribe?token={make_token(SECRET, address, UNSUBSCRIBE)}"


def prefs_path(address: str) -> str:
    return f"/preferences?token={make_token(SECRET, address, PREFERENCES)}"


def sent_message(address: str) -> bytes:
    """A digest as the delivery layer sends it: List-Unsubscribe + the body link."""
    links = subscriber_links(
        "http://127.0.0.1:1/", SECRET, address, list_id="L", date=dt.date(2026, 1, 5)
    )
    msg = EmailMessage()
    msg["To"] = address
    msg["List-Unsubscribe"] = f"<{links['unsubscribe_url']}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(f"Today's papers.\nUnsubscribe: {links['unsubscribe_url']}\n")
    return msg.as_bytes()


def test_one_click_post_from_a_sent_message_suppresses_for_the_next_send(server: Server) -> None:
    parsed = email.message_from_bytes(sent_message("ada@example.org"), policy=email.policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = httpx.URL(str(parsed["List-Unsubscribe"]).strip("<>"))
    # What Gmail does: POST the form body to the URL, no cookies, no confirmation.
    response = server.client.post(f"{url.path}?{url.query.decode()}", data=ONE_CLICK)
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert "set-cookie" not in response.headers
    assert server.store.is_suppressed("ada@example.org")
    assert [s.email for s in server.store.apply(SUBS)] == ["bob@example.org"]
    (event,) = server.store.events("ada@example.org")
    assert event[1:3] == ("suppress", "unsubscribe via one-click")


def test_one_click_as_multipart_form_data(server: Server) -> None:
    response = server.client.post(
        unsub_path("bob@example.org"), files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert response.status_code == 200
    assert server.store.is_suppressed("bob@example.org")
    assert server.store.events("bob@example.org")[0][2] == "unsubscribe via one-click"


def test_get_shows_a_confirmation_form_and_changes_nothing(server: Server) -> None:
    response = server.client.get(unsub_path("ada@example.org"))
    assert response.status_code == 200
    page = response.text
    assert re.search(r'<form method="post" action="\?token=[^"]+">', page)
    assert '<button type="submit" id="unsubscribe">Unsubscribe</button>' in page
    assert '<html lang="en">' in page and "<title>" in page
    assert not server.store.is_suppressed("ada@example.org")
    headers = response.headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "form-action 'self'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["x-frame-options"] == "DENY"
    # The button's form posts back to the same URL and unsubscribes.
    action = re.search(r'action="([^"]+)"', page)
    assert action is not None
    target = httpx.URL(server.url + "/unsubscribe").join(action.group(1).replace("&amp;", "&"))
    assert server.client.post(str(target), data=ONE_CLICK).status_code == 200
    assert server.store.is_suppressed("ada@example.org")


def test_forged_tokens_get_the_same_answer_for_known_and_unknown_addresses(
    server: Server,
) -> None:
    def forged(address: str) -> list[str]:
        good = make_token(SECRET, address, UNSUBSCRIBE)
        body, sig = good.split(".")
        return [
            make_token(b"not-our-secret", address, UNSUBSCRIBE),
            make_token(SECRET, address, PREFERENCES),  # right key, wrong purpose
            f"{body}.{sig[:-3]}AAA",
            f"{body[:-2]}xx.{sig}",
            body,
        ]

    answers = set()
    for address in ("ada@example.org", "nobody@example.net"):
        for token in forged(address):
            for method in ("GET", "POST"):
                response = server.client.request(
                    method, "/unsubscribe", params={"token": token}, data=ONE_CLICK
                )
                answers.add((response.status_code, response.text))
    for path in ("/unsubscribe", "/unsubscribe?token=", "/preferences?token=abc.def"):
        response = server.client.get(path)
        answers.add((response.status_code, response.text))
    assert len(answers) == 1
    ((status, text),) = answers
    assert status == 400 and "This link is not valid" in text
    assert server.store.suppressed_count() == 0


def test_replayed_tokens_are_idempotent(server: Server) -> None:
    path = unsub_path("ada@example.org")
    first = server.client.post(path, data=ONE_CLICK)
    second = server.client.post(path, data=ONE_CLICK)
    assert first.status_code == second.status_code == 200
    assert first.text == second.text
    assert server.store.suppressed_count() == 1
    assert len(server.store.events("ada@example.org")) == 1
    assert "You are unsubscribed" in server.client.get(path).text


def test_preferences_change_what_the_next_send_gets(server: Server) -> None:
    page = server.client.get(prefs_path("ada@example.org")).text
    assert 'value="Multimodal LLMs" checked' in page  # from the admin's list
    assert 'value="Agents &amp; tool use">' in page
    assert 'value="tldr" checked' in page
    response = server.client.post(
        prefs_path("ada@example.org"),
        data={"topic": ["Agents & tool use", "LLM reasoning & RL"], "summary": "titles"},
    )
    assert response.status_code == 200 and "Saved." in response.text
    assert 'value="Agents &amp; tool use" checked' in response.text
    (ada, bob) = server.store.apply(SUBS)
    assert ada.topics == ("LLM reasoning & RL", "Agents & tool use")  # taxonomy order
    assert ada.summary == "titles"
    assert bob == SUBS[1]
    # Pause, then a replay of the same form: still paused, nothing else changes.
    for _ in range(2):
        server.client.post(prefs_path("ada@example.org"), data={"summary": "tldr", "paused": "1"})
    assert [s.email for s in server.store.apply(SUBS)] == ["bob@example.org"]
    server.client.post(prefs_path("ada@example.org"), data={"summary": "abstract"})
    (ada, _bob) = server.store.apply(SUBS)
    assert (ada.topics, ada.summary) == ((), "abstract")


def test_preferences_refuse_unknown_choices(server: Server) -> None:
    response = server.client.post(
        prefs_path("ada@example.org"), data={"topic": ["<script>"], "summary": "tldr"}
    )
    assert response.status_code == 400
    assert "<script>" not in response.text
    response = server.client.post(prefs_path("ada@example.org"), data={"summary": "everything"})
    assert response.status_code == 400
    assert server.store.preferences("ada@example.org") is None


def test_pages_escape_what_they_show(server: Server) -> None:
    evil = '"><script>alert(1)</script>@example.org'
    response = server.client.get(unsub_path(evil))
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


def test_other_methods_paths_and_sizes(server: Server) -> None:
    assert server.client.get("/nothing-here").status_code == 404
    response = server.client.put(unsub_path("ada@example.org"))
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"
    response = server.client.post(unsub_path("ada@example.org"), content=b"x" * 70_000)
    assert response.status_code == 413
    assert not server.store.is_suppressed("ada@example.org")
    head = server.client.head(unsub_path("ada@example.org"))
    assert head.status_code == 200 and head.content == b""
    assert server.client.get("/").status_code == 200


def test_logs_never_hold_tokens(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    token = make_token(SECRET, "ada@example.org", UNSUBSCRIBE)
    with caplog.at_level(logging.INFO, logger="newsletter.web"):
        server.client.post(f"/unsubscribe?token={token}", data=ONE_CLICK)
        server.client.get("/unsubscribe?token=forged.token")
    assert any("POST /unsubscribe 200" in r.getMessage() for r in caplog.records)
    assert all(token not in r.getMessage() for r in caplog.records)
    assert all("forged" not in r.getMessage() for r in caplog.records)


def test_signup_double_opt_in_appends_to_the_list(server: Server) -> None:
    form = server.client.get("/subscribe")
    assert form.status_code == 200 and 'name="email"' in form.text
    response = server.client.post(
        "/subscribe",
        data={"email": "New.Reader@Example.org", "name": "New", "topic": ["Multimodal LLMs"]},
    )
    assert response.status_code == 200 and "Check your inbox" in response.text
    ((address, url),) = server.mailbox.sent
    assert address == "New.Reader@example.org"
    assert url.startswith("http://x.invalid/confirm?token=")
    assert "New.Reader" not in server.list_path.read_text(encoding="utf-8")  # not before the click
    confirm = "/confirm?" + url.split("?", 1)[1]
    page = server.client.get(confirm)
    assert page.status_code == 200 and 'id="confirm"' in page.text
    assert "New.Reader" not in server.list_path.read_text(encoding="utf-8")  # GET changes nothing
    done = server.client.post(confirm)
    assert done.status_code == 200 and "You are subscribed" in done.text
    replay = server.client.post(confirm)  # a link works once
    assert replay.status_code == 400 and "used already" in replay.text
    text = server.list_path.read_text(encoding="utf-8")
    assert text.startswith("# our readers\n")
    assert text.count("New.Reader@example.org") == 1
    (_ada, new) = load_subscribers(server.list_path, known_topics=EXAMPLE_TOPICS)
    assert (new.email, new.name, new.topics, new.added) == (
        "New.Reader@example.org",
        "New",
        ("Multimodal LLMs",),
        TODAY,
    )
    assert server.store.pending_signup("new.reader@example.org") is None


def test_signup_refuses_bad_addresses_and_stale_links(server: Server) -> None:
    response = server.client.post("/subscribe", data={"email": "not an address"})
    assert response.status_code == 400 and "does not look like" in response.text
    assert server.mailbox.sent == []
    old = make_token(SECRET, "late@example.org", CONFIRM, issued=TODAY - dt.timedelta(days=8))
    assert server.client.post("/confirm", params={"token": old}).status_code == 400
    unsub = make_token(SECRET, "late@example.org", UNSUBSCRIBE)
    assert server.client.post("/confirm", params={"token": unsub}).status_code == 400


def test_signup_is_off_unless_allowed(tmp_path: Path) -> None:
    app = WebApp(store=PrefsStore(f"sqlite:///{tmp_path}/s.db"), secret=SECRET)
    statuses: list[str] = []
    body = app(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/subscribe", "QUERY_STRING": ""},
        lambda status, headers: statuses.append(status),
    )
    assert statuses == ["404 Not Found"] and b"No such page" in b"".join(body)
