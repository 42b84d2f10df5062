"""What subscribers chose themselves: the suppression list and the preference overlay.

They live in the state database (``settings.state``, shared with the
delivery ledger; their tables are prefixed ``suppress_`` and ``prefs_``), never in the
admin's YAML, so a hand edit of the list can never undo an unsubscribe.
:meth:`PrefsStore.apply` turns the admin's list into who gets the next send.

Tables::

    suppress_list     one row per suppressed address (key = casefolded address)
    prefs_overlay     topics / summary / paused chosen on the preferences page
    signup_pending    sign-ups waiting for their confirmation click (with their nonce)
    signup_attempts   recent sign-up posts per client (the per-client limit)
    prefs_events      every change, in order (an audit trail: nothing is lost silently)

Every write is one short transaction (SQLite ``BEGIN IMMEDIATE``), so several web threads
and a send can share the database; repeating a write (a replayed token) changes nothing.
The tables and their queries live in :mod:`newsletter.state`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from newsletter.config import Settings
from newsletter.models import Subscriber
from newsletter.state import Overlay, Signup, SignupDecision, State, Suppression, apply_choices


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PrefsStore(State):
    """The state database opened for readers' choices: every commit reaches the disk
    (SQLite ``synchronous=FULL``). Its methods are :class:`newsletter.state.State`'s."""

    def __init__(self, state_url: str, *, now: Callable[[], dt.datetime] = _utcnow) -> None:
        super().__init__(state_url, now=now, durable=True)


def next_send_subscribers(settings: Settings) -> list[Subscriber]:
    """The admin's list, validated against the configured taxonomy, with the readers'
    own choices applied: who gets the next send and what each asked for."""
    return next_send_subscribers_counted(settings)[0]


def next_send_subscribers_counted(settings: Settings) -> tuple[list[Subscriber], dict[str, int]]:
    """:func:`next_send_subscribers`, and how many were left out why (inactive,
    unsubscribed, suppressed, paused)."""
    from newsletter import subscribers as roster  # the send path's only use of the list

    known = roster.default_topic_names(settings.digest.taxonomy)
    subscribers = roster.load_subscribers(
        settings.subscribers, known_topics=known, state=settings.state
    )
    existing = State.open_existing(settings.state)  # reading the list creates no database
    if existing is None:
        return apply_choices(subscribers, {}, {})
    with existing as state:
        return state.apply_counted(subscribers)


__all__ = [
    "Overlay",
    "PrefsStore",
    "Signup",
    "SignupDecision",
    "Suppression",
    "next_send_subscribers",
    "next_send_subscribers_counted",
]
