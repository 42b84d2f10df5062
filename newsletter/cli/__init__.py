"""The ``newsletter`` command: a click group, one module per command family.

Every error a user can cause is a :class:`~newsletter.errors.NewsletterError` and is
printed as one line (``error: ...``) with exit code 2, never as a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from newsletter import __version__
from newsletter.errors import NewsletterError
from newsletter.redact import Redactor


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            redact = Redactor.from_environment(os.environ)  # secrets come from there only
            click.echo(redact(f"error: {exc}"), err=True)
            for problem in getattr(exc, "problems", []):
                click.echo(redact(f"  {problem}"), err=True)
            ctx.exit(2)


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
