"""What an event does to its address (pure): suppress now, or not yet.

============  =========================================================================
hard          suppressed at once (reason ``bounce``); so is a permanent failure the
              SMTP server or provider answered at submission
soft          suppressed (reason ``soft-bounce``) once ``delivery.soft_bounce_limit``
              soft bounces (this one included) fall within ``delivery.soft_bounce_days``
complaint     suppressed at once (reason ``complaint``); the suppression lives in the
              state database, so no edit of the subscriber list lifts it, and
              ``suppressions remove`` lifts it only with ``--force``
============  =========================================================================
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.bounces.parse import COMPLAINT, HARD, SOFT

DEFAULT_SOFT_LIMIT = 3
"""Soft bounces within the window that suppress an address."""

DEFAULT_SOFT_DAYS = 14
"""The window, in days, in which soft bounces add up."""

BOUNCE = "bounce"
SOFT_BOUNCE = "soft-bounce"
COMPLAINED = "complaint"
REASONS = {HARD: BOUNCE, SOFT: SOFT_BOUNCE, COMPLAINT: COMPLAINED}
"""The suppression reason each kind of event leads to."""

LOCKED_REASONS = frozenset({COMPLAINED})
"""Suppressions that only ``suppressions remove --force`` lifts."""


@dataclass(frozen=True, slots=True)
class Policy:
    soft_limit: int = DEFAULT_SOFT_LIMIT
    soft_days: int = DEFAULT_SOFT_DAYS


def window_start(at: dt.datetime, policy: Policy) -> dt.datetime:
    """The oldest time a soft bounce still counts at ``at``."""
    return at - dt.timedelta(days=policy.soft_days)


def decide(
    kind: str, soft_times: Sequence[dt.datetime], at: dt.datetime, policy: Policy
) -> str | None:
    """The suppression reason an event of ``kind`` at ``at`` causes, or None.

    ``soft_times``: when this address's soft bounces happened (this one included).
    """
    if kind in (HARD, COMPLAINT):
        return REASONS[kind]
    if kind != SOFT:
        raise ValueError(f"unknown event kind {kind!r}")
    start = window_start(at, policy)
    recent = sum(1 for when in soft_times if start <= when <= at)
    limit = max(1, policy.soft_limit)
    return SOFT_BOUNCE if recent >= limit else None
