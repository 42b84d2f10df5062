"""Send a day from a file, archive it, and check the page is that day as sent; screenshots.

    python3 -m benchmarks.check_archive [--source FILE] [--date YYYY-MM-DD] [--docs DIR]

In a temporary folder (outbox delivery, SQLite state, one subscriber "Ada Lovelace"):
``newsletter send --date D --source FILE``, then ``newsletter archive`` (which must not
fetch anything: the default source is pointed at an address that does not answer). The
day's page must list exactly the file's papers and no personal text (the subscriber's
name or address, a greeting, unsubscribe or preference links). With ``--docs``, headless
Chromium captures the index and the day page at 375 px wide into
``DIR/archive-index-375.png`` and ``DIR/archive-day-375.png``. Exit 1 on a failed check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import os
import re
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import SourceSettings
from newsletter.sources.common import merge_duplicates
from newsletter.sources.files import read_path

DEFAULT_SOURCE = "/work/shared/data/hf/2026-04-07.json"
"""The day sent and archived by default."""

PHONE_WIDTH = 375
"""Screenshot width in CSS pixels."""

SUBSCRIBERS = """subscribers:
  - email: ada@example.org
    name: Ada Lovelace
    keywords: [world model]
    max_papers: 5
"""

PERSONAL = (
    "Ada Lovelace",
    "ada@example.org",
    "Hi ",
    "Unsubscribe",
    "unsubscribe",
    "preferences?token",
)
"""Text that must not be on a public page."""


def run(args: list[str], env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"error: newsletter {' '.join(args)}: {result.output.strip()}")
    return result.output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=DEFAULT_SOURCE)
    parser.add_argument("--date", default=None, help="Default: the date in the file's name.")
    parser.add_argument("--docs", type=Path, default=None, help="Write screenshots here.")
    args = parser.parse_args(argv)
    source = Path(args.source).resolve()
    found = re.search(r"\d{4}-\d{2}-\d{2}", source.name)
    date = args.date or (found.group(0) if found else dt.date.today().isoformat())
    expected = merge_duplicates(read_path(source, settings=SourceSettings()))
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "subscribers.yaml").write_text(SUBSCRIBERS, encoding="utf-8")
        env = {
            "NEWSLETTER_SUBSCRIBERS": str(root / "subscribers.yaml"),
            "NEWSLETTER_STATE": f"sqlite:///{root / 'state.db'}",
            "NEWSLETTER_ARCHIVE": str(root / "archive"),
            "NEWSLETTER_DELIVERY__OUTBOX": str(root / "outbox"),
            "NEWSLETTER_DIGEST__ARCHIVE_URL": "https://papers.example.org/archive",
            # the archive must use the stored day: any fetch would fail
            "NEWSLETTER_SOURCE__DEFAULT": "http://127.0.0.1:9/nothing-here",
        }
        cwd = os.getcwd()
        os.chdir(root)
        try:
            print(run(["send", "--date", date, "--source", str(source)], env).strip())
            print(run(["archive"], env).strip())
        finally:
            os.chdir(cwd)
        page = (root / "archive" / f"{date}.html").read_text(encoding="utf-8")
        flat = html.unescape(re.sub(r"\s+", " ", page))
        titles = {" ".join(p.title.split()) for p in expected}
        shown = {t for t in titles if t in flat}
        print(f"{date}: the page shows {len(shown)} of the file's {len(titles)} papers")
        if shown != titles:
            failures.append(f"missing from the page: {sorted(titles - shown)}")
        listed = len(re.findall(r'class="t"', page))
        if listed != len(titles):
            failures.append(f"the page lists {listed} papers, the file has {len(titles)}")
        leaks = [word for word in PERSONAL if word in flat]
        print(f"personal text on the page: {leaks or 'none'}")
        if leaks:
            failures.append(f"personal text on the page: {leaks}")
        if args.docs is not None:
            from newsletter.browser import launch

            args.docs.mkdir(parents=True, exist_ok=True)
            with launch() as browser:
                for name, path in (("index", "index.html"), ("day", f"{date}.html")):
                    browser.page.set_viewport(PHONE_WIDTH, 800, mobile=True)
                    browser.page.navigate((root / "archive" / path).as_uri())
                    target = args.docs / f"archive-{name}-{PHONE_WIDTH}.png"
                    target.write_bytes(browser.page.screenshot())
                    print(f"wrote {target}")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
