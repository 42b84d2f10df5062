"""Bounces and complaints: reports in, suppressions out.

::

    parse.py    a delivery report (DSN, ARF, an MTA's own shape) -> list[Report]   (pure)
    verp.py     the signed return-path token: subscriber + day in the envelope sender
    mailbox.py  reports from a .eml file, an mbox, a Maildir, IMAP or POP3
    policy.py   events of one address -> suppress or not                         (pure)
    intake.py   a parsed report -> a stored event, and the suppression it causes

A :class:`~newsletter.bounces.parse.Report` says what a report claims about one
address; :mod:`newsletter.bounces.intake` matches it to a subscriber and a day,
stores it in the state database and applies the policy.
"""

from __future__ import annotations

from newsletter.bounces.parse import COMPLAINT, HARD, KINDS, SOFT, Report, parse_report

__all__ = ["COMPLAINT", "HARD", "KINDS", "SOFT", "Report", "parse_report"]
