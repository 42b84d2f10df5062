"""The suppression list and the preference overlay in the state database."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.errors import LedgerError
from newsletter.models import Subscriber
from newsletter.prefs import PrefsStore, SignupDecision, next_send_subscribers

NOW = dt.datetime(2026, 4, 1, 8, 30, tzinfo=dt.UTC)
SUBS = [
    Subscriber(email="ada@example.org", topics=("Multimodal LLMs",), summary="tldr"),
    Subscriber(email="Bob@Example.org"),
    Subscriber(email="cy@example.org", active=False),
    Subscriber(email="di@example.org", summary="abstract"),
]


@pytest.fixture
def store(tmp_path: Path) -> PrefsStore:
    return PrefsStore(f"sqlite:///{tmp_path}/state.db", now=lambda: NOW)


def test_apply_drops_suppressed_inactive_and_paused_and_overlays(store: PrefsStore) -> None:
    assert [s.email for s in store.apply(SUBS)] == [
        "ada@example.org",
        "Bob@Example.org",
        "di@example.org",
    ]
    assert store.suppress("bob@EXAMPLE.org") is True
    assert store.suppress("bob@example.org") is False  # a replay changes nothing
    store.set_preferences("ADA@example.org", topics=["Agents & tool use"], summary="titles")
    store.set_preferences("di@example.org", paused=True)
    result = store.apply(SUBS)
    assert [s.email for s in result] == ["ada@example.org"]
    assert result[0].topics == ("Agents & tool use",)
    assert result[0].summary == "titles"
    assert store.suppressed_count() == 1
    assert store.is_suppressed("BOB@example.org")
    (sup,) = store.suppressions()
    assert (sup.email, sup.reason, sup.source, sup.created_at) == (
        "bob@EXAMPLE.org",
        "unsubscribe",
        "web",
        "2026-04-01T08:30:00+00:00",
    )


def test_preferences_replace_and_unpause(store: PrefsStore) -> None:
    store.set_preferences("di@example.org", paused=True)
    store.set_preferences("di@example.org", topics=[], summary=None, paused=False)
    overlay = store.preferences("di@example.org")
    assert overlay is not None
    assert (overlay.topics, overlay.summary, overlay.paused) == ((), None, False)
    (di,) = [s for s in store.apply(SUBS) if s.email == "di@example.org"]
    assert di.topics == () and di.summary == "abstract"
    with pytest.raises(ValueError):
        store.set_preferences("di@example.org", summary="everything")  # type: ignore[arg-type]


def test_unsuppress_and_the_event_trail(store: PrefsStore) -> None:
    store.suppress("ada@example.org", source="one-click")
    assert store.unsuppress("ada@example.org")
    assert not store.unsuppress("ada@example.org")
    kinds = [(k, d) for _key, k, d, _at in store.events("ada@example.org")]
    assert kinds == [("suppress", "unsubscribe via one-click"), ("unsuppress", "via admin")]


def test_signups(tmp_path: Path) -> None:
    now = [dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)]
    store = PrefsStore(f"sqlite:///{tmp_path}/state.db", now=lambda: now[0])
    limits = {
        "client": "192.0.2.1",
        "interval": dt.timedelta(hours=1),
        "per_client_hour": 10,
        "max_pending": 10,
        "max_age": dt.timedelta(days=7),
    }
    store.suppress("new@example.org")
    now[0] += dt.timedelta(minutes=1)
    decision = store.request_signup(
        "new@example.org", name="New", topics=["Multimodal LLMs"], **limits
    )
    assert decision.outcome == "send" and decision.nonce
    again = store.request_signup("new@example.org", name="Other", topics=[], **limits)
    assert again == SignupDecision("recent")
    signup = store.pending_signup("NEW@example.org")
    assert signup is not None and signup.topics == ("Multimodal LLMs",) and signup.name == "New"
    assert store.claim_signup("new@example.org", "not-the-nonce") is None
    claimed = store.claim_signup("new@example.org", decision.nonce)
    assert claimed == signup
    assert store.claim_signup("new@example.org", decision.nonce) is None  # once
    assert store.pending_signup("new@example.org") is None
    assert not store.is_suppressed("new@example.org")  # unsubscribed before asking again
    store.unclaim_signup(claimed)
    assert store.pending_signup("new@example.org") == signup


def test_state_survives_a_new_store_and_shares_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    PrefsStore(url).suppress("a@example.org")
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("CREATE TABLE ledger_sends (id INTEGER PRIMARY KEY)")  # another module's table
    conn.commit()
    conn.close()
    assert PrefsStore(url).suppressed_count() == 1


def test_parallel_writers_lose_nothing(store: PrefsStore) -> None:
    def work(n: int) -> None:
        for i in range(20):
            store.suppress(f"t{n}.{i}@example.org")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.suppressed_count() == 80


def test_unusable_database(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(LedgerError):
        PrefsStore(f"sqlite:///{tmp_path}/dir.db")


def test_next_send_subscribers_reads_list_and_state(tmp_path: Path) -> None:
    listfile = tmp_path / "subs.yaml"
    listfile.write_text(
        "subscribers:\n  - email: a@example.org\n  - email: b@example.org\n", encoding="utf-8"
    )
    settings = Settings(subscribers=str(listfile), state=f"sqlite:///{tmp_path}/state.db")
    PrefsStore(settings.state).suppress("B@example.org")
    assert [s.email for s in next_send_subscribers(settings)] == ["a@example.org"]
