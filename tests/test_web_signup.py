"""Sign-up abuse limits, over HTTP against the served app and a real state database.

One confirmation per address per interval, per-client limits, a bound on pending
sign-ups, confirmation links bound to their pending sign-up and used once, entries and
unsubscribes that a confirmation never overrides.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from newsletter.prefs import PrefsStore
from newsletter.subscribers import load_subscribers
from newsletter.tokens import CONFIRM, make_confirmation, make_token
from newsletter.web import SignupOptions, WebApp
from tests.doubles import EXAMPLE_TOPICS, serving

SECRET = b"signup-test-secret-0123456789abcdef"
TODAY = dt.date(2026, 4, 1)
START = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)


@dataclass
class Clock:
    now: dt.datetime = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class Mailbox:
    sent: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, address: str, url: str) -> None:
        self.sent.append((address, url))

    def confirm_path(self, index: int = -1) -> str:
        return "/confirm?" + self.sent[index][1].split("?", 1)[1]


@dataclass
class Site:
    client: httpx.Client
    store: PrefsStore
    mailbox: Mailbox
    clock: Clock
    list_path: Path

    def sign_up(self, email: str, **form: str | list[str]) -> httpx.Response:
        return self.client.post("/subscribe", data={"email": email, **form})

    def entries(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        subs = load_subscribers(self.list_path, known_topics=EXAMPLE_TOPICS)
        return {s.email: (s.name, s.topics) for s in subs}


def _site(tmp_path: Path, *, trusted_proxy: str | None = None, **limits: int) -> Iterator[Site]:
    clock = Clock()
    store = PrefsStore(f"sqlite:///{tmp_path}/state.db", now=clock)
    list_path = tmp_path / "subscribers.yaml"
    list_path.write_text(
        "subscribers:\n  - email: ada@example.org\n    name: Ada\n    topics: [Multimodal LLMs]\n",
        encoding="utf-8",
    )
    mailbox = Mailbox()
    options = SignupOptions(
        list_path=str(list_path),
        send_confirmation=mailbox,
        base_url="https://news.example.org",
        per_client_hour=limits.get("per_client_hour", 1000),
        max_pending=limits.get("max_pending", 1000),
    )
    app = WebApp(
        store=store, secret=SECRET, topics=EXAMPLE_TOPICS, today=lambda: TODAY, signup=options
    )
    with (
        serving(app, trusted_proxy=trusted_proxy) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        yield Site(client, store, mailbox, clock, list_path)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from _site(tmp_path)


def test_200_posts_for_one_address_send_one_confirmation(site: Site) -> None:
    statuses = {site.sign_up("victim@example.org").status_code for _ in range(200)}
    assert statuses == {200}  # every post sees the same page: it tells nothing
    assert [address for address, _url in site.mailbox.sent] == ["victim@example.org"]
    site.clock.advance(minutes=59)
    site.sign_up("victim@example.org")
    assert len(site.mailbox.sent) == 1
    site.clock.advance(minutes=2)  # the interval (an hour) has passed: one more
    site.sign_up("victim@example.org")
    assert len(site.mailbox.sent) == 2


def test_a_repost_with_other_data_changes_nothing(site: Site) -> None:
    site.sign_up("vic@example.org", name="Vic", topic=["Multimodal LLMs"])
    pending = site.store.pending_signup("vic@example.org")
    site.sign_up("VIC@example.org", name="Mallory", topic=["Agents & tool use"])
    assert site.store.pending_signup("vic@example.org") == pending
    assert len(site.mailbox.sent) == 1
    assert site.client.post(site.mailbox.confirm_path()).status_code == 200
    assert site.entries()["vic@example.org"] == ("Vic", ("Multimodal LLMs",))


def test_a_confirmation_never_overwrites_an_existing_subscriber(site: Site) -> None:
    before = site.list_path.read_text(encoding="utf-8")
    site.sign_up("ada@example.org", name="Mallory", topic=["Agents & tool use"])
    done = site.client.post(site.mailbox.confirm_path())
    assert done.status_code == 200
    assert site.list_path.read_text(encoding="utf-8") == before
    assert site.entries()["ada@example.org"] == ("Ada", ("Multimodal LLMs",))


def test_a_replayed_confirmation_changes_nothing(site: Site) -> None:
    site.sign_up("new@example.org", name="New")
    confirm = site.mailbox.confirm_path()
    assert site.client.post(confirm).status_code == 200
    site.store.suppress("new@example.org", source="one-click")  # the reader leaves
    list_before = site.list_path.read_text(encoding="utf-8")
    events_before = site.store.events("new@example.org")
    site.clock.advance(days=1)
    replay = site.client.post(confirm)
    assert replay.status_code == 400 and "used already" in replay.text
    assert site.store.is_suppressed("new@example.org")
    assert site.list_path.read_text(encoding="utf-8") == list_before
    assert site.store.events("new@example.org") == events_before


def test_an_old_link_does_not_lift_a_later_unsubscribe(site: Site) -> None:
    site.sign_up("ada@example.org")  # someone asks in Ada's name
    site.clock.advance(minutes=5)
    site.store.suppress("ada@example.org", source="one-click")  # then Ada unsubscribes
    site.clock.advance(minutes=5)
    assert site.client.post(site.mailbox.confirm_path()).status_code == 200
    assert site.store.is_suppressed("ada@example.org")


def test_signing_up_again_after_unsubscribing_lifts_it(site: Site) -> None:
    site.store.suppress("ada@example.org", source="one-click")
    site.clock.advance(days=2)
    site.sign_up("ada@example.org")  # the reader asks to come back, and confirms
    site.clock.advance(minutes=1)
    assert site.client.post(site.mailbox.confirm_path()).status_code == 200
    assert not site.store.is_suppressed("ada@example.org")


def test_a_newer_signup_replaces_the_older_link(site: Site) -> None:
    site.sign_up("new@example.org", name="First")
    site.clock.advance(hours=2)
    site.sign_up("new@example.org", name="Second")
    first, second = site.mailbox.confirm_path(0), site.mailbox.confirm_path(1)
    assert site.client.post(first).status_code == 400
    assert site.client.post(second).status_code == 200
    assert site.entries()["new@example.org"][0] == "Second"


def test_forged_or_unbound_confirmations_are_refused(site: Site) -> None:
    site.sign_up("new@example.org")
    old_style = make_token(SECRET, "new@example.org", CONFIRM, issued=TODAY)
    wrong_nonce = make_confirmation(SECRET, "new@example.org", "guessed", issued=TODAY)
    other_key = make_confirmation(b"x" * 32, "new@example.org", "guessed", issued=TODAY)
    for token in (old_style, other_key):
        assert site.client.post("/confirm", params={"token": token}).status_code == 400
    refused = site.client.post("/confirm", params={"token": wrong_nonce})
    assert refused.status_code == 400 and "Nothing was changed" in refused.text
    assert "new@example.org" not in site.entries()
    assert site.store.pending_signup("new@example.org") is not None


def test_one_client_may_post_only_so_many_signups(tmp_path: Path) -> None:
    sites = _site(tmp_path, per_client_hour=5)
    site = next(sites)
    try:
        answers = [site.sign_up(f"r{i}@example.org").status_code for i in range(8)]
        assert answers == [200] * 5 + [429] * 3
        assert len(site.mailbox.sent) == 5
        site.clock.advance(hours=1, seconds=1)
        assert site.sign_up("later@example.org").status_code == 200
    finally:
        sites.close()


def test_pending_signups_are_bounded(tmp_path: Path) -> None:
    sites = _site(tmp_path, max_pending=3)
    site = next(sites)
    try:
        answers = [site.sign_up(f"r{i}@example.org").status_code for i in range(5)]
        assert answers == [200, 200, 200, 503, 503]
        assert len(site.mailbox.sent) == 3
        assert site.client.post(site.mailbox.confirm_path(0)).status_code == 200
        assert site.sign_up("r9@example.org").status_code == 200  # a slot came free
        site.clock.advance(days=8)  # unconfirmed ones expire
        assert [site.sign_up(f"s{i}@example.org").status_code for i in range(3)] == [200] * 3
    finally:
        sites.close()


@pytest.mark.parametrize("trusted", [True, False])
def test_the_client_is_the_trusted_proxys_forwarded_for_and_nobody_elses(
    tmp_path: Path, trusted: bool
) -> None:
    sites = _site(tmp_path, trusted_proxy="127.0.0.1" if trusted else None, per_client_hour=2)
    site = next(sites)
    try:

        def post(i: int, client: str) -> int:
            headers = {"X-Forwarded-For": client}
            data = {"email": f"r{i}@example.org"}
            return site.client.post("/subscribe", data=data, headers=headers).status_code

        answers = [post(0, "203.0.113.5"), post(1, "203.0.113.5"), post(2, "203.0.113.5")]
        other = post(3, "198.51.100.7")
    finally:
        sites.close()
    assert answers == [200, 200, 429]
    # behind the trusted proxy each forwarded client has its own limit; without it the
    # header is ignored and every post comes from 127.0.0.1
    assert other == (200 if trusted else 429)
