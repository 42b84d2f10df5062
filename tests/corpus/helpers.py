"""Shared helpers of the bad-input corpus: run the CLI, check its one-line errors, parse HTML."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import Sequence
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from newsletter.cli import cli

INPUTS = Path(__file__).parent / "inputs"
"""The hostile and broken input files of the corpus."""

DATE = "2026-11-25"
"""The paper day every corpus run asks for."""


def invoke(args: Sequence[str]) -> Result:
    """Run ``newsletter ARGS`` in-process (stdout and stderr together in ``output``)."""
    return CliRunner().invoke(cli, list(args))


PYTHON_WORDS = "\x00python's words\x00"
"""In a fragment: where a library's own message sits inside ours (CPython's json wording
changed in 3.13), matched as any text without parentheses; the rest is our own wording."""


def _names(fragment: str, line: str) -> bool:
    if PYTHON_WORDS not in fragment:
        return fragment in line
    pattern = "[^()]*".join(re.escape(part) for part in fragment.split(PYTHON_WORDS))
    return re.search(pattern, line) is not None


def assert_one_line_error(result: Result, fragment: str, *, code: int = 2) -> str:
    """The run failed with ``code``, its output starts with ``error:`` naming ``fragment``
    on that first line (see PYTHON_WORDS), and no traceback leaked. Returns the line."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.output.startswith("error: "), result.output
    assert "Traceback" not in result.output, result.output
    first = result.output.splitlines()[0]
    assert _names(fragment, first), first
    return first


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.exception
    assert "Traceback" not in result.output


def preview(source: Path | str, out: Path, *extra: str) -> Result:
    return invoke(["preview", "--source", str(source), "--date", DATE, "--out", str(out), *extra])


def summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "digest.json").read_text(encoding="utf-8"))
    return data


def titles(out: Path) -> list[str]:
    return [p["title"] for topic in summary(out)["topics"] for p in topic["papers"]]


def parse_eml(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


class Markup(HTMLParser):
    """The elements, attributes and text of an HTML document, as a browser would see them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, name, value or "") for name, value in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def hrefs(self) -> list[str]:
        return [value for _tag, name, value in self.attrs if name in ("href", "src")]

    @property
    def all_text(self) -> str:
        return "".join(self.text)
