"""Backend's retry step: who is retried after a batch that answered for only some, or failed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from newsletter.config import SenderSettings
from newsletter.delivery.base import Backend, BackendOptions, RetryPolicy
from newsletter.errors import TransientError
from newsletter.message import MessageTemplate, Recipient, build_template
from newsletter.models import SendResult, SendStatus
from tests.doubles import sample_rendered

SENDER = SenderSettings(from_="Daily Papers <digest@papers.example>")
DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


class Scripted(Backend):
    """A backend whose provider answers each attempt as scripted: a list of the addresses
    it takes (the others get no result), or an exception to raise after taking them."""

    name = "scripted"

    def __init__(self, script: list[tuple[set[str], Exception | None]]) -> None:
        super().__init__(
            options=BackendOptions(retry=RetryPolicy(max_attempts=3), sleep=lambda s: None)
        )
        self.script = script
        self.batches: list[list[str]] = []

    def send_batch(
        self, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterable[SendResult]:
        self.batches.append([r.email for r in batch])
        taken, error = self.script.pop(0)
        for r in batch:
            if r.email in taken:
                yield SendResult(r.email, SendStatus.SENT)
        if error is not None:
            raise error


def run(backend: Scripted, emails: list[str]) -> dict[str, SendResult]:
    template = build_template(sample_rendered(), sender=SENDER, date=DATE, now=NOW)
    people = [
        template.recipient(
            e,
            "",
            {
                "name": "",
                "email": e,
                "unsubscribe_url": f"https://x.example/u?t={i}",
                "preferences_url": f"https://x.example/p?t={i}",
                "feedback_url": "https://papers.example/f/" + "F" * 36,
            },
        )
        for i, e in enumerate(emails)
    ]
    return {r.email: r for r in backend.send(template, people)}


EMAILS = ["a@x.org", "b@x.org", "c@x.org"]


def test_recipients_a_batch_gave_no_result_for_are_retried() -> None:
    backend = Scripted([({"a@x.org"}, None), ({"b@x.org", "c@x.org"}, None)])
    results = run(backend, EMAILS)
    assert backend.batches == [EMAILS, ["b@x.org", "c@x.org"]]
    assert {e: (r.status, r.attempts) for e, r in results.items()} == {
        "a@x.org": (SendStatus.SENT, 1),
        "b@x.org": (SendStatus.SENT, 2),
        "c@x.org": (SendStatus.SENT, 2),
    }


def test_a_transient_error_mid_batch_retries_only_those_not_yet_taken() -> None:
    backend = Scripted(
        [({"a@x.org"}, TransientError("421 try later")), ({"b@x.org", "c@x.org"}, None)]
    )
    results = run(backend, EMAILS)
    assert backend.batches == [EMAILS, ["b@x.org", "c@x.org"]]
    assert results["a@x.org"].attempts == 1 and results["b@x.org"].attempts == 2


def test_the_last_attempts_reason_is_kept_when_retries_run_out() -> None:
    backend = Scripted(
        [(set(), TransientError("421 try later")), (set(), None), (set(), TransientError("451"))]
    )
    results = run(backend, ["a@x.org"])
    assert backend.batches == [["a@x.org"]] * 3
    (only,) = results.values()
    gave_up = "(gave up after 3 attempt(s))"
    assert (only.status, only.error) == (SendStatus.FAILED, f"451 {gave_up}")
    backend = Scripted([(set(), None), (set(), None), (set(), None)])
    (only,) = run(backend, ["a@x.org"]).values()
    assert (only.status, only.error) == (SendStatus.FAILED, f"no result from backend {gave_up}")
