"""A parsed report becomes a stored event and, by the policy, a suppression.

:class:`Intake` is the one way in for every source (``bounces import``, the webhooks,
permanent failures at submission). For each :class:`~newsletter.bounces.parse.Report` it

1. finds the subscriber and day: the signed VERP token of the address the report came
   back to (``verp``), else the Message-ID it quotes, looked up in the delivery ledger
   (``message-id``), else the address the report names (``address``; no day). A report
   that matches nothing we sent still counts against the address it names;
2. stores the event (``bounce_events``); an event id seen before is a replay and
   changes nothing;
3. applies :mod:`newsletter.bounces.policy` and suppresses the address when it says so,
   the suppression naming the event.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from newsletter.bounces import verp
from newsletter.bounces.parse import HARD, SOFT, Report, classify, status_in
from newsletter.bounces.policy import Policy, decide, window_start
from newsletter.config import Settings
from newsletter.models import SendResult, SendStatus
from newsletter.state import BounceEvent, State

log = logging.getLogger(__name__)

SUBMISSION = "submission"
"""The source of permanent failures the server or provider answered at submission."""


@dataclass
class Tally:
    """What an intake did, for the CLI to report."""

    events: int = 0
    new: int = 0
    replays: int = 0
    unmatched: int = 0
    """Reports naming no address we could tie to anyone (stored nowhere)."""
    suppressed: list[tuple[str, str]] = field(default_factory=list)
    """(address, reason) of each suppression made."""
    kinds: Counter[str] = field(default_factory=Counter)


def policy_from(settings: Settings) -> Policy:
    return Policy(
        soft_limit=settings.delivery.soft_bounce_limit,
        soft_days=settings.delivery.soft_bounce_days,
    )


class Intake:
    """Takes reports into the state database (see the module doc)."""

    def __init__(
        self,
        state: State,
        *,
        secret: bytes | Sequence[bytes] | None,
        policy: Policy | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.state = state
        if secret is None:
            secret = ()
        self._secrets: tuple[bytes, ...] = (secret,) if isinstance(secret, bytes) else tuple(secret)
        self.policy = policy or Policy()
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self.tally = Tally()

    @classmethod
    def from_settings(cls, state: State, settings: Settings) -> Intake:
        keys = [settings.secret_key or "", *(settings.secret_key_old or "").split(",")]
        secrets = [key.strip().encode("utf-8") for key in keys if key.strip()]
        return cls(state, secret=secrets, policy=policy_from(settings))

    def match(self, report: Report) -> tuple[str, dt.date | None, str] | None:
        """(subscriber address, day, how) for a report, or None when it names nobody."""
        found = verp.read(report.return_path) if report.return_path else None
        if found is not None and report.return_path:
            sent_to = list(self.state.deliveries(found[0]))
            for secret in self._secrets:  # the current key, then the old ones (rotation)
                hit = verp.match(secret, report.return_path, sent_to)
                if hit is not None:
                    return hit[0], hit[1], "verp"
        if report.message_id:
            delivery = self.state.delivery_for_message_id(report.message_id)
            if delivery is not None:
                return delivery[0], delivery[1], "message-id"
        if report.email and "@" in report.email:
            return report.email, None, "address"
        return None

    def take(self, report: Report, *, source: str, day: dt.date | None = None) -> bool:
        """Store and act on one report; False when it was a replay or names nobody.
        ``day``: the day's message it answers, when the caller knows (a submission)."""
        self.tally.events += 1
        matched = (report.email, day, "ledger") if day is not None else self.match(report)
        if matched is None:
            self.tally.unmatched += 1
            log.warning(
                "%s: a %s report names no address: %s", source, report.kind, report.event_id
            )
            return False
        email, day, how = matched
        at = report.at or self._now()
        event = BounceEvent(
            event_id=report.event_id,
            email=email,
            kind=report.kind,
            status=report.status,
            diagnostic=report.diagnostic,
            source=source,
            day=day,
            matched=how,
            occurred_at=at,
        )
        if not self.state.add_bounce_event(event):
            self.tally.replays += 1
            return False
        self.tally.new += 1
        self.tally.kinds[report.kind] += 1
        soft: list[dt.datetime] = []
        if report.kind == SOFT:
            soft = self.state.bounce_times(email, SOFT, since=window_start(at, self.policy))
        reason = decide(report.kind, soft, at, self.policy)
        if reason is not None and self.state.suppress(
            email, reason=reason, source=source, event_id=event.event_id
        ):
            self.tally.suppressed.append((email, reason))
            log.info("%s: %s suppressed (%s, %s)", source, email, reason, event.event_id)
        return True

    def take_all(self, reports: Iterable[Report], *, source: str) -> int:
        return sum(1 for report in reports if self.take(report, source=source))


REFUSED = frozenset({SendStatus.REJECTED, SendStatus.INVALID})
"""Submission outcomes that count as bounces (when not transient)."""


def submission_reports(date: dt.date, results: Iterable[SendResult]) -> list[Report]:
    """Reports of the recipients a send had refused for good at submission (``rejected``,
    ``invalid``): hard unless the code says otherwise (a 5.7.x policy refusal, a full
    mailbox)."""
    reports: list[Report] = []
    for result in results:
        # only refusals of the recipient: a failed call whose outcome is unknown or an
        # account-wide stop says nothing about the address
        if result.status not in REFUSED or result.transient:
            continue
        error = result.error or str(result.status)
        status = status_in(error)
        kind = HARD if result.status == SendStatus.INVALID else classify(status, error)
        reports.append(
            Report(
                email=result.email,
                kind=kind,
                status=status,
                diagnostic=" ".join(error.split())[:500],
                format=SUBMISSION,
                event_id=f"{SUBMISSION}:{date.isoformat()}:{result.email.lower()}",
                message_id=result.message_id if result.message_id else None,
            )
        )
    return reports


def record_submission_failures(
    state: State, settings: Settings, date: dt.date, results: Iterable[SendResult]
) -> Tally:
    """Take a send's permanent failures as bounces (the day and address are known)."""
    intake = Intake.from_settings(state, settings)
    for report in submission_reports(date, results):
        intake.take(report, source=SUBMISSION, day=date)
    return intake.tally
