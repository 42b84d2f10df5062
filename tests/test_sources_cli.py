"""``newsletter fetch`` through click's runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli

FIXTURES = Path(__file__).parent / "fixtures" / "sources"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no newsletter.yaml from the working directory
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    return CliRunner()


def test_fetch_lists_the_sample_day(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["fetch", "--source", "sample", "--date", "2026-11-25"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "sample 2026-11-25: 30 papers"
    assert len(lines) == 31
    assert "2611.90001" in result.output


def test_fetch_json_of_a_page_file(runner: CliRunner) -> None:
    result = runner.invoke(
        cli, ["fetch", "--source", str(FIXTURES / "page.txt"), "--date", "2026-11-25", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["date"] == "2026-11-25"
    assert [p["id"] for p in data["papers"]] == [None, None, None]
    assert data["papers"][2]["title"].startswith("Escaping <script>")


def test_fetch_reports_bad_input_in_one_line(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"paper": {"id": "1", "title": "cut', encoding="utf-8")
    result = runner.invoke(cli, ["fetch", "--source", str(bad), "--date", "2026-11-25"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "error: " in result.output and "truncated JSON" in result.output
    assert "Traceback" not in result.output


def test_fetch_rejects_an_unknown_source(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["fetch", "--source", "nonsense", "--date", "2026-11-25"])
    assert result.exit_code == 2
    assert "unknown source 'nonsense'" in result.output


def test_fetch_has_help(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["fetch", "--help"])
    assert result.exit_code == 0
    assert "--source" in result.output and "arxiv:" in result.output
