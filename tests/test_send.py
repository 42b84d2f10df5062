"""send_day / deliver_variants: ledger, reruns, empty days, dry runs, the CLI."""

from __future__ import annotations

import datetime as dt
import threading
import tracemalloc
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings, load_settings
from newsletter.delivery.memory import MemoryBackend
from newsletter.errors import AuthError
from newsletter.ledger import Ledger
from newsletter.message import MessageTemplate, Recipient
from newsletter.models import (
    FULL_PROFILE,
    Day,
    Digest,
    Paper,
    Profile,
    RankedPaper,
    SendResult,
    SendStatus,
    Subscriber,
    TopicGroup,
)
from newsletter.pipeline import Planner, Variant
from newsletter.send import send_day, subscriber_values
from tests.doubles import sample_rendered, smtp_server

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
PAPERS = (
    Paper(title="A", abstract="a", id="2511.00001"),
    Paper(title="B", abstract="b", id="2511.00002"),
)


class RecordingPlanner(Planner):
    """A real Planner that notes every reader it is asked for."""

    def __init__(self, *args: Any, asked: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked = asked

    def variant_of(self, subscriber: Subscriber, sent: Collection[str] | None = None) -> int:
        self.asked.append(subscriber.email)
        return super().variant_of(subscriber, sent)


class FakePipeline:
    """Stands in for the day's source and newsletter.pipeline.day_planner: ``papers``,
    and two variants (readers of "robot" and the others) planned by a real Planner."""

    def __init__(self, papers: tuple[Paper, ...] = PAPERS) -> None:
        self.papers = papers
        self.calls: list[list[str]] = []
        self.excluded: list[set[str]] = []

    def fetch_day(self, source: str, date: dt.date, **_: Any) -> Day:
        return Day(date=date, papers=self.papers, source=source)

    def day_planner(
        self, day: Day, *, exclude: Collection[str] = (), **_: Any
    ) -> tuple[Variant, Planner]:
        self.calls.append([])
        self.excluded.append(set(exclude))
        digest = Digest(
            date=day.date,
            topics=(
                TopicGroup("Robotics", tuple(RankedPaper(p, 1.0, "Robotics") for p in self.papers)),
            ),
        )

        def make(profile: Profile, picked: Sequence[RankedPaper]) -> Variant:
            subject = "Robots today" if "robot" in profile.topics else "Papers today"
            return Variant(profile, digest, sample_rendered(subject), ())

        planner = RecordingPlanner(
            day.papers,
            topics={},
            now=NOW,
            make=make,
            pick=lambda ranked, profile: tuple(ranked),
            reuse=None,
            buckets_per_group=1,
            feedback={},
            asked=self.calls[-1],
        )
        return make(FULL_PROFILE, ()), planner


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    return fake_pipeline(monkeypatch, FakePipeline())


def fake_pipeline(monkeypatch: pytest.MonkeyPatch, fake: FakePipeline) -> FakePipeline:
    monkeypatch.setattr("newsletter.send.fetch_day", fake.fetch_day)
    monkeypatch.setattr("newsletter.send.day_planner", fake.day_planner)
    return fake


def listed(monkeypatch: pytest.MonkeyPatch, subscribers: list[Subscriber]) -> None:
    """The admin's list is ``subscribers`` (as if read from the file, unvalidated)."""
    monkeypatch.setattr("newsletter.send.listed_batches", lambda settings: iter([subscribers]))


def people(n: int) -> list[Subscriber]:
    return [
        Subscriber(email=f"u{i}@example.org", name=f"U{i}", topics=("robot",) if i % 2 else ())
        for i in range(n)
    ]


def settings_for(tmp_path: Path, **env: str) -> Settings:
    base = {
        "NEWSLETTER_STATE": f"sqlite:///{tmp_path / 'state.db'}",
        "NEWSLETTER_DELIVERY__OUTBOX": str(tmp_path / "outbox"),
        "NEWSLETTER_SECRET_KEY": "test-secret-0123456789abcdef0123456",
        "NEWSLETTER_SENDER__FROM": "Daily Papers <digest@papers.example>",
    }
    return load_settings(None, env={**base, **env})


class CrashingBackend(MemoryBackend):
    """Takes ``crash_after`` messages, then dies mid-batch like a killed process."""

    def __init__(self, crash_after: int) -> None:
        super().__init__()
        self.crash_after = crash_after

    def send_batch(
        self, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterator[SendResult]:
        for result in super().send_batch(template, batch):
            if len(self.outbox) > self.crash_after:
                self.outbox.pop()
                raise KeyboardInterrupt("killed")
            yield result


def test_rerun_after_an_interrupted_run_sends_exactly_the_missing(
    tmp_path: Path, pipeline: FakePipeline
) -> None:
    settings = settings_for(tmp_path)
    subscribers = people(10)
    first = CrashingBackend(crash_after=4)
    with pytest.raises(KeyboardInterrupt):
        send_day(settings, DATE, backend=first, subscribers=subscribers, now=lambda: NOW)
    with Ledger(settings.state) as ledger:
        rows = ledger.deliveries(DATE)
    sent_first = {m.email for m in first.outbox}
    assert len(sent_first) == 4
    assert {e for e, r in rows.items() if r.status == "sent"} == sent_first
    assert all(r.status == "pending" for e, r in rows.items() if e not in sent_first)

    # u8's message (the fifth of the first variant) was in flight when the process died:
    # its claim is taken over only once its lease has run out; the rows never handed to
    # the backend were given back at once.
    in_flight = {"u8@example.org"}
    second = MemoryBackend()
    report = send_day(settings, DATE, backend=second, subscribers=subscribers, now=lambda: NOW)
    sent_second = [m.email for m in second.outbox]
    assert sorted(sent_second) == sorted({s.email for s in subscribers} - sent_first - in_flight)
    assert pipeline.calls[-1] == [s.email for s in subscribers if s.email not in sent_first]
    assert report.already_sent == 4 and report.delivered == 5 and report.other_sender == 1

    later = NOW + dt.timedelta(seconds=settings.delivery.claim_lease + 1)
    after_lease = MemoryBackend()
    report = send_day(
        settings, DATE, backend=after_lease, subscribers=subscribers, now=lambda: later
    )
    assert [m.email for m in after_lease.outbox] == ["u8@example.org"]
    copies = Counter([*sent_first, *sent_second, "u8@example.org"])
    assert set(copies.values()) == {1}

    third = MemoryBackend()
    report = send_day(settings, DATE, backend=third, subscribers=subscribers, now=lambda: NOW)
    assert third.outbox == [] and report.skipped_reason == "everyone was already sent this day"
    assert report.already_sent == 10


def test_same_message_id_on_the_resend(tmp_path: Path, pipeline: FakePipeline) -> None:
    settings = settings_for(tmp_path)
    subscribers = people(3)
    first = MemoryBackend()
    send_day(settings, DATE, backend=first, subscribers=subscribers, now=lambda: NOW)
    again = MemoryBackend()
    send_day(
        settings, DATE, backend=again, subscribers=subscribers, now=lambda: NOW, retry_failed=True
    )
    with Ledger(settings.state) as ledger:
        ledger.mark_pending(
            DATE, {"u0@example.org": None}
        )  # as if the first send crashed in flight
    send_day(settings, DATE, backend=again, subscribers=subscribers, now=lambda: NOW)
    assert [m.email for m in again.outbox] == ["u0@example.org"]
    original = next(m for m in first.outbox if m.email == "u0@example.org")
    assert again.outbox[0].message_id == original.message_id


def test_offline_default_writes_the_outbox_and_records_papers(
    tmp_path: Path, pipeline: FakePipeline
) -> None:
    settings = settings_for(tmp_path)
    report = send_day(settings, DATE, subscribers=people(4), now=lambda: NOW)
    assert report.counts == {"sent": 4} and report.failed_permanently == 0
    assert len(list((tmp_path / "outbox").glob("2026-11-25-*.eml"))) == 4
    with Ledger(settings.state) as ledger:
        assert ledger.recent_paper_keys(DATE + dt.timedelta(days=1), 1) == {
            "2511.00001",
            "2511.00002",
        }
    assert "sent=4" in report.summary()


def test_empty_day_skip_sends_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pipeline(monkeypatch, FakePipeline(papers=()))
    backend = MemoryBackend()
    report = send_day(
        settings_for(tmp_path), DATE, backend=backend, subscribers=people(3), now=lambda: NOW
    )
    assert backend.outbox == [] and report.counts == {}
    assert "empty_day: skip" in (report.skipped_reason or "")
    note = settings_for(tmp_path, NEWSLETTER_DIGEST__EMPTY_DAY="note")
    report = send_day(note, DATE, backend=backend, subscribers=people(3), now=lambda: NOW)
    assert len(backend.outbox) == 3


def test_dry_run_records_nothing(tmp_path: Path, pipeline: FakePipeline) -> None:
    settings = settings_for(
        tmp_path, NEWSLETTER_DELIVERY__BACKEND="smtp", NEWSLETTER_DELIVERY__PORT="1"
    )
    report = send_day(settings, DATE, dry_run=True, subscribers=people(3), now=lambda: NOW)
    assert report.dry_run and report.delivered == 3
    with Ledger(settings.state) as ledger:
        assert ledger.deliveries(DATE) == {}


def test_a_dry_run_keeps_no_message_in_memory(tmp_path: Path, pipeline: FakePipeline) -> None:
    """A dry run makes every message and keeps none: its memory does not grow with the
    list (it kept each one, 6.5 GB for 100,000 digests of 65 KB)."""
    kept = MemoryBackend()
    send_day(settings_for(tmp_path / "kept"), DATE, backend=kept, subscribers=people(1))
    size = len(kept.outbox[0].raw)

    def peak(n: int, where: str) -> int:
        tracemalloc.start()
        try:
            report = send_day(
                settings_for(tmp_path / where), DATE, dry_run=True, subscribers=people(n)
            )
            assert report.dry_run and report.delivered == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    grown = peak(1000, "many") - peak(100, "few")
    assert grown < 900 * size / 4, (grown, size)


def test_only_one_subscriber(tmp_path: Path, pipeline: FakePipeline) -> None:
    backend = MemoryBackend()
    send_day(
        settings_for(tmp_path),
        DATE,
        only="U2@example.org",
        backend=backend,
        subscribers=people(5),
        now=lambda: NOW,
    )
    assert [m.email for m in backend.outbox] == ["u2@example.org"]


def test_inactive_and_invalid_subscribers(tmp_path: Path, pipeline: FakePipeline) -> None:
    subscribers = [
        *people(2),
        Subscriber(email="off@example.org", active=False),
        Subscriber(email="bad address@x"),
    ]
    backend = MemoryBackend()
    report = send_day(
        settings_for(tmp_path), DATE, backend=backend, subscribers=subscribers, now=lambda: NOW
    )
    assert {m.email for m in backend.outbox} == {"u0@example.org", "u1@example.org"}
    assert report.counts == {"sent": 2, "invalid": 1} and report.failed_permanently == 1


def test_stop_event_leaves_the_rest_for_the_next_run(
    tmp_path: Path, pipeline: FakePipeline
) -> None:
    settings = settings_for(tmp_path)
    stop = threading.Event()
    backend = MemoryBackend()
    backend.batch_size = 2  # type: ignore[misc]

    def progress(result: SendResult) -> None:
        if result.status == SendStatus.SENT:
            stop.set()

    report = send_day(
        settings,
        DATE,
        backend=backend,
        subscribers=people(6),
        now=lambda: NOW,
        stop=stop,
        progress=progress,
    )
    assert 1 <= report.delivered < 6
    rest = MemoryBackend()
    send_day(settings, DATE, backend=rest, subscribers=people(6), now=lambda: NOW)
    assert sorted(m.email for m in backend.outbox + rest.outbox) == sorted(
        p.email for p in people(6)
    )


def test_auth_error_stops_the_run(tmp_path: Path, pipeline: FakePipeline) -> None:
    class Refusing(MemoryBackend):
        def send_batch(
            self, template: MessageTemplate, batch: Sequence[Recipient]
        ) -> Iterable[SendResult]:
            raise AuthError("SMTP server refused the login")

    with pytest.raises(AuthError):
        send_day(
            settings_for(tmp_path), DATE, backend=Refusing(), subscribers=people(2), now=lambda: NOW
        )


def test_real_backend_needs_a_secret_key(tmp_path: Path, pipeline: FakePipeline) -> None:
    settings = settings_for(tmp_path, NEWSLETTER_SECRET_KEY="", NEWSLETTER_DELIVERY__BACKEND="smtp")
    from newsletter.errors import ConfigError

    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        send_day(settings, DATE, subscribers=people(1), now=lambda: NOW)


def test_links_carry_signed_tokens() -> None:
    values = subscriber_values(
        Subscriber(email="a@x.org", name="A"),
        base_url="https://p.example/",
        secret=b"k",
        list_id="L <l.example>",
        date=DATE,
    )
    assert values["unsubscribe_url"].startswith("https://p.example/unsubscribe?token=")
    assert values["preferences_url"].startswith("https://p.example/preferences?token=")
    other = subscriber_values(
        Subscriber(email="a@x.org"),
        base_url="https://p.example",
        secret=b"other",
        list_id="L <l.example>",
        date=DATE,
    )
    assert other["unsubscribe_url"] != values["unsubscribe_url"]


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(tmp_path: Path, pipeline: FakePipeline, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    listed(monkeypatch, people(3))
    return tmp_path


def test_cli_offline_default_then_rerun(cli_env: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["send", "--date", "2026-11-25"])
    assert result.exit_code == 0, result.output
    assert "2026-11-25: sent=3" in result.output
    assert len(list((cli_env / "outbox").glob("*.eml"))) == 3
    assert (cli_env / "newsletter.db").exists()
    again = runner.invoke(cli, ["send", "--date", "2026-11-25"])
    assert again.exit_code == 0 and "everyone was already sent" in again.output


def test_cli_dry_run_lists_recipients(cli_env: Path) -> None:
    result = CliRunner().invoke(cli, ["send", "--date", "2026-11-25", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "(dry run)" in result.output and "would send to u1@example.org" in result.output
    assert not (cli_env / "outbox").exists()


def test_cli_exit_code_on_permanent_failure(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed(monkeypatch, [*people(1), Subscriber(email="not an address")])
    result = CliRunner().invoke(cli, ["send", "--date", "2026-11-25"])
    assert result.exit_code == 1
    assert "invalid not an address (permanent)" in result.output


def test_cli_bad_date_and_help(cli_env: Path) -> None:
    result = CliRunner().invoke(cli, ["send", "--date", "25/11/2026"])
    assert result.exit_code == 2 and "is not a date" in result.output
    help_text = CliRunner().invoke(cli, ["send", "--help"]).output
    for option in ("--date", "--source", "--dry-run", "--only", "--config", "--subscribers"):
        assert option in help_text


def test_cli_config_error_is_one_line(cli_env: Path) -> None:
    (cli_env / "bad.yaml").write_text("delivery:\n  backend: pigeon\n")
    result = CliRunner().invoke(cli, ["send", "--date", "2026-11-25", "--config", "bad.yaml"])
    assert result.exit_code == 2
    assert "error: delivery.backend: unknown backend 'pigeon'" in result.output


def test_cli_progress_bar_on_a_terminal(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("newsletter.cli.send._stdout_is_tty", lambda: True)
    result = CliRunner().invoke(cli, ["send", "--date", "2026-11-25"])
    assert result.exit_code == 0, result.output
    assert "sending" in result.output and "sent=3" in result.output


def test_cli_plain_log_lines_otherwise(cli_env: Path) -> None:
    result = CliRunner().invoke(cli, ["send", "--date", "2026-11-25"])
    assert result.exit_code == 0, result.output
    assert "sending to 3 subscribers" in result.output
    line = next(x for x in result.output.splitlines() if "progress: " in x)
    assert "run=" in line and "sent 3, failed 0, remaining 0 of 3" in line
    assert "u0@example.org" not in result.output  # per-address lines are DEBUG


def test_progress_log_every_few_seconds_and_failures_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from newsletter.send import ProgressLog

    caplog.set_level("DEBUG", logger="newsletter.send")
    now = [0.0]
    progress = ProgressLog(4, every=5.0, clock=lambda: now[0])
    progress(SendResult("a@x.org", SendStatus.SENT))
    now[0] = 6.0
    progress(SendResult("b@x.org", SendStatus.REJECTED, error="RCPT TO: 550 no such user"))
    now[0] = 7.0
    progress(SendResult("c@x.org", SendStatus.FAILED, error="451 later", transient=True))
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels == [
        ("DEBUG", "sent a@x.org"),
        ("WARNING", "rejected b@x.org (permanent): RCPT TO: 550 no such user"),
        ("INFO", "progress: sent 1, failed 1, remaining 2 of 4, 0.2 msg/s"),
        ("WARNING", "failed c@x.org (retry later): 451 later"),
    ]


def test_dedupe_days_passes_recently_sent_papers_to_the_pipeline(
    tmp_path: Path, pipeline: FakePipeline
) -> None:
    settings = settings_for(tmp_path, NEWSLETTER_DIGEST__DEDUPE_DAYS="2")
    send_day(settings, DATE, backend=MemoryBackend(), subscribers=people(2), now=lambda: NOW)
    assert pipeline.excluded[-1] == set()
    send_day(
        settings,
        DATE + dt.timedelta(days=1),
        backend=MemoryBackend(),
        subscribers=people(2),
        now=lambda: NOW,
    )
    assert pipeline.excluded[-1] == {"2511.00001", "2511.00002"}
    send_day(
        settings,
        DATE + dt.timedelta(days=3),
        backend=MemoryBackend(),
        subscribers=people(2),
        now=lambda: NOW,
    )
    assert pipeline.excluded[-1] == {"2511.00001", "2511.00002"}  # sent on day+1, within 2 days


def test_done_when_smtp_50_subscribers_then_rerun_sends_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's acceptance run: the real pipeline on the bundled sample day, the real
    renderer, a real SMTP server on loopback (only the subscriber list is given here)."""
    import email
    import email.policy
    import os

    received: list[bytes] = []
    senders: list[str] = []

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(bytes(envelope.content))
            senders.append(envelope.mail_from)
            return "250 OK"

    with smtp_server(Sink()) as port:
        monkeypatch.chdir(tmp_path)
        for name in list(os.environ):
            if name.startswith("NEWSLETTER_"):
                monkeypatch.delenv(name)
        (tmp_path / "newsletter.yaml").write_text(
            f"sender:\n  from: Daily Papers <digest@papers.example>\n"
            f"  list_id: Daily Papers <daily.papers.example>\n"
            f"digest:\n  base_url: https://papers.example/\n"
            f"delivery:\n  backend: smtp\n  host: 127.0.0.1\n  port: {port}\n  security: none\n"
            f"  return_path: bounces+{{token}}@papers.example\n"
        )
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "k" * 32)
        listed(monkeypatch, people(50))
        first = CliRunner().invoke(cli, ["send", "--date", "2026-11-25", "--source", "sample"])
        second = CliRunner().invoke(cli, ["send", "--date", "2026-11-25", "--source", "sample"])
    assert first.exit_code == 0, first.output
    assert "sent=50" in first.output
    assert second.exit_code == 0 and "everyone was already sent" in second.output
    assert len(received) == 50
    for raw in received:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert msg["List-Unsubscribe"].startswith("<https://papers.example/unsubscribe?token=")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["Feedback-ID"] == "20261125:newsletter:digest:daily.papers.example"
    # VERP: each envelope sender names its own subscriber and day, signed
    from newsletter.bounces import verp

    addresses = [p.email for p in people(50)]
    for raw, sender in zip(received, senders, strict=True):
        to = email.message_from_bytes(raw, policy=email.policy.default)["To"].addresses[0]
        assert sender.startswith("bounces+20261125-") and sender.endswith("@papers.example")
        assert verp.match(b"k" * 32, sender, addresses) == (
            to.addr_spec,
            dt.date(2026, 11, 25),
        )


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({}, "digest.base_url"),
        ({"NEWSLETTER_DIGEST__BASE_URL": "http://papers.example"}, "digest.base_url"),
        ({"NEWSLETTER_DIGEST__BASE_URL": "https://127.0.0.1:8080"}, "digest.base_url"),
        ({"NEWSLETTER_DIGEST__BASE_URL": "https://papers.example"}, "sender.list_id"),
    ],
)
def test_real_backend_refuses_dead_unsubscribe_links(
    tmp_path: Path, pipeline: FakePipeline, env: dict[str, str], key: str
) -> None:
    from newsletter.errors import ConfigError

    settings = settings_for(tmp_path, NEWSLETTER_DELIVERY__BACKEND="smtp", **env)
    with pytest.raises(ConfigError) as caught:
        send_day(settings, DATE, subscribers=people(1), now=lambda: NOW)
    message = str(caught.value)
    assert message.startswith(key + ":") and "\n" not in message
    # the offline backends and dry runs keep working without any of it
    assert (
        send_day(settings, DATE, dry_run=True, subscribers=people(1), now=lambda: NOW).delivered
        == 1
    )


def test_an_address_with_a_line_break_or_a_surrogate_is_refused_not_a_crash() -> None:
    """Subscribers made in code (not read from a validated list) reach deliver_variants
    as they are: an unusable address is an `invalid` result, the others still go."""
    from newsletter.config import SenderSettings
    from newsletter.send import SendOptions, deliver_variants, values_maker

    people = (
        Subscriber(email="ada@example.org\n"),
        Subscriber(email="\ud800@example.org"),
        Subscriber(email="bob@example.org"),
    )
    backend = MemoryBackend()
    results: list[SendResult] = []
    deliver_variants(
        [Variant(FULL_PROFILE, Digest(date=DATE, topics=()), sample_rendered(), people)],
        SendOptions(
            date=dt.date(2026, 11, 25),
            backend=backend,
            sender=SenderSettings(from_="Daily Papers <digest@papers.example>"),
            values_for=values_maker(
                base_url="https://news.example.org", secret=b"k" * 32, list_id="L", date=DATE
            ),
            now=lambda: dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC),
            progress=results.append,
        ),
    )
    statuses = {r.email: r.status for r in results}
    assert statuses == {
        "ada@example.org\n": SendStatus.INVALID,
        "\ud800@example.org": SendStatus.INVALID,
        "bob@example.org": SendStatus.SENT,
    }
    assert [m.email for m in backend.outbox] == ["bob@example.org"]
