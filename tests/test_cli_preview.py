from __future__ import annotations

import email
import json
from email.message import Message
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli

PAGE_HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "by AK and the research community\n\n"
)


def _page(n: int) -> str:
    body = "".join(
        f"Paper number {i}: robot manipulation with diffusion policies\n\n"
        f"We study robot manipulation {i}. " + "Long abstract text. " * 40 + "\n\n"
        for i in range(n)
    )
    return PAGE_HEADER + body


def _parts(path: Path) -> dict[str, Message]:
    message = email.message_from_bytes(path.read_bytes())
    return {part.get_content_type(): part for part in message.walk()}


def test_preview_writes_the_four_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.txt"
    page.write_text(_page(12), encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["preview", "--source", str(page), "--date", "2026-11-25", "--out", "out"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for name in ("digest.html", "digest.txt", "digest.eml", "digest.json"):
        assert (out / name).is_file()
        assert f"out/{name}" in result.output
    summary = json.loads((out / "digest.json").read_text())
    assert summary["date"] == "2026-11-25"
    titles = [p["title"] for t in summary["topics"] for p in t["papers"]]
    assert sorted(titles) == sorted(
        f"Paper number {i}: robot manipulation with diffusion policies" for i in range(12)
    )
    for topic in summary["topics"]:
        assert topic["name"]
        for paper in topic["papers"]:
            assert paper["url"].startswith("https://")
            assert isinstance(paper["score"], int | float)
    parts = _parts(out / "digest.eml")
    assert {"text/plain", "text/html"} <= parts.keys()
    assert "HTML " in result.output and "bytes" in result.output


def test_preview_of_an_empty_day_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    result = CliRunner().invoke(
        cli,
        ["preview", "--source", str(empty), "--date", "2026-11-28", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 0, result.output
    assert "no papers" in result.output
    assert json.loads((tmp_path / "o" / "digest.json").read_text())["topics"] == []


def test_preview_reports_a_broken_source_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"paper": {"id": "1"')
    result = CliRunner().invoke(
        cli, ["preview", "--source", str(bad), "--date", "2026-11-25", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output
