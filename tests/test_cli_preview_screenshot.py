"""``newsletter preview --screenshot``: whole-page PNGs at 375 and 640 px from headless Chromium.

Without Chromium the capture test FAILS (CI installs Debian's ``chromium``): never skipped.
"""

from __future__ import annotations

import shutil
import struct
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.browser import CHROMIUM_NAMES
from newsletter.cli import cli
from newsletter.cli.preview import SCREENSHOT_VIEWPORT_HEIGHT, SCREENSHOT_WIDTHS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def preview(source: str, date: str, out: Path, *flags: str) -> list[str]:
    return ["preview", "--source", source, "--date", date, "--out", str(out), *flags]


def require_chromium() -> None:
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        pytest.fail(
            "headless Chromium is needed: `apt-get install -y chromium` (.ci/run does)",
            pytrace=False,
        )


def test_screenshot_writes_whole_page_pngs_light_and_dark(tmp_path: Path) -> None:
    require_chromium()
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        preview("sample", "2026-03-02", out, "--screenshot", "--dark"),
    )
    assert result.exit_code == 0, result.output
    printed = result.output.splitlines()
    for name in ("digest.html", "digest.txt", "digest.eml", "digest.json"):
        assert str(out / name) in printed
    sizes = {}
    for width in SCREENSHOT_WIDTHS:
        for suffix in ("", "-dark"):
            path = out / f"digest-{width}{suffix}.png"
            assert str(path) in printed
            sizes[path.name] = png_size(path)
            png_width, png_height = sizes[path.name]
            assert png_width == width
            # The whole page, not just the window: 30 papers are far taller than it.
            assert png_height > 2 * SCREENSHOT_VIEWPORT_HEIGHT
    # The narrow page is the taller one: text reflows instead of overflowing.
    assert sizes["digest-375.png"][1] > sizes["digest-640.png"][1]
    assert sizes["digest-375.png"] == sizes["digest-375-dark.png"]
    assert (out / "digest-640.png").read_bytes() != (out / "digest-640-dark.png").read_bytes()


def test_light_only_without_dark(tmp_path: Path) -> None:
    require_chromium()
    empty = tmp_path / "empty.json"  # a short page: quick to capture
    empty.write_text("[]")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        preview(str(empty), "2026-11-28", out, "--screenshot"),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["digest-375.png", "digest-640.png"]
    assert png_size(out / "digest-375.png")[0] == 375


def test_screenshot_without_chromium_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, preview("sample", "2026-03-02", out, "--screenshot"))
    assert result.exit_code == 2
    assert result.output.startswith("error: headless Chromium is needed")
    assert "apt-get install -y chromium" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (out / "digest.html").is_file()
    assert not list(out.glob("*.png"))


def test_preview_without_screenshot_starts_no_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, preview("sample", "2026-03-02", out))
    assert result.exit_code == 0, result.output
    assert not list(out.glob("*.png"))


def test_without_the_browser_extra_screenshot_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """websocket-client is the optional extra newsletter[browser]: without it (an import
    that fails, as in a plain `pip install .`), the CLI says what to install."""
    monkeypatch.setitem(sys.modules, "websocket", None)  # `import websocket` raises
    result = CliRunner().invoke(
        cli, preview("sample", "2026-03-02", tmp_path / "out", "--screenshot")
    )
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "error: screenshots need the browser client, which is not installed: "
        "pip install 'newsletter[browser]'"
    ]
