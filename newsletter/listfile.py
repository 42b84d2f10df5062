"""Editing the admin's ``subscribers.yaml`` in place: comments, order and quoting kept.

:func:`edit_subscribers` opens the list under an exclusive lock on ``<file>.lock``,
checks it with libyaml first (:mod:`newsletter.yamlfile`: aliases and duplicate keys are
refused), edits it with ruamel.yaml (:class:`SubscriberList`: new entries appended as
ruamel writes them, other edits by a round trip of the document), validates the
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

import yaml

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

_YAML_11 = yaml.resolver.Resolver()
"""The tags libyaml gives plain scalars (``newsletter.yamlfile`` reads the list with it)."""
_STR_TAG = "tag:yaml.org,2002:str"


class SubscriberList:
    """An open subscriber list being edited, as text checked by libyaml.

    Entries added to a block list are appended as ruamel.yaml writes them, after the
    list's last line (where a full round trip would put them), and the rest of the text
    is kept as it is: one ``add`` to a 5,000-reader file reads it once with libyaml
    instead of round-tripping it through ruamel's pure-Python parser and emitter
    (``benchmarks.bench_subscribers``). ``remove`` and ``update``, and adds to an empty
    or flow-style list, round-trip the document through ruamel (comments kept).
    Get one from :func:`edit_subscribers`, which saves it (validated, atomically) at the end.
    """

    def __init__(self, text: str, *, source: str = "<subscribers>") -> None:
        from ruamel.yaml import YAML

        self.source = source
        self.changed = False
        self._text = text
        try:
            root = yamlfile.compose(text)
        except yamlfile.YamlProblem as problem:
            where = problem.where(source)
            raise SubscribersError(f"{where}: {problem.reason}; fix it by hand first") from None
        entries = _list_node(root, source)
        self._addresses = [_email_of(entry) for entry in entries.value] if entries else []
        self._append_at = _append_offset(text, entries)
        self._added: list[Any] = []
        """Entries to append to the text (while the document is not loaded)."""
        self._doc: Any = None
        """The ruamel.yaml document, once an edit needed it."""
        self._yaml = YAML()
        self._yaml.preserve_quotes = True
        self._yaml.width = 4096
        self._yaml.representer.ignore_aliases = lambda data: True  # never write &anchors
        indent, offset = _indentation(root, entries)
        self._yaml.indent(mapping=max(indent - offset, 2), sequence=indent, offset=offset)

    def emails(self) -> list[str]:
        """The addresses in file order, as written."""
        return [address for address in self._emails() if address is not None]

    def find(self, email: str) -> int | None:
        """The index of the entry for ``email`` (case-insensitive), or None."""
        wanted = email_key(email)
        for index, address in enumerate(self._emails()):
            if address is not None and email_key(address) == wanted:
                return index
        return None

    def current(self, email: str) -> dict[str, Any]:
        """The fields of ``email``'s entry as written."""
        index = self._position(email)
        return {str(k): v for k, v in self._entries()[index].items()}

    def add(self, fields: Mapping[str, Any], *, new: bool = False) -> None:
        """Append an entry; SubscribersError if the address is already there (not looked
        for when the caller knows it is ``new``)."""
        from ruamel.yaml.comments import CommentedMap

        email = str(fields.get("email", ""))
        if not new and self.find(email) is not None:
            raise SubscribersError(f"{self.source}: {email} is already subscribed")
        self._check_known(fields)
        entry = CommentedMap()
        for key in FIELDS:
            if fields.get(key) is not None:
                entry[key] = _yaml_value(fields[key], quoted=key == "topics")
        if self._doc is None and self._append_at is not None:
            self._added.append(entry)
        else:
            self._entries().append(entry)
        self.changed = True

    def remove(self, email: str) -> bool:
        """Remove the entry for ``email``; False when there is none.

        The comment lines above the next entry (stored on this entry's last line by
        ruamel) are kept: they move to the entry before, replacing the ones that
        described the removed entry.
        """
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        index = self.find(email)
        if index is None:
            return False
        seq: CommentedSeq = self._entries()
        entry = seq[index]
        trailing = None
        if isinstance(entry, CommentedMap) and len(entry):
            trailing = entry.ca.items.get(list(entry)[-1])
        tail = trailing[2] if trailing and len(trailing) > 2 else None
        if index > 0:
            prev = seq[index - 1]
            if isinstance(prev, CommentedMap) and len(prev):
                last = list(prev)[-1]
                slot = prev.ca.items.setdefault(last, [None, None, None, None])
                slot[2] = tail
        elif tail is not None and len(seq) > 1:
            tail.value = tail.value.lstrip()
            seq.ca.comment = [None, [tail]]
            holder = self._doc.ca.items.get(LIST_KEY)
            if holder is not None and len(holder) > 3:
                holder[3] = [tail]
        elif index == 0:
            seq.ca.comment = None
            holder = self._doc.ca.items.get(LIST_KEY)
            if holder is not None and len(holder) > 3:
                holder[3] = None
        del seq[index]
        self.changed = True
        return True

    def update(self, email: str, changes: Mapping[str, Any]) -> None:
        """Set fields of the entry for ``email`` (None removes a field)."""
        index = self._position(email)
        self._check_known(changes)
        entry = self._entries()[index]
        for key, value in changes.items():
            if value is None:
                entry.pop(key, None)
            elif key in entry:
                entry[key] = _yaml_value(value, quoted=key == "topics")
            else:
                position = _insert_position(list(entry), key)
                entry.insert(position, key, _yaml_value(value, quoted=key == "topics"))
        self.changed = True

    def dump(self) -> str:
        """The document as text, comments and formatting kept."""
        if self._doc is not None:
            return self._dumped(self._doc)
        if not self._added or self._append_at is None:
            return self._text
        head, tail = self._text[: self._append_at], self._text[self._append_at :]
        if not head.endswith("\n"):
            head += "\n"
        added = self._dumped({LIST_KEY: self._added}).split("\n", 1)[1]  # after "subscribers:"
        return head + added + tail

    def _emails(self) -> list[str | None]:
        """The address of each entry by index (None for an entry that is not a mapping)."""
        if self._doc is None:
            return self._addresses + [str(e.get("email", "")) for e in self._added]
        entries = self._entries()
        return [str(e.get("email", "")) if isinstance(e, Mapping) else None for e in entries]

    def _entries(self) -> Any:
        """The list of entries in the ruamel document (a CommentedSeq of CommentedMaps),
        loading the document with the entries added so far the first time."""
        if self._doc is None:
            self._doc = self._loaded()
            self._doc[LIST_KEY].extend(self._added)
            self._added = []
        return self._doc[LIST_KEY]

    def _loaded(self) -> Any:
        from ruamel.yaml.comments import CommentedMap, CommentedSeq
        from ruamel.yaml.error import YAMLError

        try:
            data = self._yaml.load(self._text or EMPTY_LIST)
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{self.source}:{mark.line + 1}" if mark is not None else self.source
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise SubscribersError(
                f"{where}: invalid YAML, fix it by hand first: {problem}"
            ) from None
        data = CommentedMap() if data is None else data
        if data.get(LIST_KEY) is None:
            data[LIST_KEY] = CommentedSeq()
        return data

    def _dumped(self, data: Any) -> str:
        out = io.StringIO()
        self._yaml.dump(data, out)
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


def _list_node(root: yaml.Node | None, source: str) -> yaml.SequenceNode | None:
    """The node of the list of entries (None when the file has none yet);
    SubscribersError when the file is not a mapping or the list is not a list."""
    if root is None:
        return None
    if not isinstance(root, yaml.MappingNode):
        raise SubscribersError(f"{source}: the file must be a mapping with a '{LIST_KEY}:' key")
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == LIST_KEY:
            if isinstance(value, yaml.SequenceNode):
                return value
            if value.tag != "tag:yaml.org,2002:null":
                raise SubscribersError(f"{source}: {LIST_KEY}: expected a list of entries")
    return None


def _email_of(entry: yaml.Node) -> str | None:
    """The ``email`` of an entry's node as written ("" when it has none; None for an
    entry that is not a mapping)."""
    if not isinstance(entry, yaml.MappingNode):
        return None
    for key, value in entry.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "email":
            return str(value.value) if isinstance(value, yaml.ScalarNode) else ""
    return ""


_OTHER_LINE_BREAKS = ("\r", "\x85", "\u2028", "\u2029")
"""Line breaks of YAML 1.1 besides LF: libyaml counts lines by them too."""


def _append_offset(text: str, entries: yaml.SequenceNode | None) -> int | None:
    """Where entries appended to a block list go in ``text``: the start of the line where
    libyaml ends the list (after the comments that follow its last entry, as ruamel puts
    them), or the end of a file without a final line break. None when the document must
    be round-tripped instead (an empty or flow-style list, line breaks other than LF)."""
    if entries is None or not entries.value or entries.flow_style:
        return None
    if any(other in text for other in _OTHER_LINE_BREAKS):
        return None
    end = entries.end_mark
    if end.line >= text.count("\n"):  # the end of the file (libyaml ends its last line)
        return len(text)
    if end.column:
        return None
    offset = 0
    for _line in range(end.line):
        offset = text.index("\n", offset) + 1
    return offset


def _indentation(root: yaml.Node | None, entries: yaml.SequenceNode | None) -> tuple[int, int]:
    """(indent, offset) of the entries as written: the column of an entry's first field
    and of its dash, from the key holding the list; the defaults for an empty list."""
    if root is None or entries is None or not entries.value or entries.flow_style:
        return DEFAULT_INDENT, DEFAULT_OFFSET
    column = root.start_mark.column
    return entries.value[0].start_mark.column - column, entries.start_mark.column - column


def _yaml_value(value: Any, *, quoted: bool = False) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    if isinstance(value, list | tuple):
        seq = CommentedSeq(_scalar(str(v), quoted=quoted) for v in value)
        seq.fa.set_flow_style()
        return seq
    return _scalar(value) if isinstance(value, str) else value


def _scalar(text: str, *, quoted: bool = False) -> Any:
    """``text`` as ruamel should write it: double-quoted (with escapes) when asked, when
    it holds a character that is not plain printable text (NEL, a line or paragraph
    separator, a control character), which plain style would change, or when libyaml
    (YAML 1.1) would read it plain as another type (``Yes``, ``off``, ``1_000``), which
    ruamel (YAML 1.2) writes plain."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    plain_type = _YAML_11.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if quoted or not text.isprintable() or "\x85" in text or plain_type != _STR_TAG:
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
