"""The helpers of the scale benchmarks and crash trials (tests/scale_helpers.py)."""

from __future__ import annotations

import datetime as dt
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from newsletter.config import SenderSettings
from newsletter.delivery.base import BackendOptions, RetryPolicy
from newsletter.delivery.sendgrid import SendGridBackend
from newsletter.errors import AuthError
from newsletter.message import build_template
from newsletter.models import SendStatus
from newsletter.stores import open_store
from newsletter.subscribers import load_subscribers
from tests.doubles import sample_rendered, smtp_server
from tests.scale_helpers import (
    RecordingSink,
    TokenBucket,
    check_mail_send,
    copies_per_recipient,
    start_fake_sendgrid,
    subscriber_entries,
    subscribers_yaml,
    synthetic_profiles,
    synthetic_subscribers,
    variant_sizes,
)

TOPICS = ("Robotics & embodied AI", "Multimodal LLMs", "Agents & tool use", "Speech & audio")
SENDER = SenderSettings(from_="Daily Papers <digest@papers.example>")
DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- subscribers


def test_variant_sizes_sum_to_n_skewed_and_each_at_least_one() -> None:
    sizes = variant_sizes(100_000, 60)
    assert sum(sizes) == 100_000
    assert len(sizes) == 60
    assert min(sizes) >= 1
    assert sizes[0] > 10 * sizes[-1]
    assert variant_sizes(3, 10) == [1, 1, 1]


def test_synthetic_profiles_are_distinct_and_start_with_the_default() -> None:
    profiles = synthetic_profiles(TOPICS, 60)
    keys = {(p["topics"], p["keywords"], p["max_papers"], p["summary"]) for p in profiles}
    assert len(keys) == 60
    assert profiles[0] == {"topics": (), "keywords": (), "max_papers": None, "summary": "tldr"}
    with pytest.raises(ValueError, match="distinct profiles"):
        synthetic_profiles(("One",), 10_000)


def test_synthetic_subscribers_cover_the_variants_deterministically() -> None:
    people = synthetic_subscribers(2000, topics=TOPICS, variants=50)
    assert len(people) == 2000
    assert len({p.email for p in people}) == 2000
    assert len({p.profile for p in people}) == 50
    assert any(not p.name.isascii() for p in people)
    assert synthetic_subscribers(2000, topics=TOPICS, variants=50) == people


def test_subscribers_yaml_round_trips(tmp_path: Path) -> None:
    people = synthetic_subscribers(300, topics=TOPICS, variants=20)
    path = tmp_path / "subscribers.yaml"
    path.write_text(subscribers_yaml(people), encoding="utf-8")
    assert load_subscribers(path) == people


def test_subscriber_entries_fill_a_state_database_list(tmp_path: Path) -> None:
    people = synthetic_subscribers(300, topics=TOPICS, variants=20)
    store = open_store("state", state=f"sqlite:///{tmp_path / 'state.db'}")
    with store.edit(TOPICS) as editor:
        for entry in subscriber_entries(people):
            editor.add(entry)
    assert store.load(TOPICS) == people


# --------------------------------------------------------------------------- rate limit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock=clock)
    assert bucket.take() is None
    assert bucket.take() is None
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() is None
    assert bucket.take() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        TokenBucket(0)


# --------------------------------------------------------------------------- fake SendGrid


def _body(n: int) -> dict[str, object]:
    return {
        "personalizations": [{"to": [{"email": f"r{i}@example.org"}]} for i in range(n)],
        "from": {"email": "digest@papers.example"},
        "subject": "Daily",
        "content": [{"type": "text/plain", "value": "hi"}],
    }


def test_check_mail_send_counts_recipients_and_names_the_problem() -> None:
    assert check_mail_send(_body(3)) == (
        ["r0@example.org", "r1@example.org", "r2@example.org"],
        None,
    )
    assert check_mail_send(_body(1001))[1] == "at most 1000 personalizations"
    assert check_mail_send({**_body(1), "from": {}})[1] == "from.email is required"
    assert check_mail_send({**_body(1), "content": []})[1] == "content is required"
    assert check_mail_send([])[1] == "body must be a JSON object"


def _recipients(n: int) -> tuple[object, list[object]]:
    template = build_template(sample_rendered(), sender=SENDER, date=DATE, now=NOW)
    people = [
        template.recipient(
            f"reader{i}@example.org",
            f"Reader {i}",
            {
                "name": f"Reader {i}",
                "email": f"reader{i}@example.org",
                "unsubscribe_url": f"https://papers.example/u?t={i}",
                "preferences_url": f"https://papers.example/p?t={i}",
                "feedback_url": "https://papers.example/f/" + "F" * 36,
            },
        )
        for i in range(n)
    ]
    return template, people


def test_real_sendgrid_backend_against_the_fake_server() -> None:
    fake = start_fake_sendgrid(api_key="SG.test", rate=None)
    try:
        template, people = _recipients(2500)
        with SendGridBackend(api_key="SG.test", base_url=fake.base_url) as backend:
            results = backend.send(template, people)  # type: ignore[arg-type]
        assert [r.status for r in results] == [SendStatus.QUEUED] * 2500
        stats = fake.summary()
        assert stats["requests"] == 3
        assert stats["accepted"] == 3
        assert stats["recipients"] == 2500
        assert stats["distinct_recipients"] == 2500
        assert stats["max_personalizations"] == 1000
        with (
            SendGridBackend(api_key="SG.wrong", base_url=fake.base_url) as backend,
            pytest.raises(AuthError),
        ):
            backend.send(template, people[:1])  # type: ignore[arg-type]
        assert fake.summary()["unauthorized"] == 1
    finally:
        fake.close()


def test_fake_sendgrid_throttles_with_retry_after_and_refuses_big_bodies() -> None:
    fake = start_fake_sendgrid(api_key="SG.test", rate=1.0)
    try:
        headers = {"Authorization": "Bearer SG.test"}
        url = f"{fake.base_url}/v3/mail/send"
        with httpx.Client() as client:
            first = client.post(url, json=_body(2), headers=headers)
            second = client.post(url, json=_body(2), headers=headers)
        assert first.status_code == 202
        assert first.headers["X-Message-Id"]
        assert second.status_code == 429
        assert int(second.headers["Retry-After"]) >= 1
        assert fake.summary()["throttled"] == 1
    finally:
        fake.close()
    fake = start_fake_sendgrid(api_key="SG.test", rate=None)
    try:
        response = httpx.post(
            f"{fake.base_url}/v3/mail/send",
            json=_body(1001),
            headers={"Authorization": "Bearer SG.test"},
        )
        assert response.status_code == 400
        assert "1000 personalizations" in response.json()["errors"][0]["message"]
    finally:
        fake.close()


def test_backend_honours_the_fake_servers_429() -> None:
    fake = start_fake_sendgrid(api_key="SG.test", rate=1.0)
    slept: list[float] = []
    try:
        template, people = _recipients(1500)

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

        options = BackendOptions(retry=RetryPolicy(max_attempts=5, jitter=0.0), sleep=sleep)
        with SendGridBackend(api_key="SG.test", base_url=fake.base_url, options=options) as b:
            results = b.send(template, people)  # type: ignore[arg-type]
        stats = fake.summary()
        assert stats["throttled"] >= 1
        assert len(slept) == stats["throttled"]
        assert all(s >= 1.0 for s in slept)
        assert sum(r.status == SendStatus.QUEUED for r in results) == 1500
    finally:
        fake.close()


# --------------------------------------------------------------------------- SMTP sink


def test_recording_sink_keeps_recipients_and_message_ids() -> None:
    seen: list[int] = []
    sink = RecordingSink(on_message=seen.append)
    with smtp_server(sink) as port, smtplib.SMTP("127.0.0.1", port) as smtp:
        for i, who in enumerate(["a@example.org", "b@example.org", "a@example.org"]):
            msg = EmailMessage()
            msg["From"] = "digest@papers.example"
            msg["To"] = who
            msg["Message-ID"] = f"<id{i % 2}@papers.example>"
            msg.set_content("hello")
            smtp.send_message(msg)
    received = sink.snapshot()
    assert seen == [1, 2, 3]
    assert [r.message_id for r in received] == [
        "<id0@papers.example>",
        "<id1@papers.example>",
        "<id0@papers.example>",
    ]
    assert copies_per_recipient(received) == {"a@example.org": 2, "b@example.org": 1}
    sink.clear()
    assert sink.snapshot() == []
