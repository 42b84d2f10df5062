"""Editing the admin's ``subscribers.yaml`` in place: comments, order and quoting kept.

:func:`edit_subscribers` opens the list under an exclusive lock on ``<file>.lock``,
checks it with libyaml first (:mod:`newsletter.yamlfile`: aliases and duplicate keys are
refused), edits it with ruamel.yaml (:class:`SubscriberList`: only the window of text
around the edited entry goes through ruamel, the rest is kept byte for byte), validates the
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
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
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


class SubscriberList:
    """An open subscriber list being edited, as text checked by libyaml.

    Edits change only the text they concern, as a ruamel.yaml round trip of the whole
    document would change it, and keep the rest byte for byte: each round-trips only a
    window of the text found from libyaml's marks (the entry; with the one before it for
    ``remove``; the last entry, once, for the entries ``add`` appends), when ruamel reads
    and writes that window back unchanged. One edit of a 5,000-reader file thus reads
    it with libyaml instead of ruamel's pure-Python parser and emitter
    (``benchmarks.bench_subscribers``). Other
    shapes (an empty or flow-style list, CR line breaks, an entry not written
    ``- key: ...``, removing the only entry) round-trip the whole document, comments
    kept; so does every edit with ``in_place=False``, which the tests compare against.
    Get one from :func:`edit_subscribers`, which saves it (validated, atomically) at the end.
    """

    def __init__(self, text: str, *, source: str = "<subscribers>", in_place: bool = True) -> None:
        from ruamel.yaml import YAML

        self.source = source
        self.changed = False
        self._text = text
        self._read()
        self._added: list[Any] = []
        """Entries to append to the text (while the document is not loaded)."""
        self._doc: Any = None
        """The ruamel.yaml document, once an edit needed it."""
        self._yaml = YAML()
        self._yaml.preserve_quotes = True
        self._yaml.width = 4096
        self._yaml.representer.ignore_aliases = lambda data: True  # never write &anchors
        indent, offset = _indentation(self._root, self._list)
        self._yaml.indent(mapping=max(indent - offset, 2), sequence=indent, offset=offset)
        if not in_place:
            self._entries()

    @property
    def round_tripped(self) -> bool:
        """Whether the whole document went through ruamel (else only windows of it)."""
        return self._doc is not None

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
        window = self._window(index, removing=False)
        if window is None:
            entry = self._entries()[index]
        else:
            start, end, header, at = window
            entry = self._load(header + self._text[start:end])[LIST_KEY][at]
        return {str(k): v for k, v in entry.items()}

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
        self._sync()
        if self._doc is None and self._end is not None:
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
        index = self.find(email)
        if index is None:
            return False
        self._flush()
        if not self._edit_in_place(index, _remove_entry, removing=True):
            _remove_entry(self._loaded_doc(), index)
        self.changed = True
        return True

    def update(self, email: str, changes: Mapping[str, Any]) -> None:
        """Set fields of the entry for ``email`` (None removes a field)."""
        index = self._position(email)
        self._check_known(changes)

        def edit(doc: Any, at: int) -> None:
            _update_entry(doc[LIST_KEY][at], changes)

        self._flush()
        if not self._edit_in_place(index, edit, removing=False):
            edit(self._loaded_doc(), index)
        self.changed = True

    def dump(self) -> str:
        """The document as text, comments and formatting kept."""
        self._flush()
        return self._text if self._doc is None else self._dumped(self._doc)

    def _flush(self) -> None:
        """Put the entries added so far after the list's last entry, in place when it can."""
        if not self._added or self._doc is not None:
            return
        added, self._added = self._added, []

        def append(doc: Any, at: int) -> None:
            doc[LIST_KEY].extend(added)

        last = len(self._list.value) - 1 if self._list else -1
        if last < 0 or not self._edit_in_place(last, append, removing=False):
            self._loaded_doc()[LIST_KEY].extend(added)

    def _read(self) -> None:
        """Read the text with libyaml: the nodes of the list and of its key, the entries'
        addresses and where appended entries go."""
        try:
            root = yamlfile.compose(self._text)
        except yamlfile.YamlProblem as problem:
            where = problem.where(self.source)
            raise SubscribersError(f"{where}: {problem.reason}; fix it by hand first") from None
        self._root = root
        self._key, self._list = _list_node(root, self.source)
        entries = self._list.value if self._list else []
        self._addresses = [_email_of(entry) for entry in entries]
        self._end = _list_end(self._text, self._list)
        self._stale = False

    def _sync(self) -> None:
        """Read the text again after an edit in place changed it."""
        if self._stale:
            self._read()

    def _edit_in_place(
        self, index: int, edit: Callable[[Any, int], None], *, removing: bool
    ) -> bool:
        """Apply ``edit(document, index)`` to the window of the text around the entry at
        ``index`` loaded by ruamel, and put what ruamel writes for it in the window's
        place; False (nothing done) when the whole document must be round-tripped."""
        window = self._window(index, removing=removing)
        if window is None:
            return False
        start, end, header, at = window
        text = header + self._text[start:end]
        try:
            doc = self._load(text)
        except SubscribersError:
            return False
        if self._dumped(doc) != text:  # ruamel would not leave this window as it is
            return False
        edit(doc, at)
        written = self._dumped(doc)
        if not written.startswith(header):
            return False
        self._text = self._text[:start] + written[len(header) :] + self._text[end:]
        self._stale = True
        return True

    def _window(self, index: int, *, removing: bool) -> tuple[int, int, str, int] | None:
        """(start, end, header, at): the text ``[start:end]`` after ``header`` is a document
        whose list holds the entry at ``index`` as its entry ``at``, with what an edit of
        that entry changes (the entry before it too when ``removing``: it takes over the
        comments below the removed one). None when there is no such window."""
        if self._doc is not None:
            return None
        self._sync()
        entries, key, root = self._list, self._key, self._root
        if entries is None or key is None or root is None or self._end is None:
            return None
        if root.start_mark.column or entries.flow_style:
            return None
        count = len(entries.value)
        first = index - 1 if removing and index > 0 else index
        last = index + 1 if removing and index == 0 else index
        if last >= count:  # removing the only entry leaves an empty list
            return None
        start = self._entry_start(first)
        end = self._entry_start(last + 1) if last + 1 < count else self._end
        if start is None or end is None:
            return None
        if removing and index == 0:  # the comments above it hang on the list's key
            return key.start_mark.index, end, "", 0
        return start, end, f"{LIST_KEY}:\n", index - first

    def _entry_start(self, index: int) -> int | None:
        """Where the line of the entry at ``index`` starts, when it is ``- key: ...``."""
        assert self._list is not None
        mark = self._list.value[index].start_mark
        start = mark.index - mark.column
        return start if _DASH.fullmatch(self._text, start, mark.index) else None

    def _emails(self) -> list[str | None]:
        """The address of each entry by index (None for an entry that is not a mapping)."""
        if self._doc is None:
            self._sync()
            return self._addresses + [str(e.get("email", "")) for e in self._added]
        entries = self._entries()
        return [str(e.get("email", "")) if isinstance(e, Mapping) else None for e in entries]

    def _entries(self) -> Any:
        """The list of entries in the ruamel document (a CommentedSeq of CommentedMaps)."""
        return self._loaded_doc()[LIST_KEY]

    def _loaded_doc(self) -> Any:
        """The whole ruamel document, loaded with the entries added so far the first time."""
        if self._doc is None:
            self._doc = self._load(self._text or EMPTY_LIST)
            self._doc[LIST_KEY].extend(self._added)
            self._added = []
        return self._doc

    def _load(self, text: str) -> Any:
        from ruamel.yaml.comments import CommentedMap, CommentedSeq
        from ruamel.yaml.error import YAMLError

        try:
            data = self._yaml.load(text)
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


_DASH = re.compile(r" *- +")
"""What comes before an entry's first key on its line, when it is edited in place."""


def _remove_entry(doc: Any, index: int) -> None:
    """Remove entry ``index`` of ``doc``'s list, the comments below it moving to the one
    before (to the list's key for the first entry)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    seq: CommentedSeq = doc[LIST_KEY]
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
    elif tail is not None and tail.value.strip() and len(seq) > 1:
        tail.value = tail.value.lstrip()
        seq.ca.comment = [None, [tail]]
        holder = doc.ca.items.get(LIST_KEY)
        if holder is not None and len(holder) > 3:
            holder[3] = [tail]
    elif index == 0:
        seq.ca.comment = [None, None]  # (None would lose the comments after the list)
        holder = doc.ca.items.get(LIST_KEY)
        if holder is not None and len(holder) > 3:
            holder[3] = None
    del seq[index]


def _update_entry(entry: Any, changes: Mapping[str, Any]) -> None:
    """Set fields of a ruamel entry (None removes a field), new ones in FIELDS order."""
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        elif key in entry:
            entry[key] = _yaml_value(value, quoted=key == "topics")
        else:
            position = _insert_position(list(entry), key)
            entry.insert(position, key, _yaml_value(value, quoted=key == "topics"))


def _list_node(
    root: yaml.Node | None, source: str
) -> tuple[yaml.Node | None, yaml.SequenceNode | None]:
    """The nodes of the list's key and of the list of entries (None when the file has
    none yet); SubscribersError when the file is not a mapping or the list is not a list."""
    if root is None:
        return None, None
    if not isinstance(root, yaml.MappingNode):
        raise SubscribersError(f"{source}: the file must be a mapping with a '{LIST_KEY}:' key")
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == LIST_KEY:
            if isinstance(value, yaml.SequenceNode):
                return key, value
            if value.tag != "tag:yaml.org,2002:null":
                raise SubscribersError(f"{source}: {LIST_KEY}: expected a list of entries")
    return None, None


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


def _list_end(text: str, entries: yaml.SequenceNode | None) -> int | None:
    """Where the text of a block list ends in ``text``: the start of the line where
    libyaml ends the list (after the comments that follow its last entry, which ruamel
    keeps with that entry), or the end of a file without a final line break. None when
    the document must be round-tripped whole instead (an empty or flow-style list, line
    breaks other than LF)."""
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
    (YAML 1.1) would not read it back plain inside a list as this very string: another
    type (``Yes``, ``off``, ``1_000``) or other syntax (``:0``, ``a, b``), which ruamel
    (YAML 1.2) may write plain."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if quoted or not text.isprintable() or "\x85" in text or not _reads_back_plain(text):
        return DoubleQuotedScalarString(text)
    return text


def _reads_back_plain(text: str) -> bool:
    try:
        return bool(yaml.load(f"[{text}]", Loader=yaml.CSafeLoader) == [text])
    except yaml.YAMLError:
        return False


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
    edited through ruamel.yaml (comments and layout kept). The new text must
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
