"""The exceptions a user can cause, one tree, each printed by the CLI as one line.

::

    NewsletterError
     ├── ConfigError           a bad or missing setting, a missing secret
     ├── SourceError           a source could not give a day's papers
     │    ├── SourceFormatError    the answer was not what the source speaks
     │    └── SourceUnavailable    network, timeout, HTTP error after retries
     ├── SubscribersError      the subscriber list is broken (all problems listed)
     ├── TemplateError         a template does not render
     ├── DeliveryError         the mail backend refused the run
     │    ├── AuthError            bad credentials: the run stops at once
     │    └── TransientError       worth retrying later
     ├── LedgerError           the state database is unusable
     ├── ReportError           a delivery report that cannot be read (too large, broken)
     ├── MailboxError          a bounce mailbox cannot be read (missing, login refused)
     └── BrowserError          headless Chromium is missing or failed (preview --screenshot)
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(NewsletterError):
    """A setting is missing, malformed or inconsistent."""


class SourceError(NewsletterError):
    """A source could not produce a day's papers."""


class SourceFormatError(SourceError):
    """The source answered, but not in the format it should (HTML error page, bad JSON...)."""


class SourceUnavailable(SourceError):
    """The source could not be reached, or kept failing after retries."""


class SubscribersError(NewsletterError):
    """The subscriber list has problems; ``problems`` lists every one of them."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems or []


class TemplateError(NewsletterError):
    """A template is missing or fails to render."""


class DeliveryError(NewsletterError):
    """The mail backend failed in a way that affects the whole run."""


class AuthError(DeliveryError):
    """The backend refused our credentials."""


class TransientError(DeliveryError):
    """A failure a later retry may not see (4xx SMTP, 429/5xx HTTP, timeouts)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LedgerError(NewsletterError):
    """The delivery ledger / state database cannot be used."""


class ReportError(NewsletterError):
    """A message that cannot be read as a delivery report (too large, not parseable)."""


class MailboxError(NewsletterError):
    """A bounce mailbox could not be read (missing file, refused login, a broken server)."""


class BrowserError(NewsletterError):
    """Headless Chromium is not installed, did not start, or failed a command."""
