"""The admin's subscriber list: load and validate ``subscribers.yaml``, edit it in place.

Loading reports every problem at once, each as ``file:line: field: reason``, and a
list with any problem loads nothing (:class:`~newsletter.errors.SubscribersError`).
The file is read by libyaml (:mod:`newsletter.yamlfile`: node marks give the lines;
aliases and duplicate keys are refused, so a "billion laughs" file fails at once).
Addresses are checked by :func:`newsletter.addresses.normalize_email`.

The YAML file is sized for lists a person edits (thousands of readers); large lists
(sign-ups at scale, imports of 100 k) live in the state database (``subscribers:
state``), see :mod:`newsletter.cli.subscribers` (``import``/``export`` move a list).

Edits (:func:`edit_subscribers`) keep comments, order and formatting (ruamel.yaml round
trip), hold an exclusive lock on ``<file>.lock`` so two edits cannot interleave, keep
the previous version as ``<file>.bak`` and replace the file atomically
(:func:`newsletter.files.atomic_write`, 0600 for a new file). An edit whose result
would not validate is refused and leaves the file alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import os
import zoneinfo
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from newsletter import yamlfile
from newsletter.addresses import normalize_email as normalize_email
from newsletter.errors import SubscribersError
from newsletter.models import SUMMARY_STYLES, Subscriber, email_key
from newsletter.yamlfile import shown

if TYPE_CHECKING:
    from newsletter.state import StateURL
from newsletter.weekly import FREQUENCIES, WEEKDAYS

FIELDS: tuple[str, ...] = (
    "email",
    "name",
    "topics",
    "keywords",
    "authors",
    "max_papers",
    "summary",
    "timezone",
    "active",
    "added",
    "frequency",
    "weekday",
)
"""Every field an entry may have, in the order the editor writes them."""

LIST_KEY = "subscribers"
"""The top-level key holding the list of entries."""

MAX_PROBLEMS_SHOWN = 1000
"""More problems than this are summarised in one last line."""

EMPTY_LIST = f"{LIST_KEY}:\n"
"""What a new subscriber list starts as."""


_STR = "tag:yaml.org,2002:str"

# --- reading ---------------------------------------------------------------------------


_Field = tuple[Any, Any, int]
"""One ``key: value`` of an entry, with the key's line number."""

_Entry = tuple[int, tuple[_Field, ...] | None]
"""An entry's line and fields; None when the entry is not a mapping (a problem)."""


@dataclass(frozen=True, slots=True)
class _Bad:
    """A value libyaml could not construct (a bad date, say) or that failed its check."""

    reason: str


class _Values:
    """Python values of scalar nodes: strings as they are, others by PyYAML's safe
    constructor (numbers, booleans, dates), each distinct text constructed once."""

    def __init__(self) -> None:
        self._loader = yaml.CSafeLoader("")
        self._cache: dict[tuple[str, str], Any] = {}

    def close(self) -> None:
        self._loader.dispose()

    def of(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR:
                return node.value
            memo = (node.tag, node.value)
            hit = self._cache.get(memo)
            if hit is None:
                hit = self._cache[memo] = self._construct(node)
            return hit
        if isinstance(node, yaml.SequenceNode):
            return [self.of(item) for item in node.value]
        return self._construct(node)

    def _construct(self, node: yaml.Node) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            return _Bad(" ".join(str(getattr(exc, "problem", None) or exc).split()))
        except (ValueError, TypeError, OverflowError) as exc:  # 2026-02-30, unhashable keys
            return _Bad(f"{yamlfile.shown(node.value)} cannot be read: {exc}")


def read_entries(text: str, source: str) -> tuple[list[_Entry], list[str]]:
    """Raw entries (line, fields) of a list's text, and the problems of its shape."""
    try:
        root = yamlfile.compose(text)
    except yamlfile.YamlProblem as problem:
        return [], [f"{problem.where(source)}: {problem.reason}"]
    if root is None:
        return [], []
    line = root.start_mark.line + 1
    if not isinstance(root, yaml.MappingNode):
        return [], [f"{source}:{line}: the file must be a mapping with a '{LIST_KEY}:' list"]
    problems: list[str] = []
    seq: yaml.Node | None = None
    for key_node, value_node in root.value:
        if key_node.value == LIST_KEY:
            seq = value_node
        else:
            problems.append(
                f"{source}:{key_node.start_mark.line + 1}: {yamlfile.shown(key_node.value)}: "
                f"unknown top-level key (only '{LIST_KEY}')"
            )
    if seq is None:
        return [], [*problems, f"{source}:{line}: no '{LIST_KEY}:' key"]
    if isinstance(seq, yaml.ScalarNode) and seq.value in ("", "~", "null"):
        return [], problems
    if not isinstance(seq, yaml.SequenceNode):
        where = f"{source}:{seq.start_mark.line + 1}"
        return [], [*problems, f"{where}: {LIST_KEY}: expected a list of entries"]
    values = _Values()
    try:
        return [_entry(item, values) for item in seq.value], problems
    finally:
        values.close()


def _entry(item: yaml.Node, values: _Values) -> _Entry:
    line = item.start_mark.line + 1
    if not isinstance(item, yaml.MappingNode):
        return (line, None)
    fields = tuple((values.of(k), values.of(v), k.start_mark.line + 1) for k, v in item.value)
    return (line, fields)


# --- validation ------------------------------------------------------------------------


class _Validator:
    def __init__(self, source: str, known_topics: frozenset[str] | None) -> None:
        self.source = source
        self.known_topics = known_topics
        self.problems: list[str] = []
        self.reasons: list[tuple[int, str, str]] = []
        self._zones: dict[str, bool] = {}
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._checks: dict[str, Callable[[Any], Any]] = {
            field: getattr(self, "_check_" + field) for field in FIELDS
        }
        self._seen: dict[str, int] = {}

    def problem(self, line: int, field: str, reason: str) -> None:
        self.problems.append(f"{self.source}:{line}: {field}: {reason}")
        self.reasons.append((line, field, reason))

    def entry(self, entry: _Entry) -> Subscriber | None:
        entry_line, fields = entry
        if fields is None:
            self.problem(entry_line, "entry", "expected a mapping of fields (email: ...)")
            return None
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}
        ok = True
        cache = self._cache
        for key, value, line in fields:
            if key not in _FIELD_SET:
                known = ", ".join(FIELDS)
                self.problem(line, str(key), f"unknown field (known: {known})")
                ok = False
                continue
            lines[key] = line
            # Checks are pure, so a value seen before (same field, type and value) shares
            # its verdict: long lists repeat the same topics, zones and styles.
            kind = type(value)
            memo = (key, kind, tuple(value) if kind is list else value)
            try:
                checked = cache[memo] if key != "email" else self._field(key, value)
            except KeyError:
                checked = cache[memo] = self._field(key, value)
            except TypeError:  # unhashable (a mapping)
                checked = self._field(key, value)
            if type(checked) is _Bad:
                self.problem(line, key, checked.reason)
                ok = False
            values[key] = checked
        email = values.get("email")
        if email is None:
            self.problem(entry_line, "email", "missing (every entry needs an address)")
            return None
        if type(email) is str:
            folded = email.casefold()
            first = self._seen.get(folded)
            if first is not None:
                self.problem(lines["email"], "email", f"duplicate of line {first} ({email})")
                ok = False
            else:
                self._seen[folded] = lines["email"]
        if not ok:
            return None
        return Subscriber(**values)

    def _field(self, key: str, value: Any) -> Any:
        if type(value) is _Bad:
            return value
        try:
            return self._checks[key](value)
        except ValueError as exc:
            return _Bad(str(exc))

    def _check_email(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{shown(value)} is not an address")
        try:
            return normalize_email(value.strip())
        except ValueError as exc:
            raise ValueError(f"{shown(value)}: {exc}") from None

    def _check_name(self, value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"expected text, not {_kind(value)}")
        return str(value).strip()

    def _strings(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ValueError(f"expected a list of text, not {_kind(value)}")
        out: list[str] = []
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"{shown(item)} is not text")
            out.append(item.strip())
        return tuple(out)

    def _check_topics(self, value: Any) -> tuple[str, ...]:
        topics = self._strings(value)
        if self.known_topics is not None:
            unknown = [t for t in topics if t not in self.known_topics]
            if unknown:
                known = ", ".join(sorted(self.known_topics))
                names = ", ".join(shown(t) for t in unknown)
                raise ValueError(f"unknown topic {names} (known: {known})")
        return topics

    def _check_keywords(self, value: Any) -> tuple[str, ...]:
        return self._strings(value)

    def _check_authors(self, value: Any) -> tuple[str, ...]:
        return self._strings(value)

    def _check_max_papers(self, value: Any) -> int | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{shown(value)} is not a whole number of papers >= 1")
        return value

    def _check_summary(self, value: Any) -> str:
        return _choice(value, SUMMARY_STYLES, "tldr")

    def _check_timezone(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"{shown(value)} is not a time zone name")
        known = self._zones.get(value)
        if known is None:
            try:
                zoneinfo.ZoneInfo(value)
                known = True
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                known = False
            self._zones[value] = known
        if not known:
            raise ValueError(f"{shown(value)} is not a known time zone (e.g. Europe/Paris)")
        return value

    def _check_active(self, value: Any) -> bool:
        if value is None:
            return True
        if not isinstance(value, bool):
            raise ValueError(f"{shown(value)} is not true or false")
        return value

    def _check_frequency(self, value: Any) -> str:
        return _choice(value, FREQUENCIES, "daily")

    def _check_weekday(self, value: Any) -> str | None:
        return None if value is None else _choice(value, WEEKDAYS, "")

    def _check_added(self, value: Any) -> dt.date | None:
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{shown(value)} is not a date (YYYY-MM-DD)")


_FIELD_SET = frozenset(FIELDS)


def _choice(value: Any, choices: tuple[str, ...], default: str) -> str:
    """``value`` if it is one of ``choices``, ``default`` when not given; ValueError otherwise."""
    if value is None:
        return default
    if value not in choices:
        raise ValueError(f"{shown(value)} is not one of {' | '.join(choices)}")
    return str(value)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def check_entry(
    fields: Mapping[str, Any],
    *,
    known_topics: Iterable[str] | None = None,
    taken: Container[str] = frozenset(),
) -> tuple[Subscriber | None, list[tuple[str, str]]]:
    """Check one entry given as a mapping (an import row, a sign-up).

    Returns the subscriber, or None with every (field, reason). ``taken`` holds the
    addresses already in the list as :func:`email_key` gives them; those are refused.
    """
    validator = _Validator("", frozenset(known_topics) if known_topics is not None else None)
    sub = validator.entry((0, tuple((key, value, 0) for key, value in fields.items())))
    reasons = [(field, reason) for _line, field, reason in validator.reasons]
    raw = fields.get("email")
    if isinstance(raw, str) and taken:
        try:
            key = email_key(normalize_email(raw.strip()))
        except ValueError:
            key = None
        if key is not None and key in taken:
            reasons.insert(0, ("email", f"{raw.strip()} is already in the list"))
            sub = None
    return sub, reasons


def default_topic_names(taxonomy: str | None = None) -> tuple[str, ...] | None:
    """Names of the topic taxonomy in its order, or None when the topics module is not there."""
    try:
        from newsletter import topics  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    return tuple(t.name for t in topics.load_taxonomy(taxonomy))


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a large list.

    Reading makes millions of small objects and no reference cycles; without this the
    collector rescans the growing list again and again. Measured on 20,000 entries (same
    host, same run): 13.2 s paused against 38.8 s with the collector running.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_subscribers(
    text: str, *, source: str = "<subscribers>", known_topics: Iterable[str] | None = None
) -> list[Subscriber]:
    """Validate the text of a subscriber list; SubscribersError lists every problem."""
    with _no_gc():
        entries, problems = read_entries(text, source)
        validator = _Validator(
            source, frozenset(known_topics) if known_topics is not None else None
        )
        subscribers = [s for s in map(validator.entry, entries) if s is not None]
    _refuse_if(source, problems + validator.problems)
    return subscribers


def _refuse_if(source: str, problems: list[str]) -> None:
    """SubscribersError listing ``problems`` (the first MAX_PROBLEMS_SHOWN), if any."""
    if problems:
        listed = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            listed.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more")
        count = len(problems)
        raise SubscribersError(
            f"{source}: {count} problem{'s' if count != 1 else ''}; nothing was loaded", listed
        )


def load_subscribers(
    path: str | os.PathLike[str],
    *,
    known_topics: Iterable[str] | None = None,
    state: str | None = None,
) -> list[Subscriber]:
    """Load and validate the subscriber list at ``path``.

    ``known_topics``: the topic names entries may choose; by default the taxonomy of
    :mod:`newsletter.topics` when that module is there (otherwise topics are not checked).
    Raises SubscribersError listing every problem with ``file:line: field: reason``.
    ``path`` may also name the state database (``state``, with its URL in ``state``, or
    a database URL): the list kept there is read instead (:class:`StateStore`).
    """
    source = str(path)
    if is_database(source):
        return open_store(source, state=state or "").load(known_topics)
    text = read_text(path)
    if known_topics is None:
        known_topics = default_topic_names()
    return parse_subscribers(text, source=source, known_topics=known_topics)


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a list file; SubscribersError when it is missing or not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SubscribersError(f"{path}: subscriber list not found") from None
    except UnicodeDecodeError as exc:
        raise SubscribersError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise SubscribersError(f"{path}: cannot read ({exc.strerror})") from None


# --- where the list lives --------------------------------------------------------------


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
        validator = _Validator(self.label, topics)
        size, after = self.batch or SUBSCRIBER_BATCH, 0
        with State(self.url) as state:
            while batch := state.subscriber_batch(after=after, limit=size):
                after = batch[-1][0]
                entries = [(row, tuple((k, v, row) for k, v in e.items())) for row, e in batch]
                yield [s for s in map(validator.entry, entries) if s is not None]
        _refuse_if(self.label, validator.problems)

    def load(self, known_topics: Iterable[str] | None) -> list[Subscriber]:
        with _no_gc():
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
