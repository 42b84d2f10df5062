"""One convention for every command: -c/--config, one date type, one-line errors, help."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.cli.options import DATE, count


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield " ".join(path), command


COMMANDS = dict(_commands(cli))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_takes_c_config(name: str) -> None:
    opts = [opt for p in COMMANDS[name].params for opt in getattr(p, "opts", [])]
    assert "-c" in opts and "--config" in opts, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help(name: str) -> None:
    for param in COMMANDS[name].params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_date_option_is_the_one_date_type(name: str) -> None:
    for param in COMMANDS[name].params:
        if "date" in param.name.lower() and not isinstance(param.type, click.types.BoolParamType):
            assert param.type is DATE, f"{name} {param.name}"


def test_the_date_type_reads_iso_days_only() -> None:
    assert DATE.convert("2026-02-28", None, None) == dt.date(2026, 2, 28)
    for bad in ("2026-02-30", "20260228", "28/02/2026", "2026-2-28", "2026-02-28T00:00"):
        with pytest.raises(click.BadParameter, match=r"is not a date \(YYYY-MM-DD\)"):
            DATE.convert(bad, None, None)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["send", "--date", "tomorrow"], "'tomorrow' is not a date (YYYY-MM-DD)"),
        (["fetch", "--date", "2026-13-01"], "'2026-13-01' is not a date (YYYY-MM-DD)"),
        (["preview", "--date", "x"], "'x' is not a date (YYYY-MM-DD)"),
        (["archive", "--date", "x"], "'x' is not a date (YYYY-MM-DD)"),
        # click's own wording varies between versions: only the value is checked
        (["send", "--no-such-option"], "--no-such-option"),
        (["no-such-command"], "no-such-command"),
        (["subscribers", "add"], "EMAIL"),
        (["subscribers", "export", "--format", "xml"], "'xml'"),
    ],
)
def test_usage_errors_are_one_error_line_with_exit_2(
    args: list[str], fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Usage:" not in result.output and "Error:" not in result.output


def test_help_and_version_still_exit_0() -> None:
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
    assert CliRunner().invoke(cli, ["subscribers", "add", "--help"]).exit_code == 0
    assert CliRunner().invoke(cli, ["--version"]).exit_code == 0


def test_counts_are_pluralised() -> None:
    assert [count(n, "paper") for n in (0, 1, 2)] == ["0 papers", "1 paper", "2 papers"]
    assert count(1, "entry", "entries") == "1 entry"
    assert count(3, "entry", "entries") == "3 entries"
