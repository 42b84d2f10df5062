"""Where the subscriber list lives: the admin's YAML file (:class:`YamlStore`, edited by
:mod:`newsletter.listfile`) or the state database's table (:class:`StateStore`, read in
batches by row id so memory stays flat on long lists), chosen by the ``subscribers``
setting (:func:`open_store`). Both load through :mod:`newsletter.subscribers`' validation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from newsletter.errors import SubscribersError
from newsletter.models import Subscriber, email_key
from newsletter.subscribers import Validator, check_entry, gc_paused, load_subscribers, refuse_if

if TYPE_CHECKING:
    from newsletter.state import StateURL


class ListEditor(Protocol):
    """An open list being edited (a YAML document or the state database's table)."""

    def emails(self) -> list[str]: ...
    def find(self, email: str) -> int | None: ...
    def current(self, email: str) -> dict[str, Any]: ...
    def add(self, fields: Mapping[str, Any]) -> None: ...
    def remove(self, email: str) -> bool: ...
    def update(self, email: str, changes: Mapping[str, Any]) -> None: ...


class SubscriberStore(Protocol):
    """Where the list lives: ``load`` it validated, or ``edit`` it under a lock."""

    @property
    def label(self) -> str: ...  # the file or database, as messages name it
    def load(self, known_topics: Iterable[str] | None) -> list[Subscriber]: ...
    def batches(self, known_topics: Iterable[str] | None) -> Iterator[list[Subscriber]]: ...
    def edit(
        self, known_topics: Iterable[str] | None, *, create: bool = True
    ) -> contextlib.AbstractContextManager[ListEditor]: ...


@dataclass(frozen=True)
class YamlStore:
    """The admin's YAML file (:mod:`newsletter.listfile` edits it)."""

    path: str
    group: str | None = None

    @property
    def label(self) -> str:
        return self.path

    def load(self, known_topics: Iterable[str] | None) -> list[Subscriber]:
        return load_subscribers(self.path, known_topics=known_topics)

    def batches(self, known_topics: Iterable[str] | None) -> Iterator[list[Subscriber]]:
        """The list as one batch (a file a person edits is short)."""
        yield self.load(known_topics)

    def edit(
        self, known_topics: Iterable[str] | None, *, create: bool = True
    ) -> contextlib.AbstractContextManager[ListEditor]:
        from newsletter.listfile import edit_subscribers

        return edit_subscribers(
            self.path, known_topics=known_topics, create=create, group=self.group
        )


STATE = "state"
"""The ``subscribers`` setting that keeps the list in the state database."""


def is_database(where: str) -> bool:
    """Whether the ``subscribers`` setting names the state database rather than a file."""
    return where == STATE or "://" in where


def open_store(where: str, *, state: str | StateURL, group: str | None = None) -> SubscriberStore:
    """The store the ``subscribers`` setting names: ``state`` (the state database at
    ``state``), a database URL, or the path of a YAML file."""
    if is_database(where):
        if where == STATE and not state:
            raise SubscribersError("subscribers: state needs the 'state' setting (a URL)")
        return StateStore(state if where == STATE else where)
    return YamlStore(where, group)


@dataclass(frozen=True)
class StateStore:
    """The list kept in the state database: validated in batches of SUBSCRIBER_BATCH read
    by row id, edited row by row (adds in one transaction at the end of the edit)."""

    url: str | StateURL
    batch: int = 0
    """Entries read per query (0: the state module's SUBSCRIBER_BATCH)."""

    @property
    def label(self) -> str:
        from newsletter.state import StateURL, parse_state_url

        url = self.url if isinstance(self.url, StateURL) else parse_state_url(self.url)
        return url.display()

    def find(self, address: str) -> Subscriber | None:
        """The subscriber ``address`` (the web app's lookup), or None when absent or invalid."""
        from newsletter.state import State

        with State(self.url) as state:
            entry = state.subscriber_entry(address)
        return check_entry(entry)[0] if entry is not None else None

    def batches(self, known_topics: Iterable[str] | None) -> Iterator[list[Subscriber]]:
        """The valid subscribers, a batch at a time (memory stays flat on long lists);
        problems are raised as SubscribersError after the last batch, naming row ids."""
        from newsletter.state import SUBSCRIBER_BATCH, State

        topics = frozenset(known_topics) if known_topics is not None else None
        validator = Validator(self.label, topics, unique=True)
        size, after = self.batch or SUBSCRIBER_BATCH, 0
        with State(self.url) as state:
            while batch := state.subscriber_batch(after=after, limit=size):
                after = batch[-1][0]
                entries = [(row, tuple((k, v, row) for k, v in e.items())) for row, e in batch]
                yield [s for s in map(validator.entry, entries) if s is not None]
        refuse_if(self.label, validator.problems)

    def load(self, known_topics: Iterable[str] | None) -> list[Subscriber]:
        with gc_paused():
            batches = list(self.batches(known_topics))
        return [sub for batch in batches for sub in batch]

    @contextlib.contextmanager
    def edit(
        self, known_topics: Iterable[str] | None, *, create: bool = True
    ) -> Iterator[ListEditor]:
        from newsletter.state import State

        with State(self.url) as state:
            editor = _StateList(state, self.label)
            yield editor
            state.add_subscribers(editor.added)


class _StateList:
    """A list kept in the database, being edited (see :class:`ListEditor`)."""

    def __init__(self, state: Any, source: str) -> None:
        self._state = state
        self.source = source
        self.added: list[dict[str, Any]] = []
        self._index: dict[str, int] | None = None
        self._emails: list[str] = []

    def emails(self) -> list[str]:
        return [self._emails[i] for i in self._load_index().values()]

    def find(self, email: str) -> int | None:
        return self._load_index().get(email_key(email))

    def current(self, email: str) -> dict[str, Any]:
        entry = self._state.subscriber_entry(email)
        if entry is None:
            raise SubscribersError(f"{self.source}: {email} is not in the list")
        return dict(entry)

    def add(self, fields: Mapping[str, Any]) -> None:
        email = str(fields.get("email", ""))
        if self.find(email) is not None:
            raise SubscribersError(f"{self.source}: {email} is already subscribed")
        self._load_index()[email_key(email)] = len(self._emails)
        self._emails.append(email)
        self.added.append({k: v for k, v in fields.items() if v is not None})

    def remove(self, email: str) -> bool:
        self._index = None
        return bool(self._state.remove_subscriber(email))

    def update(self, email: str, changes: Mapping[str, Any]) -> None:
        merged = {**self.current(email), **changes}
        self._state.update_subscriber(email, {k: v for k, v in merged.items() if v is not None})
        self._index = None

    def _load_index(self) -> dict[str, int]:
        if self._index is None:
            self._emails = self._state.subscriber_emails() + [a["email"] for a in self.added]
            self._index = {email_key(e): i for i, e in enumerate(self._emails)}
        return self._index
