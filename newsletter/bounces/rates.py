"""Bounce and complaint rates over the last days, as ``newsletter status`` shows them.

A rate is events / messages sent for the days in the window (the ledger's ``sent``
rows). Mailbox providers judge a sender on these: Gmail and Yahoo's bulk-sender rules
ask for spam complaints under 0.3 % (0.1 % recommended); bounce rates above 2 % are
the usual sign of a list that is not cleaned.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from newsletter.bounces.parse import COMPLAINT, HARD, SOFT
from newsletter.state import State

WINDOWS = (7, 30)
"""The windows, in days, that ``status`` reports."""

BOUNCE_WARN = 0.02
"""Bounce rate above which ``status`` warns."""

COMPLAINT_WARN = 0.001
"""Complaint rate above which ``status`` warns (Gmail's recommended ceiling)."""


def rates(state: State, now: dt.datetime) -> dict[str, Any]:
    """``{"7d": {...}, "30d": {...}, "warnings": [...]}`` for ``status``."""
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for days in WINDOWS:
        since = now - dt.timedelta(days=days)
        sent = state.sent_count(since.date())
        counts = state.bounce_counts(since)
        bounces = counts.get(HARD, 0) + counts.get(SOFT, 0)
        complaints = counts.get(COMPLAINT, 0)
        bounce_rate = bounces / sent if sent else None
        complaint_rate = complaints / sent if sent else None
        out[f"{days}d"] = {
            "sent": sent,
            "hard": counts.get(HARD, 0),
            "soft": counts.get(SOFT, 0),
            "complaints": complaints,
            "bounce_rate": bounce_rate,
            "complaint_rate": complaint_rate,
        }
        if bounce_rate is not None and bounce_rate > BOUNCE_WARN:
            warnings.append(
                f"bounce rate {bounce_rate:.1%} over the last {days} days is above "
                f"{BOUNCE_WARN:.0%}: check the list (newsletter suppressions list)"
            )
        if complaint_rate is not None and complaint_rate > COMPLAINT_WARN:
            warnings.append(
                f"complaint rate {complaint_rate:.2%} over the last {days} days is above "
                f"{COMPLAINT_WARN:.1%}: mailbox providers may throttle or block the list"
            )
    out["warnings"] = warnings
    return out


def format_rates(report: dict[str, Any]) -> list[str]:
    """Lines for the human ``status``."""
    lines = []
    for days in WINDOWS:
        window = report[f"{days}d"]
        if not window["sent"]:
            lines.append(f"  last {days} days: nothing sent")
            continue
        lines.append(
            f"  last {days} days: {window['sent']} sent, bounces {window['bounce_rate']:.2%}"
            f" ({window['hard']} hard, {window['soft']} soft), complaints "
            f"{window['complaint_rate']:.2%} ({window['complaints']})"
        )
    return lines
