"""newsletter.state: URLs, migrations (an old database upgraded in place), claims, days."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from newsletter.errors import LedgerError
from newsletter.models import Day, Paper, SendResult, SendStatus
from newsletter.state import (
    LATEST_VERSION,
    MIGRATIONS,
    State,
    StateURL,
    lock_path_for,
    parse_state_url,
    variant_key,
)

DAY = dt.date(2026, 11, 25)
T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


class Clock:
    """A settable clock for leases."""

    def __init__(self, at: dt.datetime = T0) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "engine", "target"),
    [
        ("sqlite:///newsletter.db", "sqlite", "newsletter.db"),
        ("sqlite:////var/lib/x.db", "sqlite", "/var/lib/x.db"),
        ("plain.db", "sqlite", "plain.db"),
        ("/abs/plain.db", "sqlite", "/abs/plain.db"),
        (":memory:", "sqlite", ":memory:"),
        ("sqlite:///:memory:", "sqlite", ":memory:"),
        ("postgresql://u:pw@db.example/news", "postgresql", "postgresql://u:pw@db.example/news"),
        ("postgres://db.example/news", "postgresql", "postgres://db.example/news"),
    ],
)
def test_state_urls(url: str, engine: str, target: str) -> None:
    assert parse_state_url(url) == StateURL(engine, target)  # type: ignore[arg-type]


def test_relative_sqlite_paths_follow_the_base_folder(tmp_path: Path) -> None:
    assert parse_state_url("sqlite:///s.db", base=tmp_path).target == str(tmp_path / "s.db")
    assert parse_state_url("data/s.db", base=tmp_path).target == str(tmp_path / "data/s.db")
    assert parse_state_url("sqlite:////abs/s.db", base=tmp_path).target == "/abs/s.db"
    assert lock_path_for("sqlite:///s.db", base=tmp_path) == tmp_path / "s.db.lock"


@pytest.mark.parametrize(
    "url", ["mysql://x/y", "sqlite:///", "sqlite:///a.db?mode=ro", "", "postgresql://"]
)
def test_bad_state_urls_are_refused(url: str) -> None:
    with pytest.raises(LedgerError, match="state"):
        parse_state_url(url)


def test_a_postgres_password_never_shows() -> None:
    parsed = parse_state_url("postgresql://news:s3cret@db.example:5433/news")
    assert "s3cret" not in parsed.display()
    assert parsed.display() == "postgresql://news:***@db.example:5433/news"
    with pytest.raises(LedgerError) as info:
        parse_state_url("mysql://news:s3cret@db.example/news")
    assert "s3cret" not in str(info.value)


# --------------------------------------------------------------------------- migrations

OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    day TEXT NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    permanent INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    provider_id TEXT,
    message_id TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (day, email)
);
CREATE TABLE IF NOT EXISTS sent_papers (
    day TEXT NOT NULL,
    paper_key TEXT NOT NULL,
    PRIMARY KEY (day, paper_key)
);
CREATE TABLE IF NOT EXISTS suppress_list (
    email_key TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prefs_overlay (
    email_key TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    topics TEXT,
    summary TEXT,
    paused INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prefs_signups (
    email_key TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    topics TEXT NOT NULL,
    requested_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prefs_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
INSERT INTO deliveries VALUES ('2026-11-24', 'a@x.org', 'sent', 0, 1, '250 ok', '<1@d>', NULL,
    '2026-11-24T08:00:00+00:00', '2026-11-24T08:00:01+00:00');
INSERT INTO deliveries VALUES ('2026-11-24', 'b@x.org', 'failed', 1, 1, NULL, '<2@d>',
    'RCPT TO: 550 no such user', '2026-11-24T08:00:00+00:00', '2026-11-24T08:00:01+00:00');
INSERT INTO deliveries VALUES ('2026-11-24', 'c@x.org', 'pending', 0, 1, NULL, '<3@d>', NULL,
    '2026-11-24T08:00:00+00:00', '2026-11-24T08:00:00+00:00');
INSERT INTO sent_papers VALUES ('2026-11-24', '2511.00001');
INSERT INTO suppress_list VALUES ('gone@x.org', 'Gone@x.org', 'unsubscribe', 'web',
    '2026-11-20T10:00:00+00:00');
INSERT INTO prefs_overlay VALUES ('p@x.org', 'p@x.org', '["Robotics"]', 'titles', 1,
    '2026-11-21T10:00:00+00:00');
INSERT INTO prefs_events (email_key, kind, detail, at) VALUES ('gone@x.org', 'suppress',
    'unsubscribe via web', '2026-11-20T10:00:00+00:00');
"""
"""The schema ledger.py and prefs.py created before the state database had versions,
with a few rows: a literal copy, so it stays what old databases really hold."""


def old_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(OLD_SCHEMA)
    conn.commit()
    conn.close()
    return path


def test_an_old_database_is_upgraded_in_place_with_its_rows(tmp_path: Path) -> None:
    db = old_database(tmp_path / "old.db")
    clock = Clock(dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC))
    with State(f"sqlite:///{db}", now=clock) as state:
        assert state.schema_version() == LATEST_VERSION
        rows = state.deliveries(dt.date(2026, 11, 24))
        assert {e: (r.status, r.permanent) for e, r in rows.items()} == {
            "a@x.org": ("sent", False),
            "b@x.org": ("failed", True),
            "c@x.org": ("pending", False),
        }
        assert rows["a@x.org"].provider_id == "250 ok" and rows["c@x.org"].claim_owner is None
        assert state.recent_paper_keys(dt.date(2026, 11, 25), 3) == {"2511.00001"}
        assert state.is_suppressed("GONE@x.org")
        overlay = state.preferences("p@x.org")
        assert overlay is not None and overlay.paused and overlay.topics == ("Robotics",)
        assert [kind for _k, kind, _d, _a in state.events()] == ["suppress"]
        # the old pending row (a crash of the old code) is claimable at once; the
        # sent and the permanently failed ones are not
        claim = state.claim(dt.date(2026, 11, 24), ["a@x.org", "b@x.org", "c@x.org"], owner="new")
        assert claim.claimed == ("c@x.org",) and claim.done == ("a@x.org", "b@x.org")
        state.set_preferences("new@x.org", paused=True)  # the old tables take new rows
        assert [kind for _k, kind, _d, _a in state.events()] == ["suppress", "preferences"]
    versions = sqlite3.connect(db).execute("SELECT version FROM schema_migrations").fetchall()
    assert [v for (v,) in versions] == [m.version for m in MIGRATIONS]


def test_migrations_are_numbered_in_order_and_applied_once(tmp_path: Path) -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    url = f"sqlite:///{tmp_path / 's.db'}"
    with State(url) as state:
        assert state.migrate() == []  # nothing left to do
    with State(url) as state:
        assert state.schema_version() == LATEST_VERSION


def test_a_database_from_a_newer_program_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    State(url).close()
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="newer than this program"):
        State(url)


def test_open_existing_creates_nothing(tmp_path: Path) -> None:
    assert State.open_existing(f"sqlite:///{tmp_path / 'none' / 's.db'}") is None
    assert list(tmp_path.iterdir()) == []
    State(f"sqlite:///{tmp_path / 's.db'}").close()
    found = State.open_existing(f"sqlite:///{tmp_path / 's.db'}")
    assert found is not None
    found.close()


# --------------------------------------------------------------------------- claims


def test_a_claim_is_exclusive_until_its_lease_runs_out(state_url: str) -> None:
    clock = Clock()
    url = state_url
    emails = [f"u{i}@x.org" for i in range(5)]
    with State(url, now=clock) as a, State(url, now=clock) as b:
        first = a.claim(DAY, emails[:3], owner="A", lease=60)
        assert first.claimed == tuple(emails[:3])
        second = b.claim(DAY, emails, owner="B", lease=60)
        assert second.claimed == tuple(emails[3:]) and second.busy == tuple(emails[:3])
        a.mark_attempt(DAY, {emails[0]: ("<0@d>", "v1")}, owner="A", lease=60)
        a.record(DAY, [SendResult(emails[0], SendStatus.SENT)])
        a.release(DAY, [emails[1]], owner="A")  # never handed over: free at once
        clock.advance(59)
        third = b.claim(DAY, emails[:3], owner="B", lease=60)
        assert third.claimed == (emails[1],) and third.done == (emails[0],)
        assert third.busy == (emails[2],)  # A's lease has a second left
        clock.advance(2)
        assert b.claim(DAY, [emails[2]], owner="B").claimed == (emails[2],)
        rows = a.deliveries(DAY)
        assert rows[emails[0]].variant == "v1" and rows[emails[0]].claim_owner is None
        assert rows[emails[2]].claim_owner == "B"


def test_a_live_sender_renews_its_lease(state_url: str) -> None:
    clock = Clock()
    with State(state_url, now=clock) as state:
        state.claim(DAY, ["a@x.org"], owner="A", lease=10)
        for _ in range(5):
            clock.advance(8)
            assert state.renew("A", lease=10) == 1
            assert state.claim(DAY, ["a@x.org"], owner="B", lease=10).busy == ("a@x.org",)


def test_unsubscribed_and_paused_readers_are_skipped_at_claim_time(state_url: str) -> None:
    with State(state_url) as state:
        state.suppress("Gone@X.org")
        state.suppress("bounced@x.org", reason="bounce", source="dsn")
        state.set_preferences("away@x.org", paused=True)
        claim = state.claim(
            DAY, ["ok@x.org", "gone@x.org", "bounced@x.org", "away@x.org"], owner="A"
        )
        assert claim.claimed == ("ok@x.org",)
        assert dict(claim.skipped) == {
            "gone@x.org": "unsubscribed",
            "bounced@x.org": "suppressed",
            "away@x.org": "paused",
        }


def test_permanent_failures_are_claimed_again_only_when_asked(state_url: str) -> None:
    with State(state_url) as state:
        state.claim(DAY, ["p@x.org", "t@x.org"], owner="A")
        state.record(
            DAY,
            [
                SendResult("p@x.org", SendStatus.REJECTED),
                SendResult("t@x.org", SendStatus.FAILED, transient=True),
            ],
        )
        again = state.claim(DAY, ["p@x.org", "t@x.org"], owner="B")
        assert again.claimed == ("t@x.org",) and again.done == ("p@x.org",)
        retry = state.claim(DAY, ["p@x.org"], owner="C", retry_failed=True)
        assert retry.claimed == ("p@x.org",)


def test_attempts_and_outcomes_of_a_batch_larger_than_one_statement(state_url: str) -> None:
    """1,200 rows (PostgreSQL: three ``UPDATE … FROM (VALUES …)`` statements) end as
    each result says; a row another owner claimed is left alone by mark_attempt."""
    emails = [f"u{i:04}@x.org" for i in range(1200)]
    with State(state_url) as state:
        assert state.claim(DAY, emails[:-1], owner="A").claimed == tuple(emails[:-1])
        assert state.claim(DAY, emails[-1:], owner="B").claimed == (emails[-1],)
        state.mark_attempt(
            DAY,
            {e: (f"<{i}@papers.example>", "v1" if i % 2 else None) for i, e in enumerate(emails)},
            owner="A",
        )
        kinds = [
            SendResult("", SendStatus.SENT),
            SendResult("", SendStatus.QUEUED, message_id="provider-1"),
            SendResult("", SendStatus.FAILED, error="451 later", transient=True),
            SendResult("", SendStatus.REJECTED, error="550 no such user"),
            SendResult("", SendStatus.SKIPPED, error="run stopped"),
        ]
        state.record(
            DAY, [dataclasses.replace(kinds[i % 5], email=e) for i, e in enumerate(emails[:-1])]
        )
        rows = state.deliveries(DAY)
    statuses = Counter((r.status, r.permanent) for r in rows.values())
    assert statuses == {
        ("sent", False): 480,
        ("failed", False): 240,
        ("failed", True): 240,
        ("pending", False): 239 + 1,
    }
    assert rows[emails[1]].provider_id == "provider-1" and rows[emails[1]].variant == "v1"
    assert rows[emails[0]].message_id == "<0@papers.example>" and rows[emails[0]].variant is None
    assert rows[emails[3]].last_error == "550 no such user"
    mine = [r for e, r in rows.items() if e != emails[-1]]
    assert len(mine) == 1199 and all(r.attempts == 1 and r.claim_owner is None for r in mine)
    untouched = rows[emails[-1]]  # B's claim: A's mark_attempt did not apply
    assert (untouched.attempts, untouched.message_id, untouched.claim_owner) == (0, None, "B")


def test_outcomes_recorded_from_many_threads_at_once(state_url: str) -> None:
    """Concurrent record() calls share writes (a group commit); each returns with its own
    rows stored."""
    emails = [f"t{i:03}@x.org" for i in range(400)]
    with State(state_url) as state:
        state.claim(DAY, emails, owner="A")
        seen_sent: list[bool] = []

        def record_share(share: list[str]) -> None:
            for email in share:
                state.record(DAY, [SendResult(email, SendStatus.SENT)])
                seen_sent.append(state.deliveries(DAY)[email].status == "sent")

        threads = [threading.Thread(target=record_share, args=(emails[k::8],)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert state.counts(DAY) == {"sent": 400}
    assert len(seen_sent) == 400 and all(seen_sent)


def test_a_failed_group_write_fails_every_call_it_held() -> None:
    from newsletter.state import _GroupCommit

    started, go = threading.Event(), threading.Event()
    written: list[list[tuple[object, ...]]] = []

    def write(rows: list[tuple[object, ...]]) -> None:
        written.append(rows)
        if len(written) == 1:
            started.set()
            go.wait(10)
            return
        raise LedgerError("state database: disk I/O error")

    group = _GroupCommit(write)
    errors: list[str] = []

    def call(row: tuple[object, ...]) -> None:
        try:
            group([row])
        except LedgerError as exc:
            errors.append(f"{row[0]}: {exc}")

    first = threading.Thread(target=call, args=(("first",),))
    first.start()
    started.wait(10)
    later = [threading.Thread(target=call, args=((f"later{i}",),)) for i in range(3)]
    for thread in later:
        thread.start()
    while group._calls < 4:  # all three queued behind the first write
        time.sleep(0.01)
    go.set()
    for thread in [first, *later]:
        thread.join(10)
    assert written[0] == [("first",)]
    assert sorted(written[1]) == [("later0",), ("later1",), ("later2",)]  # one write for all
    assert sorted(errors) == [f"later{i}: state database: disk I/O error" for i in range(3)]


def _claim_all(url: str, owner: str, emails: list[str], out: multiprocessing.Queue[object]) -> None:
    got: list[str] = []
    with State(url) as state:
        for start in range(0, len(emails), 7):
            got.extend(state.claim(DAY, emails[start : start + 7], owner=owner).claimed)
    out.put(got)


def test_processes_claiming_at_once_split_the_list_without_overlap(state_url: str) -> None:
    url = state_url
    State(url).close()
    emails = [f"u{i:03}@x.org" for i in range(300)]
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[object] = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(url, f"P{n}", emails, out)) for n in range(4)]
    for proc in procs:
        proc.start()
    shares = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    claimed = Counter(email for share in shares for email in share)  # type: ignore[attr-defined]
    assert set(claimed) == set(emails) and set(claimed.values()) == {1}


def _open_new(paths: list[str], start: float, out: multiprocessing.Queue[object]) -> None:
    errors: list[str] = []
    for i, path in enumerate(paths):
        time.sleep(max(0.0, start + i * 0.25 - time.time()))  # all processes at once
        try:
            State(f"sqlite:///{path}").close()
        except LedgerError as exc:
            errors.append(str(exc))
    out.put(errors)


def test_processes_opening_a_new_sqlite_state_at_once_all_open_it(tmp_path: Path) -> None:
    """Two sends started together on a state file that does not exist yet: each process
    makes it WAL, and SQLite tells the second at once that the database is locked (no
    busy wait on that lock). Every process must open it, on each of ten new files."""
    paths = [str(tmp_path / f"state{i}.db") for i in range(10)]
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[object] = ctx.Queue()
    start = time.time() + 2.0  # after every process has started
    procs = [ctx.Process(target=_open_new, args=(paths, start, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    errors = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert errors == [[], [], [], []]
    for path in paths:
        with State(f"sqlite:///{path}") as state:
            assert state.migrate() == []  # made once, complete


# --------------------------------------------------------------------------- papers and days


def test_variants_store_their_papers_once_and_readers_can_be_asked(state_url: str) -> None:
    with State(state_url) as state:
        keys = ["2511.00001", "2511.00002"]
        key = variant_key(keys)
        state.save_variant(DAY, key, keys)
        state.save_variant(DAY, key, keys)  # a second sender: nothing changes
        assert state.variant_papers(DAY, key) == keys
        state.claim(DAY, ["r@x.org", "s@x.org"], owner="A")
        state.mark_attempt(DAY, {"r@x.org": ("<1@d>", key), "s@x.org": ("<2@d>", key)}, owner="A")
        state.record(
            DAY, [SendResult("r@x.org", SendStatus.SENT), SendResult("s@x.org", SendStatus.FAILED)]
        )
        assert state.papers_received("r@x.org") == set(keys)
        assert state.papers_received("s@x.org") == set()
        assert state.papers_received("r@x.org", since=DAY + dt.timedelta(days=1)) == set()


def test_prepared_days_round_trip(state_url: str) -> None:
    paper = Paper(
        title="A paper",
        abstract="Abstract.",
        id="2511.00001",
        authors=("Ada", "Bob"),
        published_at=dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC),
        keywords=("robots",),
        upvotes=3,
        source="hf",
    )
    with State(state_url) as state:
        state.save_day(Day(DAY, (paper,), "hf"), prepared_at=T0)
        state.save_day(Day(DAY + dt.timedelta(days=1), (), "hf"), prepared_at=T0)
        stored = state.load_day(DAY)
        assert stored is not None and stored.day == Day(DAY, (paper,), "hf")
        assert stored.edition == "daily" and stored.prepared_at == "2026-11-25T08:00:00+00:00"
        assert state.load_day(DAY, edition="weekly") is None
        span = state.load_days(DAY - dt.timedelta(days=7), DAY + dt.timedelta(days=1))
        assert [s.day.date for s in span] == [DAY, DAY + dt.timedelta(days=1)]


def test_runs_and_meta(state_url: str) -> None:
    clock = Clock()
    with State(state_url, now=clock) as state:
        run = state.start_run(DAY, command="send", owner="A")
        clock.advance(5)
        state.finish_run(run, {"sent": 3, "failed": 1}, outcome="transient")
        last = state.last_run()
        assert last is not None and last.id == run and last.counts == {"sent": 3, "failed": 1}
        assert last.outcome == "transient" and last.finished_at is not None
        assert state.set_meta("first", "1", replace=False) == "1"
        assert state.set_meta("first", "2", replace=False) == "1"
        assert state.set_meta("first", "3") == "3" and state.meta("first") == "3"
        assert state.meta("none") is None
