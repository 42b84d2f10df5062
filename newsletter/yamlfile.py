"""YAML files from outside (settings, subscriber lists, taxonomies), read safely with libyaml.

Every file is composed by libyaml (``CSafeLoader``) into a node tree that keeps line
numbers, and refused (:class:`YamlProblem`, with the line) when it holds:

* an alias (``*name``): a 700-byte file of nested aliases ("billion laughs") would
  otherwise expand to gigabytes; no file of ours needs one;
* a key given twice in one mapping, at any level (YAML says it is an error; PyYAML keeps
  the last one silently, so a second ``subscribers:`` would drop every entry above it).

Values shown in messages are cut by :func:`shown` so a hostile file cannot flood a terminal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

MAX_SHOWN_CHARS = 60
"""Longest value, in characters, quoted in an error message; longer ones are cut."""


class YamlProblem(ValueError):
    """A file is not YAML we read; ``line`` is 1-based (None when unknown)."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason

    def where(self, source: str) -> str:
        """``source:line`` (or ``source`` alone when the line is unknown)."""
        return f"{source}:{self.line}" if self.line is not None else source


def shown(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)``, cut to about ``limit`` characters with the full length noted."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(str(value))} characters)"


def compose(text: str) -> yaml.Node | None:
    """The document's node tree, or None for an empty document; YamlProblem for invalid
    YAML, an alias or a duplicate key."""
    loader = yaml.CSafeLoader(text)
    try:
        node = _single_node(loader)
    finally:
        loader.dispose()
    if node is not None:
        _check_tree(node, text)
    return node


def load(text: str) -> tuple[Any, yaml.Node | None]:
    """The document as Python data (safe types only) and its node tree (for line numbers)."""
    node = compose(text)
    if node is None:
        return None, None
    return construct(node), node


def construct(node: yaml.Node) -> Any:
    """Python data of a checked node (strings, numbers, booleans, dates, lists, mappings)."""
    loader = yaml.CSafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlProblem(_line(exc), f"invalid value: {_problem(exc)}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # 2026-02-30, unhashable keys
        raise YamlProblem(node.start_mark.line + 1, f"invalid value: {exc}") from None
    finally:
        loader.dispose()


def key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line, for every scalar key of nested mappings."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                dotted = f"{prefix}{key.value}"
                lines[dotted] = key.start_mark.line + 1
                lines.update(key_lines(value, dotted + "."))
    return lines


def _single_node(loader: yaml.CSafeLoader) -> yaml.Node | None:
    try:
        node: yaml.Node | None = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise YamlProblem(_line(exc), f"invalid YAML: {_problem(exc)}") from None
    return node


def _check_tree(root: yaml.Node, text: str) -> None:
    """Refuse aliases (a node met twice) and duplicate keys, walking the tree once.

    An alias needs a ``*`` in the text: without one only mappings are looked at."""
    aliases = "*" in text
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if aliases:
            if id(node) in seen:
                raise YamlProblem(_alias_line(text), "aliases (*name) are not allowed in this file")
            seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            _check_keys(node.value)
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _check_keys(pairs: list[tuple[yaml.Node, yaml.Node]]) -> None:
    keys = [(k.tag, k.value) for k, _v in pairs if isinstance(k, yaml.ScalarNode)]
    if len(set(keys)) == len(keys):
        return
    first: dict[tuple[str, str], int] = {}
    for key, _value in pairs:
        if isinstance(key, yaml.ScalarNode):
            line = key.start_mark.line + 1
            earlier = first.get((key.tag, key.value))
            if earlier is not None:
                reason = f"{shown(key.value)}: duplicate key (first on line {earlier})"
                raise YamlProblem(line, reason)
            first[(key.tag, key.value)] = line


def _alias_line(text: str) -> int | None:
    """The line of the first alias (only called once the file is refused)."""
    for event in _events(text):
        if isinstance(event, yaml.AliasEvent) and event.start_mark is not None:
            return int(event.start_mark.line) + 1
    return None


def _events(text: str) -> Iterator[yaml.Event]:
    return iter(yaml.parse(text, Loader=yaml.CSafeLoader))


def _line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return int(mark.line) + 1 if mark is not None else None


def _problem(exc: yaml.YAMLError) -> str:
    return " ".join(str(getattr(exc, "problem", None) or exc).split())
