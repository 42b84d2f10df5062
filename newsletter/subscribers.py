"""The admin's subscriber list: load and validate ``subscribers.yaml``, edit it in place.

Loading reports every problem at once, each as ``file:line: field: reason``, and a
list with any problem loads nothing (:class:`~newsletter.errors.SubscribersError`).

Speed: a 100,000-entry list is parsed by a line-based reader of the plain subset of
YAML that such a list is written in (block entries of ``key: value`` lines, plain or
quoted scalars, one-line flow lists and simple block lists). Any line it does not fully
understand sends the whole file to libyaml (``CSafeLoader`` compose, with node marks for
line numbers), so both readers give the same values. Addresses are checked by a strict
pattern of plain ASCII addresses first and by email-validator for everything else; the
pattern only accepts what email-validator accepts, with the same normalised form.

Edits (:func:`edit_subscribers`) keep comments, order and formatting (ruamel.yaml round
trip), hold an exclusive ``fcntl.flock`` on ``<file>.lock`` so two edits cannot
interleave, keep the previous version as ``<file>.bak`` and replace the file atomically
(temporary file in the same folder, fsync, ``os.replace``). An edit whose result would
not validate is refused and leaves the file alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gc
import io
import os
import re
import tempfile
import zoneinfo
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from email_validator import SPECIAL_USE_DOMAIN_NAMES as _SPECIAL_USE_DOMAINS
from email_validator import EmailNotValidError, validate_email

from newsletter.errors import SubscribersError
from newsletter.models import SUMMARY_STYLES, Subscriber, email_key

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
)
"""Every field an entry may have, in the order the editor writes them."""

LIST_KEY = "subscribers"
"""The top-level key holding the list of entries."""

LOCK_SUFFIX = ".lock"
"""The sidecar file an edit locks: ``subscribers.yaml.lock``."""

BACKUP_SUFFIX = ".bak"
"""The previous version of the file after an edit: ``subscribers.yaml.bak``."""

MAX_PROBLEMS_SHOWN = 1000
"""More problems than this are summarised in one last line."""

_STR = "tag:yaml.org,2002:str"

# --- addresses -------------------------------------------------------------------------

_FAST_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_MAX_LOCAL = 64
# Special-use names email-validator refuses (localhost, test, ...): one-label names are
# checked against the last label of the domain, any dotted ones by suffix.
_SPECIAL_LABELS = frozenset(d for d in _SPECIAL_USE_DOMAINS if "." not in d)
_SPECIAL_DOTTED = tuple(d for d in _SPECIAL_USE_DOMAINS if "." in d)
_MAX_ADDRESS = 254


def _fast_email(address: str) -> str | None:
    """The normalised address when it is a plain ASCII address email-validator accepts."""
    if len(address) > _MAX_ADDRESS or not _FAST_EMAIL.fullmatch(address):
        return None
    local, _, domain = address.partition("@")
    domain = domain.lower()
    if len(local) > _MAX_LOCAL or "--" in domain:
        return None
    if domain[domain.rfind(".") + 1 :] in _SPECIAL_LABELS:
        return None
    for special in _SPECIAL_DOTTED:
        if domain == special or domain.endswith("." + special):
            return None
    return f"{local}@{domain}"


def normalize_email(address: str) -> str:
    """The normalised form of ``address`` (domain lowercased, an internationalised
    domain in punycode), or ValueError with the reason.

    Syntax only, no DNS: email-validator with ``check_deliverability=False``.
    """
    fast = _fast_email(address)
    if fast is not None:
        return fast
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    if result.ascii_email is None:
        raise ValueError(
            "the part before the @ has non-ASCII characters, which needs SMTPUTF8; "
            "this mailer sends ASCII addresses only"
        )
    # An internationalised domain is kept in its ASCII (punycode) form, which every
    # mail server and provider accepts.
    return result.ascii_email


# --- reading: both readers produce the same raw entries --------------------------------


_Field = tuple[Any, Any, int]
"""One ``key: value`` of an entry, with the key's line number."""

_Entry = tuple[int, tuple[_Field, ...] | None]
"""An entry's line and fields; None when the entry is not a mapping (a problem)."""


class _Decline(Exception):
    """The fast reader met something outside its subset."""


_ENTRY_START = re.compile(r"( *)- +([A-Za-z_][A-Za-z0-9_]*):(?: +(.*))?")
_KEY_LINE = re.compile(r"( *)([A-Za-z_][A-Za-z0-9_]*):(?: +(.*))?")
_ITEM_LINE = re.compile(r"( *)- +(.*)")
_TOP_LINE = re.compile(LIST_KEY + r":(?: +(#.*)?)?")
_SKIP = re.compile(r" *(?:#.*)?")
_SINGLE = re.compile(r"'((?:[^']|'')*)'")
_DOUBLE = re.compile(r'"([^"\\]*)"')
_AFTER = re.compile(r"(?: +#.*| *)")
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
"""Characters YAML does not allow in a stream (PyYAML's and libyaml's check)."""
_ESCAPED_BREAKS = frozenset({0x09, 0x0A, 0x0D, 0x85, 0x2028, 0x2029, 0xFEFF})
"""Allowed, but tabs, line breaks or a BOM to YAML: always written as escapes."""
_FAST_REFUSED = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
    "\U00010000-\U0010ffff]"
)
"""What the fast reader leaves to libyaml: non-printables, and NEL, LS, PS (line breaks
to YAML) and BOM."""
_NOT_PLAIN = re.compile(
    "[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
"""Text with any other character (tab, line break...) is written double-quoted."""
_PLAIN_BAD_START = frozenset("-?:,[]{}#&*!|>'\"%@`")


class _Scalars:
    """Resolves plain scalars exactly as PyYAML's safe loader does, with a cache."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self._resolvers = yaml.resolver.Resolver.yaml_implicit_resolvers
        # Text starting with any other character is a string (no resolver looks at it).
        self._triggers = (
            frozenset(k for k in self._resolvers if k) if None not in (self._resolvers) else None
        )

    def plain(self, text: str) -> Any:
        if text and self._triggers is not None and text[0] not in self._triggers:
            return text
        try:
            return self._cache[text]
        except KeyError:
            pass
        resolvers = list(self._resolvers.get(text[0] if text else "", []))
        resolvers += self._resolvers.get(None, [])
        tag = _STR
        for candidate, regexp in resolvers:
            if regexp.match(text):
                tag = candidate
                break
        if tag == _STR:
            value: Any = text
        else:
            try:
                value = yaml.load(text, Loader=yaml.CSafeLoader)
            except Exception:  # a bad date, say: the slow reader reports it with its line
                raise _Decline from None
        self._cache[text] = value
        return value

    def value(self, text: str | None, *, flow: bool = False) -> Any:
        """One scalar, a one-line flow list or (None) nothing; _Decline otherwise."""
        if text is None:
            return None
        if "\t" in text:
            raise _Decline
        first = text[:1]
        if first == "'":
            m = _SINGLE.match(text)
            if not m or not _AFTER.fullmatch(text, m.end()):
                raise _Decline
            return m.group(1).replace("''", "'")
        if first == '"':
            m = _DOUBLE.match(text)
            if not m or not _AFTER.fullmatch(text, m.end()):
                raise _Decline
            return m.group(1)
        if first == "[" and not flow:
            return self._flow_list(text)
        if flow and any(ch in text for ch in ",[]{}:#"):
            raise _Decline  # a comment or an indicator inside a flow list: libyaml decides
        if first == "#":
            return None
        end = text.find(" #")
        plain = (text if end < 0 else text[:end]).rstrip()
        if not plain or plain[0] in _PLAIN_BAD_START or ": " in plain or plain.endswith(":"):
            raise _Decline
        return self.plain(plain)

    def _flow_list(self, text: str) -> list[Any]:
        close = text.rfind("]")
        if close < 0 or not _AFTER.fullmatch(text, close + 1):
            raise _Decline
        inner = text[1:close]
        if any(ch in inner for ch in "[]{}\\"):
            raise _Decline
        items: list[Any] = []
        pos = 0
        length = len(inner)
        while True:
            while pos < length and inner[pos] == " ":
                pos += 1
            if pos >= length:
                if items:
                    raise _Decline  # a trailing comma: leave it to libyaml
                return items
            ch = inner[pos]
            if ch in "'\"":
                m = (_SINGLE if ch == "'" else _DOUBLE).match(inner, pos)
                if not m:
                    raise _Decline
                items.append(m.group(1).replace("''", "'") if ch == "'" else m.group(1))
                pos = m.end()
                while pos < length and inner[pos] == " ":
                    pos += 1
                if pos < length and inner[pos] != ",":
                    raise _Decline
            else:
                comma = inner.find(",", pos)
                stop = length if comma < 0 else comma
                items.append(self.value(inner[pos:stop], flow=True))
                pos = stop
            if pos >= length:
                return items
            pos += 1  # the comma
            if pos >= length or not inner[pos:].strip():
                raise _Decline


_SKIP_LINE, _ENTRY_LINE, _KEY, _ITEM = range(4)


def _classify(scalars: _Scalars, line: str) -> tuple[int, int, int, Any, Any, bool]:
    """(kind, indent, key column, key or item, value, opens a block) of one line.

    Tabs are refused by :meth:`_Scalars.value` (and by the indentation patterns, which
    only take spaces); carriage returns never get here.
    """
    m = _ENTRY_START.fullmatch(line)
    kind = _ENTRY_LINE
    if not m:
        m = _KEY_LINE.fullmatch(line)
        kind = _KEY
    if m:
        key = m.group(2)
        if key not in _FIELD_SET and not isinstance(scalars.plain(key), str):
            raise _Decline  # a key like ``yes:`` that YAML reads as a bool
        raw = m.group(3)
        opens = raw is None or raw.startswith("#")
        return (kind, len(m.group(1)), m.start(2), key, scalars.value(raw), opens)
    if _SKIP.fullmatch(line):
        return (_SKIP_LINE, 0, 0, None, None, False)
    m = _ITEM_LINE.fullmatch(line)
    if m:
        item = m.group(2)
        if item.startswith("- "):
            raise _Decline
        return (_ITEM, len(m.group(1)), 0, scalars.value(item), None, False)
    raise _Decline


def _read_fast(text: str) -> list[_Entry]:
    """Entries of the plain subset of YAML; _Decline for anything else."""
    return _read_layout(text).entries


@dataclass(frozen=True, slots=True)
class _Layout:
    """What the fast reader saw: the entries and how the file is indented."""

    entries: list[_Entry]
    top_line: int
    """1-based line of ``subscribers:``."""
    seq_indent: int
    """Column of the entries' dashes (-1: no entries)."""
    key_col: int
    """Column of the last entry's keys (-1: no entries)."""


def _read_layout(text: str) -> _Layout:
    """Entries and layout of the plain subset of YAML; _Decline for anything else."""
    scalars = _Scalars()
    if _FAST_REFUSED.search(text):
        raise _Decline  # libyaml refuses the file (and says where) or breaks lines there
    if "\r" in text:
        text = text.replace("\r\n", "\n")  # the same line breaks to YAML
        if "\r" in text:
            raise _Decline  # a lone CR is a line break too: leave it to libyaml
    lines = text.split("\n")
    number = 0
    for number, line in enumerate(lines, 1):  # noqa: B007 - the number is used below
        if _SKIP.fullmatch(line):
            continue
        if not _TOP_LINE.fullmatch(line):
            raise _Decline
        break
    else:
        raise _Decline
    cache: dict[str, tuple[int, int, int, Any, Any, bool]] = {}
    entries: list[_Entry] = []
    fields: list[_Field] = []
    entry_line = 0
    seq_indent = -1
    key_col = -1
    pending: tuple[str, int] | None = None  # a key with no value: a block list may follow
    items: list[Any] | None = None
    item_indent = -1
    start = number
    for number, line in enumerate(lines[start:], start + 1):
        hit = cache.get(line)
        if hit is None:
            hit = _classify(scalars, line)
            cache[line] = hit
        kind, indent, col, key, value, opens = hit
        if kind == _SKIP_LINE:
            continue
        if pending is not None:
            if kind == _ITEM and indent >= key_col and item_indent in (-1, indent):
                # Entries start left of key_col, so this is an item of the pending key.
                item_indent = indent
                if items is None:
                    items = []
                items.append(key)
                continue
            if kind == _ENTRY_LINE and indent >= key_col:
                raise _Decline  # a mapping inside a list
            fields.append((pending[0], items, pending[1]))
            pending = None
        if kind == _ENTRY_LINE:
            if indent != seq_indent:
                if seq_indent >= 0:
                    raise _Decline
                seq_indent = indent
            if entry_line:
                entries.append((entry_line, tuple(fields)))
            fields = []
            entry_line = number
            key_col = col
        elif kind != _KEY or not entry_line or indent != key_col:
            raise _Decline
        if opens:
            pending = (key, number)
            items = None
            item_indent = -1
        else:
            fields.append((key, value, number))
    if pending is not None:
        fields.append((pending[0], items, pending[1]))
    if entry_line:
        entries.append((entry_line, tuple(fields)))
    return _Layout(entries, start, seq_indent, key_col)


def _read_slow(text: str, source: str, problems: list[str]) -> list[_Entry]:
    """Entries through libyaml's composer, with node marks for line numbers."""
    loader = yaml.CSafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            problem = getattr(exc, "problem", None) or str(exc)
            problems.append(f"{where}: invalid YAML: {problem}")
            return []
        if root is None:
            return []

        def construct(node: yaml.Node) -> Any:
            try:
                return loader.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                return _Invalid(str(getattr(exc, "problem", None) or exc))
            except (ValueError, TypeError, OverflowError) as exc:  # 2026-02-30, unhashable keys
                return _Invalid(f"{node.value!r} cannot be read: {exc}")

        line = root.start_mark.line + 1
        if not isinstance(root, yaml.MappingNode):
            problems.append(
                f"{source}:{line}: the file must be a mapping with a '{LIST_KEY}:' list"
            )
            return []
        seq: yaml.Node | None = None
        for key_node, value_node in root.value:
            key = construct(key_node)
            if key == LIST_KEY:
                seq = value_node
            else:
                problems.append(
                    f"{source}:{key_node.start_mark.line + 1}: {key}: unknown top-level key "
                    f"(only '{LIST_KEY}')"
                )
        if seq is None:
            problems.append(f"{source}:{line}: no '{LIST_KEY}:' key")
            return []
        if isinstance(seq, yaml.ScalarNode) and construct(seq) is None:
            return []
        if not isinstance(seq, yaml.SequenceNode):
            problems.append(
                f"{source}:{seq.start_mark.line + 1}: {LIST_KEY}: expected a list of entries"
            )
            return []
        entries: list[_Entry] = []
        for item in seq.value:
            item_line = item.start_mark.line + 1
            if not isinstance(item, yaml.MappingNode):
                entries.append((item_line, None))
                continue
            fields = tuple(
                (construct(k), construct(v), k.start_mark.line + 1) for k, v in item.value
            )
            entries.append((item_line, fields))
        return entries
    finally:
        loader.dispose()


@dataclass(frozen=True, slots=True)
class _Invalid:
    """A value libyaml could not construct (a bad date, say)."""

    reason: str


def read_entries(text: str, source: str) -> tuple[list[_Entry], list[str], bool]:
    """Raw entries, structural problems, and whether the fast reader was used."""
    try:
        return _read_fast(text), [], True
    except _Decline:
        pass
    problems: list[str] = []
    return _read_slow(text, source, problems), problems, False


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
            if key in values or key not in _FIELD_SET:
                self._misplaced(key, line, lines)
                ok = False
                continue
            lines[key] = line
            kind = type(value)
            # Checks are pure, so a value seen before (same field, type and value) shares
            # its verdict; lists are remembered by identity (the fast reader hands out
            # one list object per distinct line).
            if key == "email" or kind is _Invalid:
                checked = self._field(key, value)
            elif kind is list:
                hit = cache.get((key, id(value)))
                if hit is not None and hit[0] is value:
                    checked = hit[1]
                else:
                    checked = self._field(key, value)
                    cache[(key, id(value))] = (value, checked)
            else:
                memo = (key, kind, value)
                try:
                    checked = cache[memo]
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

    def _misplaced(self, key: Any, line: int, lines: Mapping[str, int]) -> None:
        if key not in _FIELD_SET:
            self.problem(line, str(key), f"unknown field (known: {', '.join(FIELDS)})")
        else:
            self.problem(line, key, f"given twice in one entry (first on line {lines[key]})")

    def _field(self, key: str, value: Any) -> Any:
        if type(value) is _Invalid:
            return _Bad(value.reason)
        try:
            return self._checks[key](value)
        except ValueError as exc:
            return _Bad(str(exc))

    def _check_email(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{value!r} is not an address")
        try:
            return normalize_email(value.strip())
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None

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
                raise ValueError(f"{item!r} is not text")
            out.append(item.strip())
        return tuple(out)

    def _check_topics(self, value: Any) -> tuple[str, ...]:
        topics = self._strings(value)
        if self.known_topics is not None:
            unknown = [t for t in topics if t not in self.known_topics]
            if unknown:
                known = ", ".join(sorted(self.known_topics))
                names = ", ".join(repr(t) for t in unknown)
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
            raise ValueError(f"{value!r} is not a whole number of papers >= 1")
        return value

    def _check_summary(self, value: Any) -> str:
        if value is None:
            return "tldr"
        if value not in SUMMARY_STYLES:
            raise ValueError(f"{value!r} is not one of {' | '.join(SUMMARY_STYLES)}")
        return str(value)

    def _check_timezone(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a time zone name")
        known = self._zones.get(value)
        if known is None:
            try:
                zoneinfo.ZoneInfo(value)
                known = True
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                known = False
            self._zones[value] = known
        if not known:
            raise ValueError(f"{value!r} is not a known time zone (e.g. Europe/Paris)")
        return value

    def _check_active(self, value: Any) -> bool:
        if value is None:
            return True
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return value

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
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")


@dataclass(frozen=True, slots=True)
class _Bad:
    """A field that failed its check, and why."""

    reason: str


_FIELD_SET = frozenset(FIELDS)


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

    Reading makes millions of small tuples and no reference cycles; without this the
    collector rescans the growing list again and again (a third of the load time).
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
        entries, problems, _fast = read_entries(text, source)
        validator = _Validator(
            source, frozenset(known_topics) if known_topics is not None else None
        )
        subscribers = [s for s in map(validator.entry, entries) if s is not None]
    problems += validator.problems
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more")
        count = len(problems)
        raise SubscribersError(
            f"{source}: {count} problem{'s' if count != 1 else ''}; nothing was loaded", shown
        )
    return subscribers


def load_subscribers(
    path: str | os.PathLike[str], *, known_topics: Iterable[str] | None = None
) -> list[Subscriber]:
    """Load and validate the subscriber list at ``path``.

    ``known_topics``: the topic names entries may choose; by default the taxonomy of
    :mod:`newsletter.topics` when that module is there (otherwise topics are not checked).
    Raises SubscribersError listing every problem with ``file:line: field: reason``.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SubscribersError(f"{source}: subscriber list not found") from None
    except UnicodeDecodeError as exc:
        raise SubscribersError(f"{source}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise SubscribersError(f"{source}: cannot read ({exc.strerror})") from None
    if known_topics is None:
        known_topics = default_topic_names()
    return parse_subscribers(text, source=source, known_topics=known_topics)


# --- editing ---------------------------------------------------------------------------

EMPTY_LIST = f"{LIST_KEY}:\n"
"""What a new subscriber list starts as."""

DEFAULT_INDENT = 4
"""Indentation of an entry's fields in a new file (``  - email: ...``)."""

DEFAULT_OFFSET = 2
"""Indentation of an entry's dash in a new file."""


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (blocks until the other holder is done)."""
    lock_path = os.fspath(path) + LOCK_SUFFIX
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once: temporary file in the same folder, fsync,
    ``os.replace``, fsync of the folder. On any failure the old file is left as it was."""
    target = Path(path)
    folder = target.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, target.stat().st_mode & 0o777)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _EditedList:
    """What both list editors share: finding an entry that must be there, refusing
    fields the list does not know."""

    source: str

    def find(self, email: str) -> int | None:
        raise NotImplementedError

    def _position(self, email: str) -> int:
        """The index of ``email``'s entry; SubscribersError when it is not in the list."""
        index = self.find(email)
        if index is None:
            raise SubscribersError(f"{self.source}: {email} is not in the list")
        return index

    @staticmethod
    def _check_known(fields: Iterable[str]) -> None:
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise SubscribersError(f"unknown field {', '.join(unknown)}")


class SubscriberList(_EditedList):
    """An open subscriber list being edited; its ruamel.yaml document keeps the comments.

    Get one from :func:`edit_subscribers`, which saves it (validated, atomically) at the end.
    """

    def __init__(self, text: str, *, source: str = "<subscribers>") -> None:
        from ruamel.yaml import YAML
        from ruamel.yaml.comments import CommentedMap, CommentedSeq
        from ruamel.yaml.error import YAMLError
        from ruamel.yaml.util import load_yaml_guess_indent

        self.source = source
        self.changed = False
        self._map_type = CommentedMap
        self._seq_type = CommentedSeq
        self._yaml = YAML()
        self._yaml.preserve_quotes = True
        self._yaml.width = 4096
        try:
            data, indent, offset = load_yaml_guess_indent(text or EMPTY_LIST, yaml=self._yaml)
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise SubscribersError(
                f"{where}: invalid YAML, fix it by hand first: {problem}"
            ) from None
        if data is None:
            data = CommentedMap()
        if not isinstance(data, CommentedMap):
            raise SubscribersError(f"{source}: the file must be a mapping with a '{LIST_KEY}:' key")
        if data.get(LIST_KEY) is None:
            data[LIST_KEY] = CommentedSeq()
        if not isinstance(data[LIST_KEY], CommentedSeq):
            raise SubscribersError(f"{source}: {LIST_KEY}: expected a list of entries")
        if indent is None:
            indent, offset = DEFAULT_INDENT, DEFAULT_OFFSET
        offset = offset or 0
        self._yaml.indent(mapping=max(indent - offset, 2), sequence=indent, offset=offset)
        self._data = data

    @property
    def entries(self) -> Any:
        """The list of entries (a ruamel CommentedSeq of CommentedMaps)."""
        return self._data[LIST_KEY]

    def emails(self) -> list[str]:
        """The addresses in file order, as written."""
        return [str(e.get("email", "")) for e in self.entries if isinstance(e, Mapping)]

    def find(self, email: str) -> int | None:
        """The index of the entry for ``email`` (case-insensitive), or None."""
        wanted = email_key(email)
        for index, entry in enumerate(self.entries):
            if isinstance(entry, Mapping) and email_key(str(entry.get("email", ""))) == wanted:
                return index
        return None

    def current(self, email: str) -> dict[str, Any]:
        """The fields of ``email``'s entry as written."""
        index = self._position(email)
        return {str(k): v for k, v in self.entries[index].items()}

    def add(self, fields: Mapping[str, Any]) -> None:
        """Append an entry; SubscribersError if the address is already there."""
        email = str(fields.get("email", ""))
        if self.find(email) is not None:
            raise SubscribersError(f"{self.source}: {email} is already subscribed")
        entry = self._map_type()
        for key in FIELDS:
            if fields.get(key) is not None:
                entry[key] = self._yaml_value(fields[key], quoted=key == "topics")
        self._check_known(fields)
        self.entries.append(entry)
        self.changed = True

    def remove(self, email: str) -> bool:
        """Remove the entry for ``email``; False when there is none.

        The comment lines above the next entry (stored on this entry's last line by
        ruamel) are kept: they move to the entry before, replacing the ones that
        described the removed entry.
        """
        index = self.find(email)
        if index is None:
            return False
        seq = self.entries
        entry = seq[index]
        trailing = None
        if isinstance(entry, self._map_type) and len(entry):
            trailing = entry.ca.items.get(list(entry)[-1])
        tail = trailing[2] if trailing and len(trailing) > 2 else None
        if index > 0:
            prev = seq[index - 1]
            if isinstance(prev, self._map_type) and len(prev):
                last = list(prev)[-1]
                slot = prev.ca.items.setdefault(last, [None, None, None, None])
                slot[2] = tail
        elif tail is not None and len(seq) > 1:
            tail.value = tail.value.lstrip()
            seq.ca.comment = [None, [tail]]
            holder = self._data.ca.items.get(LIST_KEY)
            if holder is not None and len(holder) > 3:
                holder[3] = [tail]
        elif index == 0:
            seq.ca.comment = None
            holder = self._data.ca.items.get(LIST_KEY)
            if holder is not None and len(holder) > 3:
                holder[3] = None
        del seq[index]
        self.changed = True
        return True

    def update(self, email: str, changes: Mapping[str, Any]) -> None:
        """Set fields of the entry for ``email`` (None removes a field)."""
        index = self._position(email)
        self._check_known(changes)
        entry = self.entries[index]
        for key, value in changes.items():
            if value is None:
                entry.pop(key, None)
            elif key in entry:
                entry[key] = self._yaml_value(value, quoted=key == "topics")
            else:
                position = _insert_position(list(entry), key)
                entry.insert(position, key, self._yaml_value(value, quoted=key == "topics"))
        self.changed = True

    def dump(self) -> str:
        """The document as text, comments and formatting kept."""
        out = io.StringIO()
        self._yaml.dump(self._data, out)
        return out.getvalue()

    def _yaml_value(self, value: Any, *, quoted: bool = False) -> Any:
        if isinstance(value, list | tuple):
            from ruamel.yaml.scalarstring import DoubleQuotedScalarString

            seq = self._seq_type(DoubleQuotedScalarString(v) if quoted else str(v) for v in value)
            seq.fa.set_flow_style()
            return seq
        return value


class TextSubscriberList(_EditedList):
    """A subscriber list edited as lines of text: fast on long lists, every other byte kept.

    Used when the fast reader understands the file (otherwise :class:`SubscriberList`
    round-trips the whole document). Adding writes the new entry in the file's own
    layout; removing cuts the entry with the comment lines just above it; changing an
    entry round-trips only that entry's lines through ruamel.yaml (its comments kept).
    Same methods as SubscriberList.
    """

    def __init__(self, text: str, *, source: str = "<subscribers>") -> None:
        if "\r" in text or not text.endswith("\n"):
            raise _Decline
        self.source = source
        self.changed = False
        self._lines = text.split("\n")[:-1]
        self._load()

    def _load(self) -> None:
        layout = _read_layout("\n".join(self._lines) + "\n")
        self._top = layout.top_line - 1
        self._seq_indent = layout.seq_indent if layout.seq_indent >= 0 else DEFAULT_OFFSET
        self._key_col = layout.key_col if layout.key_col >= 0 else DEFAULT_INDENT
        self._spans: list[tuple[int, int]] = []  # (first line, last content line), 0-based
        self._fields: list[dict[str, Any]] = []
        starts = [line - 1 for line, _fields in layout.entries]
        for index, start in enumerate(starts):
            end = starts[index + 1] - 1 if index + 1 < len(starts) else len(self._lines) - 1
            while end > start and _SKIP.fullmatch(self._lines[end]):
                end -= 1
            self._spans.append((start, end))
        self._index: dict[str, int] | None = None
        for _line, fields in layout.entries:
            values: dict[str, Any] = {}
            for key, value, _number in fields or ():
                values.setdefault(str(key), value)
            self._fields.append(values)

    def emails(self) -> list[str]:
        return [str(f.get("email", "")) for f in self._fields]

    def find(self, email: str) -> int | None:
        if self._index is None:
            self._index = {}
            for index, fields in enumerate(self._fields):
                self._index.setdefault(email_key(str(fields.get("email", ""))), index)
        return self._index.get(email_key(email))

    def current(self, email: str) -> dict[str, Any]:
        """The fields of ``email``'s entry as written."""
        index = self._position(email)
        return dict(self._fields[index])

    def add(self, fields: Mapping[str, Any]) -> None:
        email = str(fields.get("email", ""))
        if self.find(email) is not None:
            raise SubscribersError(f"{self.source}: {email} is already subscribed")
        self._check_known(fields)
        new = _render_entry(fields, self._seq_indent, self._key_col)
        if self._spans:
            at = self._spans[-1][1] + 1
            first, _last = self._spans[-1]
            lead = first
            while lead > 0 and self._leads(self._lines[lead - 1]):
                lead -= 1
            if len(self._spans) > 1 and lead > 0 and not self._lines[lead - 1].strip():
                new = ["", *new]  # entries are separated by blank lines here
        else:
            at = len(self._lines)
            while at > self._top + 1 and not self._lines[at - 1].strip():
                at -= 1
        self._lines[at:at] = new
        self._spans.append((at + (1 if new[0] == "" else 0), at + len(new) - 1))
        self._fields.append({k: v for k, v in fields.items() if v is not None})
        if self._index is not None:
            self._index.setdefault(email_key(email), len(self._fields) - 1)
        self.changed = True

    def remove(self, email: str) -> bool:
        index = self.find(email)
        if index is None:
            return False
        start, end = self._spans[index]
        first = start
        while first > self._top + 1 and self._leads(self._lines[first - 1]):
            first -= 1
        blank = first
        while blank > self._top + 1 and not self._lines[blank - 1].strip():
            blank -= 1
        stop = end + 1
        if index > 0 and blank < first:
            first = blank  # the blank line before goes, the one after stays
        else:
            while stop < len(self._lines) and not self._lines[stop].strip():
                stop += 1
            if stop >= len(self._lines) or index + 1 >= len(self._spans):
                stop = end + 1  # keep blank lines before trailing comments
        del self._lines[first:stop]
        del self._spans[index]
        del self._fields[index]
        self._index = None
        self._shift_after(index - 1, first, first - stop)
        self.changed = True
        return True

    def update(self, email: str, changes: Mapping[str, Any]) -> None:
        index = self._position(email)
        start, end = self._spans[index]
        snippet = "\n".join([f"{LIST_KEY}:", *self._lines[start : end + 1]]) + "\n"
        doc = SubscriberList(snippet, source=self.source)
        doc.update(email, changes)
        new = doc.dump().split("\n")[1:-1]
        self._lines[start : end + 1] = new
        self._spans[index] = (start, start + len(new) - 1)
        fields = dict(self._fields[index])
        for key, value in changes.items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        self._fields[index] = fields
        if "email" in changes:
            self._index = None
        self._shift_after(index, start, len(new) - (end + 1 - start))
        self.changed = True

    def _leads(self, line: str) -> bool:
        """A comment line written at (or left of) the dashes: it introduces the entry below.
        Deeper comments trail the entry above."""
        stripped = line.lstrip(" ")
        return stripped.startswith("#") and len(line) - len(stripped) <= self._seq_indent

    def _shift_after(self, index: int, at: int, delta: int) -> None:
        """Move the spans of entries after ``index`` by ``delta`` lines."""
        for later in range(index + 1, len(self._spans)):
            first, last = self._spans[later]
            if first >= at:
                self._spans[later] = (first + delta, last + delta)

    def dump(self) -> str:
        return "\n".join(self._lines) + "\n"


def _double_quoted(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif _NON_PRINTABLE.match(ch) or code in _ESCAPED_BREAKS:
            if code <= 0xFF:
                out.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _scalar_text(value: Any, *, flow: bool = False, quoted: bool = False) -> str:
    """``value`` as YAML text that the fast reader (and libyaml) read back as ``value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar_text(v, flow=True, quoted=quoted) for v in value) + "]"
    text = str(value)
    if not quoted and text and text == text.strip() and not _NOT_PLAIN.search(text):
        try:
            if _Scalars().value(text, flow=flow) == text:
                return text
        except _Decline:
            pass
    return _double_quoted(text)


def _render_entry(fields: Mapping[str, Any], seq_indent: int, key_col: int) -> list[str]:
    """The lines of a new entry in the file's layout (``  - email: ...``)."""
    lines: list[str] = []
    for key in FIELDS:
        value = fields.get(key)
        if value is None:
            continue
        if lines:
            prefix = " " * key_col
        else:
            prefix = " " * seq_indent + "-" + " " * max(key_col - seq_indent - 1, 1)
        lines.append(f"{prefix}{key}: {_scalar_text(value, quoted=key == 'topics')}")
    return lines


def _insert_position(keys: Sequence[str], key: str) -> int:
    """Where ``key`` goes among ``keys`` to follow FIELDS order."""
    rank = FIELDS.index(key)
    for position, existing in enumerate(keys):
        if existing in FIELDS and FIELDS.index(existing) > rank:
            return position
    return len(keys)


@contextlib.contextmanager
def edit_subscribers(
    path: str | os.PathLike[str],
    *,
    known_topics: Iterable[str] | None = None,
    create: bool = True,
    full_round_trip: bool = False,
) -> Iterator[SubscriberList | TextSubscriberList]:
    """Edit the list at ``path`` under its lock; saved when the block ends without error.

    The new text must validate (else SubscribersError and nothing is written); the old
    version is kept as ``<path>.bak``; the file is replaced atomically. Files the fast
    reader understands are edited as text (:class:`TextSubscriberList`: seconds on
    100,000 entries); others, or ``full_round_trip=True``, through a whole-document
    ruamel.yaml round trip (:class:`SubscriberList`).
    """
    target = Path(path)
    source = str(path)
    if known_topics is None:
        known_topics = default_topic_names()
    with file_lock(target):
        try:
            old = target.read_bytes()
        except FileNotFoundError:
            if not create:
                raise SubscribersError(f"{source}: subscriber list not found") from None
            old = None
        text = old.decode("utf-8-sig") if old is not None else EMPTY_LIST
        doc: SubscriberList | TextSubscriberList
        try:
            if full_round_trip:
                raise _Decline
            doc = TextSubscriberList(text, source=source)
        except _Decline:
            doc = SubscriberList(text, source=source)
        yield doc
        if not doc.changed:
            return
        new_text = doc.dump()
        try:
            parse_subscribers(new_text, source=source, known_topics=known_topics)
        except SubscribersError as exc:
            count = len(exc.problems)
            raise SubscribersError(
                f"{source}: not saved, the list would have {count} "
                f"problem{'s' if count != 1 else ''}",
                exc.problems,
            ) from None
        if old is not None:
            atomic_write(os.fspath(target) + BACKUP_SUFFIX, old)
        atomic_write(target, new_text.encode("utf-8"))
