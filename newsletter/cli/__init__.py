"""The ``newsletter`` command: a click group, one module per command family.

Every error a user can cause - a :class:`~newsletter.errors.NewsletterError`, a usage
error click finds in the arguments, an ``OSError`` such as a full disk - is printed by
:meth:`_Group.main` as one line (``error: ...``, the problems of a list indented below
it) with exit code 2, never as a traceback or click's three-line usage block.
Shared options (``-c/--config``, the date type) live in :mod:`newsletter.cli.options`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from newsletter import __version__
from newsletter.errors import NewsletterError
from newsletter.redact import Redactor

USER_ERROR = 2
"""Exit code of every error the user can fix (bad argument, bad file, full disk...)."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Group(click.Group):
    """The top-level group: the one place user errors become ``error: ...`` lines."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = code if isinstance(code, int) else 0
        except click.ClickException as exc:  # usage errors included
            code = _say(f"error: {_one_line(exc.format_message())}")
        except click.Abort:
            code = _say("error: aborted", code=1)
        except NewsletterError as exc:
            code = _say(f"error: {exc}", *(f"  {p}" for p in getattr(exc, "problems", [])))
        except OSError as exc:  # a full disk, a folder that cannot be written
            where = f"{exc.filename}: " if exc.filename else ""
            code = _say(f"error: {where}{exc.strerror or exc}")
        if standalone_mode:
            sys.exit(code)
        return code


def _say(*lines: str, code: int = USER_ERROR) -> int:
    """Print an error's lines on stderr, every secret redacted; returns ``code``."""
    redact = Redactor.from_environment(os.environ)  # secrets come from there only
    for line in lines:
        click.echo(redact(line), err=True)
    return code


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="newsletter")
def cli() -> None:
    """Daily digests of trending AI papers, delivered by email."""


COMMAND_MODULES: tuple[str, ...] = (
    "sources",
    "topics",
    "preview",
    "send",
    "subscribers",
    "serve",
    "run",
    "bounces",
)
"""Modules under newsletter.cli, one per command family, each with register(group)."""


def _register() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"newsletter.cli.{name}")
        module.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="newsletter", standalone_mode=True))
