"""The reader's own pages: every preference, feedback from the email, resubscribing.

Mounted by :class:`newsletter.web.WebApp` (any WSGI framework can mount it the same
way: :meth:`ReaderPages.handle` takes the method, path, query and form and returns a
:class:`Page`). The preferences token and the short feedback token (signed, from each
email; :mod:`newsletter.tokens`) are the only credentials::

    GET  /preferences?token=T             the form: topics, keywords, followed authors,
                                          papers per digest, summary style, time zone,
                                          frequency and weekday, pause; the feedback
                                          signals given so far (each can be cleared); a
                                          resubscribe button when the address is unsubscribed
    POST /preferences?token=T             save (``do=save``), clear one signal
                                          (``do=clear`` + ``signal`` + ``target``) or all
                                          (``do=clear-all``), resubscribe (``do=resubscribe``:
                                          a confirmation email with a link to /resubscribe)
    GET  /f/F/more/PAPER                  a page with one button: mail scanners follow
         (/less/PAPER, /fewer/TOPIC)      links with GET, so a GET changes nothing
    POST /f/F/more/PAPER                  record the signal (state database, reader_signals)
    GET  /resubscribe?token=C             a confirm button (C: a dated resubscribe token)
    POST /resubscribe?token=C             lift the unsubscribe

A feedback token F names a delivery (its Message-ID, looked up in the state database)
and carries the start of that reader's preferences signature, checked with every key;
PAPER is :func:`newsletter.feedback.paper_ref` of the paper's key.

What the reader sets lives in the state database and wins over the admin's YAML
(:meth:`newsletter.state.State.apply`). Every field is checked and bounded; a bad value
re-shows the form with one line saying what to fix and nothing saved.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal
from urllib.parse import quote, urlencode

import jinja2

from newsletter.feedback import Signal
from newsletter.models import SUMMARY_STYLES, Subscriber, SummaryStyle
from newsletter.state import State
from newsletter.tokens import (
    FEEDBACK_PATH,
    PREFERENCES,
    RESUBSCRIBE,
    UNSUBSCRIBE,
    SigningKeys,
    feedback_base,
    feedback_mac_matches,
    link,
    make_token,
    read_feedback_token,
    read_token,
)
from newsletter.weekly import FREQUENCIES, WEEKDAYS, Frequency, Weekday

MAX_ITEMS = 20
"""Most keywords, and most followed authors, a reader can set."""

MAX_ITEM_CHARS = 100
"""Longest keyword or author name."""

MAX_PAPERS_LIMIT = 100
"""Highest "papers per digest" a reader can choose."""

FEEDBACK_LOOKBACK_DAYS = 30
"""A "more / less like this" link finds its paper among this many most recent stored days."""

RESUBSCRIBE_MAX_AGE = dt.timedelta(days=7)
"""How long a resubscribe confirmation link stays valid."""

STYLE_LABELS: Mapping[str, str] = {
    "tldr": "A short summary of each paper",
    "abstract": "The full abstract",
    "titles": "Titles only",
}
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAY_LABELS: Mapping[str, str] = dict(zip(WEEKDAYS, _DAY_NAMES, strict=True))
SIGNAL_LABELS: Mapping[str, str] = {
    "more": "More like",
    "less": "Less like",
    "fewer_topic": "Fewer papers on",
}
_SIGNAL_WORDS: Mapping[str, Signal] = {"more": "more", "less": "less", "fewer": "fewer_topic"}
"""The signal's word in a feedback link: ``/f/<token>/<word>/<paper or topic>``."""

MAX_TARGET_CHARS = MAX_ITEM_CHARS * 3
"""A feedback link's paper or topic is cut beyond this (topic names are shorter)."""

Form = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Page:
    """What a request gets: an HTTP status line and an HTML body."""

    status: str
    body: bytes


INVALID_LINK = Page("400 Bad Request", b"")
"""What a bad or expired token gets: the mounting app shows its own "link not valid" page
(one answer for every bad token, whichever page it was for)."""


@dataclass(frozen=True)
class PageTemplate:
    """One of the package's page templates (``newsletter/data``) and what every page made
    from it shows: the one way the web app and the reader's pages render a page."""

    template: jinja2.Template
    common: Mapping[str, Any]

    @classmethod
    def load(cls, name: str, **common: Any) -> PageTemplate:
        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        text = resources.files("newsletter.data").joinpath(name).read_text("utf-8")
        return cls(env.from_string(text), {"notice": "", "error": "", "message": "", **common})

    def page(self, status: str, page: str, heading: str, **values: Any) -> Page:
        """The page ``page`` (the template's switch) under ``heading``, with ``values``."""
        context = {**self.common, "page": page, "heading": heading, **values}
        return Page(status, self.template.render(context).encode("utf-8"))


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _first(values: Form, name: str) -> str:
    got = values.get(name) or [""]
    return got[0]


def _lines(text: str, what: str) -> list[str]:
    """One item per line (or comma-separated keywords), stripped, deduplicated, bounded."""
    items: list[str] = []
    for line in text.replace("\r", "\n").split("\n"):
        item = " ".join(line.split())
        if item and item not in items:
            if len(item) > MAX_ITEM_CHARS:
                raise ValueError(f"{what}: {item[:30]}… is longer than {MAX_ITEM_CHARS} characters")
            if any(ord(ch) < 32 for ch in item):
                raise ValueError(f"{what}: control characters are not allowed")
            items.append(item)
    if len(items) > MAX_ITEMS:
        raise ValueError(f"{what}: at most {MAX_ITEMS}, one per line")
    return items


@dataclass(frozen=True)
class _Choices:
    topics: list[str]
    keywords: list[str]
    authors: list[str]
    max_papers: int | Literal["all"]
    summary: SummaryStyle
    timezone: str
    frequency: Frequency
    weekday: Weekday
    paused: bool


@dataclass
class ReaderPages:
    """The pages above, over the state database."""

    store: State
    secret: bytes
    topics: Sequence[str] = ()
    title: str = "Daily Papers"
    lookup: Callable[[str], Subscriber | None] | None = None
    """The admin's entry for an address (the values the form starts from)."""
    base_url: str = "http://localhost:8080"
    send_confirmation: Callable[[str, str], None] | None = None
    """Sends (address, URL) the resubscribe confirmation; None: resubscribing is not offered."""
    default_weekday: Weekday = "fri"
    today: Callable[[], dt.date] = dt.date.today
    keys: SigningKeys | None = None
    """Every key a link may be signed with (key rotation); None: ``secret`` alone."""
    message_domain: str = ""
    """The domain of the Message-IDs of the emails sent (the sender address's): a
    feedback token names its delivery by the Message-ID's hash."""
    _pages: PageTemplate = field(init=False, repr=False)

    PATHS = frozenset({"/preferences", "/resubscribe"})
    FEEDBACK_PREFIX = f"/{FEEDBACK_PATH}/"
    """Feedback links: ``/f/<token>/<more|less|fewer>/<paper or topic>``."""

    def __post_init__(self) -> None:
        self._pages = PageTemplate.load("reader.html.j2", title=self.title)

    # -- the mount ----------------------------------------------------------------------

    def handle(self, method: str, path: str, query: Form, form: Form) -> Page | None:
        """The page for a request, or None when the path is not one of :attr:`PATHS`."""
        feedback = path.startswith(self.FEEDBACK_PREFIX)
        if path not in self.PATHS and not feedback:
            return None
        if method not in ("GET", "POST"):
            return self._error("405 Method Not Allowed", "Not allowed.")
        if feedback:
            return self._feedback(method, path[len(self.FEEDBACK_PREFIX) :])
        if path == "/resubscribe":
            return self._resubscribe(method, query)
        address = read_token(self.keys or self.secret, _first(query, "token"), PREFERENCES)
        if address is None:
            return self._invalid()
        email = address[0]
        if method == "GET":
            return self._form(query, email)
        action = _first(form, "do") or "save"
        if action == "save":
            return self._save(query, email, form)
        if action == "clear":
            self.store.clear_signals(
                email, signal=_first(form, "signal"), target=_first(form, "target")
            )
            return self._form(query, email, notice="That signal is cleared.")
        if action == "clear-all":
            self.store.clear_signals(email)
            return self._form(query, email, notice="Every signal is cleared.")
        if action == "resubscribe":
            return self._ask_resubscribe(email)
        return self._error("400 Bad Request", "Unknown action.")

    # -- rendering ----------------------------------------------------------------------

    def _page(self, status: str, page: str, heading: str, **values: Any) -> Page:
        return self._pages.page(status, page, heading, **values)

    def _error(self, status: str, message: str) -> Page:
        return self._page(status, "message", "Sorry", message=message)

    @staticmethod
    def _invalid() -> Page:
        return INVALID_LINK

    @staticmethod
    def _action(query: Form, **extra: str) -> str:
        return "?" + urlencode({"token": _first(query, "token"), **extra})

    # -- the form -----------------------------------------------------------------------

    def _current(self, email: str) -> _Choices:
        sub = self.lookup(email) if self.lookup is not None else None
        if sub is None:
            sub = Subscriber(email)
        overlay = self.store.preferences(email)
        if overlay is not None:
            sub = overlay.laid_over(sub)
        return _Choices(
            topics=list(sub.topics),
            keywords=list(sub.keywords),
            authors=list(sub.authors),
            max_papers=sub.max_papers if sub.max_papers is not None else "all",
            summary=sub.summary,
            timezone=sub.timezone or "",
            frequency=sub.frequency,
            weekday=sub.weekday or self.default_weekday,
            paused=bool(overlay and overlay.paused),
        )

    def _form(
        self,
        query: Form,
        email: str,
        *,
        status: str = "200 OK",
        shown: _Choices | None = None,
        **extra: Any,
    ) -> Page:
        choices = shown or self._current(email)
        unsubscribe = link(self.base_url, UNSUBSCRIBE, make_token(self.secret, email, UNSUBSCRIBE))
        return self._page(
            status,
            "preferences",
            "Your preferences",
            email=email,
            action=self._action(query),
            topics=self.topics,
            c=choices,
            styles=[(s, STYLE_LABELS[s]) for s in SUMMARY_STYLES],
            weekdays=list(WEEKDAY_LABELS.items()),
            signals=[(SIGNAL_LABELS[s.signal], s) for s in self.store.signals(email)],
            unsubscribed=self.store.is_suppressed(email),
            can_resubscribe=self.send_confirmation is not None,
            unsubscribe_url=unsubscribe,
            max_limit=MAX_PAPERS_LIMIT,
            **extra,
        )

    def _parse(self, form: Form) -> _Choices:
        chosen = list(form.get("topic", []))
        unknown = [t for t in chosen if t not in self.topics]
        if unknown:
            raise ValueError("Topics: please choose from the list.")
        summary = _first(form, "summary") or "tldr"
        if summary not in SUMMARY_STYLES:
            raise ValueError("Summary: please choose from the list.")
        frequency = _first(form, "frequency") or "daily"
        if frequency not in FREQUENCIES:
            raise ValueError("Frequency: daily or weekly.")
        weekday = _first(form, "weekday") or self.default_weekday
        if weekday not in WEEKDAYS:
            raise ValueError("Weekday: please choose from the list.")
        papers_text = _first(form, "max_papers").strip()
        max_papers: int | Literal["all"] = "all"
        if papers_text and papers_text != "all":
            if not papers_text.isdigit() or not 1 <= int(papers_text) <= MAX_PAPERS_LIMIT:
                raise ValueError(
                    f"Papers per digest: a number from 1 to {MAX_PAPERS_LIMIT}, or empty for all."
                )
            max_papers = int(papers_text)
        timezone = _first(form, "timezone").strip()
        if timezone and timezone not in _zones():
            raise ValueError("Time zone: a name like Europe/Berlin or America/New_York.")
        return _Choices(
            topics=[t for t in self.topics if t in chosen],
            keywords=_lines(_first(form, "keywords"), "Keywords"),
            authors=_lines(_first(form, "authors"), "Authors"),
            max_papers=max_papers,
            summary=summary,
            timezone=timezone,
            frequency=frequency,
            weekday=weekday,
            paused=_first(form, "paused") in ("1", "on", "yes", "true"),
        )

    def _save(self, query: Form, email: str, form: Form) -> Page:
        try:
            c = self._parse(form)
        except ValueError as exc:
            return self._form(query, email, status="400 Bad Request", error=str(exc))
        given = set(form)  # a field the form did not send stays as it was in the list
        self.store.set_preferences(
            email,
            topics=c.topics,
            summary=c.summary,
            paused=c.paused,
            keywords=c.keywords if "keywords" in given else None,
            authors=c.authors if "authors" in given else None,
            max_papers=c.max_papers if "max_papers" in given else None,
            timezone=(c.timezone or None) if "timezone" in given else None,
            frequency=c.frequency if "frequency" in given else None,
            weekday=c.weekday if "weekday" in given else None,
        )
        notice = "Saved. Your emails are paused." if c.paused else "Saved."
        return self._form(query, email, notice=notice)

    # -- feedback -----------------------------------------------------------------------

    def _feedback(self, method: str, rest: str) -> Page:
        """``/f/<token>/<word>/<target>``: the token's delivery, its reader checked by the
        MAC; then a one-button page (GET) or the signal recorded (POST)."""
        token, _, rest = rest.partition("/")
        word, _, target = rest.partition("/")
        signal = _SIGNAL_WORDS.get(word)
        found = read_feedback_token(token)
        if signal is None or not target or found is None or not self.message_domain:
            return self._invalid()
        message_hex, mac = found
        delivery = self.store.delivery_for_message_id(f"<{message_hex}@{self.message_domain}>")
        if delivery is None or not feedback_mac_matches(self.keys or self.secret, delivery[0], mac):
            return self._invalid()
        email = delivery[0]
        target = target[:MAX_TARGET_CHARS]
        prefs = link(self.base_url, PREFERENCES, make_token(self.secret, email, PREFERENCES))
        if signal == "fewer_topic":
            what, paper = target, None
        else:
            paper = self.store.find_paper(target, days=FEEDBACK_LOOKBACK_DAYS)
            if paper is None:
                return self._page(
                    "404 Not Found",
                    "message",
                    "Paper not found",
                    message="That paper is no longer in our records; nothing was changed.",
                )
            what = paper.title
        if method == "GET":
            action = f"{feedback_base(self.base_url)}{token}/{word}/{quote(target, safe='')}"
            return self._page(
                "200 OK",
                "feedback",
                "Your feedback",
                label=SIGNAL_LABELS[signal],
                what=what,
                signal=signal,
                action=action,
                preferences_url=prefs,
            )
        self.store.record_signal(email, signal, paper.key if paper else target, paper=paper)
        return self._page(
            "200 OK",
            "feedback-saved",
            "Thank you",
            label=SIGNAL_LABELS[signal],
            what=what,
            preferences_url=prefs,
        )

    # -- resubscribing ------------------------------------------------------------------

    def _ask_resubscribe(self, email: str) -> Page:
        if self.send_confirmation is None:
            return self._error("400 Bad Request", "Please ask the sender to add you back.")
        if not self.store.is_suppressed(email):
            return self._page("200 OK", "message", "You are subscribed", message="Nothing to do.")
        token = make_token(self.secret, email, RESUBSCRIBE, issued=self.today())
        self.send_confirmation(email, link(self.base_url, "resubscribe", token))
        return self._page(
            "200 OK",
            "message",
            "Check your inbox",
            message=f"A link to confirm is on its way to {email}.",
        )

    def _resubscribe(self, method: str, query: Form) -> Page:
        found = read_token(
            self.keys or self.secret,
            _first(query, "token"),
            RESUBSCRIBE,
            max_age=RESUBSCRIBE_MAX_AGE,
            today=self.today(),
        )
        if found is None:
            return self._invalid()
        email = found[0]
        if method == "GET":
            return self._page(
                "200 OK", "resubscribe", "Resubscribe", email=email, action=self._action(query)
            )
        self.store.unsuppress(email, source="resubscribe")
        return self._page(
            "200 OK",
            "message",
            "Welcome back",
            message=f"{email} gets {self.title} again from the next send.",
        )
