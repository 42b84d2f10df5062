"""The delivery ledger: what was sent to whom, per day. It lives in the state database;
:mod:`newsletter.state` owns it (this name is kept for callers that say "ledger").

One row per (day, subscriber address) in ``deliveries``: ``pending`` (claimed or handed to
the backend, outcome not yet known), ``sent`` (the server or API took it) or ``failed``
(``permanent`` 1 when retrying will not help).

Who sends a row is decided by a claim (:meth:`newsletter.state.State.claim`), never by a
read-then-write check, so any number of concurrent sends deliver each row at most once.

The crash window: if the process dies after the server accepted a message but before
its row became ``sent``, the row stays ``pending`` under the dead process's claim; once
that claim's lease has run out a rerun sends that subscriber again. The window is at most
the messages in flight when the process died (one per SMTP connection, one API batch for
HTTP providers). Such a resend carries the same ``Message-ID`` as the first copy, so mail
clients thread the two as one and systems that de-duplicate by Message-ID (Gmail among
them) drop it; Resend batches also carry an ``Idempotency-Key`` built from the
Message-IDs, so Resend itself drops the replay.
"""

from __future__ import annotations

from newsletter.state import FAILED, PENDING, SENT, SQLITE_PREFIX, Delivery, State

Ledger = State
"""``Ledger(state_url)`` opens the state database (:class:`newsletter.state.State`)."""

__all__ = ["FAILED", "PENDING", "SENT", "SQLITE_PREFIX", "Delivery", "Ledger"]
