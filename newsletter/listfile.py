"""Editing the admin's ``subscribers.yaml`` in place: comments, order and quoting kept.

:func:`edit_subscribers` opens the list under an exclusive lock on ``<file>.lock``,
checks it with libyaml first (:mod:`newsletter.yamlfile`: aliases and duplicate keys are
refused), round-trips it through ruamel.yaml (:class:`SubscriberList`), validates the
result with :func:`newsletter.subscribers.parse_subscribers` (an edit that would break
the list is refused and leaves the file alone), keeps the previous version as
``<file>.bak`` and replaces the file atomically (:func:`newsletter.files.atomic_write`:
a new file is created 0600, or 0640 for the configured group). A full disk ends in an
``OSError`` with the old file intact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from newsletter import yamlfile
from newsletter.errors import SubscribersError
from newsletter.files import atomic_write, file_lock
from newsletter.models import email_key
from newsletter.subscribers import (
    EMPTY_LIST,
    FIELDS,
    LIST_KEY,
    default_topic_names,
    parse_subscribers,
)

BACKUP_SUFFIX = ".bak"
"""The previous version of the file after an edit: ``subscribers.yaml.bak``."""

DEFAULT_INDENT = 4
"""Indentation of an entry's fields in a new file (``  - email: ...``)."""

DEFAULT_OFFSET = 2
"""Indentation of an entry's dash in a new file."""


class SubscriberList:
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
        self._yaml.representer.ignore_aliases = lambda data: True  # never write &anchors
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

    def add(self, fields: Mapping[str, Any], *, new: bool = False) -> None:
        """Append an entry; SubscribersError if the address is already there (not looked
        for when the caller knows it is ``new``)."""
        email = str(fields.get("email", ""))
        if not new and self.find(email) is not None:
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

    def _yaml_value(self, value: Any, *, quoted: bool = False) -> Any:
        if isinstance(value, list | tuple):
            seq = self._seq_type(_scalar(str(v), quoted=quoted) for v in value)
            seq.fa.set_flow_style()
            return seq
        return _scalar(value) if isinstance(value, str) else value


def _scalar(text: str, *, quoted: bool = False) -> Any:
    """``text`` as ruamel should write it: double-quoted (with escapes) when asked, or
    when it holds a character that is not plain printable text (NEL, a line or
    paragraph separator, a control character), which plain style would change."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if quoted or not text.isprintable() or "\x85" in text:
        return DoubleQuotedScalarString(text)
    return text


def _insert_position(keys: list[str], key: str) -> int:
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
    group: str | None = None,
) -> Iterator[SubscriberList]:
    """Edit the list at ``path`` under its lock; saved when the block ends without error.

    The file is checked by libyaml first (aliases and duplicate keys refused), then
    round-tripped by ruamel.yaml (comments and layout kept). The new text must
    validate (else SubscribersError and nothing is written); the old version is kept
    as ``<path>.bak``; the file is replaced atomically (a new one is created 0600, or
    0640 for ``group``).
    """
    target = Path(path)
    source = str(path)
    if known_topics is None:
        known_topics = default_topic_names()
    with file_lock(target):
        try:
            old: bytes | None = target.read_bytes()
        except FileNotFoundError:
            if not create:
                raise SubscribersError(f"{source}: subscriber list not found") from None
            old = None
        text = _decoded(old, source) if old is not None else EMPTY_LIST
        try:
            yamlfile.compose(text)
        except yamlfile.YamlProblem as problem:
            where = problem.where(source)
            raise SubscribersError(f"{where}: {problem.reason}; fix it by hand first") from None
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
            atomic_write(os.fspath(target) + BACKUP_SUFFIX, old, group=group)
        atomic_write(target, new_text.encode("utf-8"), group=group)


def _decoded(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubscribersError(f"{source}: not UTF-8 text ({exc.reason})") from None


def render_list(entries: Iterable[Mapping[str, Any]]) -> str:
    """The text of a new list holding ``entries`` (distinct, already validated), in the
    layout the editor writes; empty fields are left out."""
    doc = SubscriberList(EMPTY_LIST)
    for entry in entries:
        fields = {k: v for k, v in entry.items() if v not in (None, "", [], ())}
        if isinstance(fields.get("added"), str):
            fields["added"] = dt.date.fromisoformat(fields["added"])
        doc.add(fields, new=True)
    return doc.dump()
