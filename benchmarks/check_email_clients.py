"""Check the digest's HTML against the caniemail.com data for the mail apps that matter.

    python3 -m benchmarks.check_email_clients [--data DIR] [--cache DIR] [--show]

The linter is ``@jsx-email/doiuse-email`` (the caniemail.com database as an npm package),
installed once with npm into ``--cache`` (default ``~/.cache/newsletter-caniemail``) and
run with node. Checked: the full digest of the sample day and of every HF day in
``DIR/hf`` (when present), each as an email with ``digest.archive_url`` set and without,
for Gmail, Apple Mail, Outlook, Yahoo and Samsung Email (all their apps and webmails).

Every feature the linter reports as unsupported or partly supported in one of those
clients must be listed in :data:`DEGRADES_ON_PURPOSE` with what happens there; anything
else fails the check (exit 1). :data:`SUPPORTED_CSS` lists the CSS properties the layout
uses that the linter reports for none of those clients; ``tests/test_email_clients.py``
keeps the templates inside the two lists without npm. The table printed shows, per
feature, the clients that lack it; ``Local anchors`` (the old in-message table of
contents) must not appear at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from newsletter.config import Settings
from newsletter.models import Day
from newsletter.pipeline import plan_day
from newsletter.sources import load_sample_day
from newsletter.sources.common import merge_duplicates
from newsletter.sources.files import read_path
from newsletter.templating import load_templates
from newsletter.topics import load_taxonomy

DEFAULT_DATA = "/work/shared/data"
"""Where the shared evaluation data lives."""

PACKAGE = "@jsx-email/doiuse-email@1.0.4"
"""The linter, pinned: the caniemail data it carries is what the check is against."""

CLIENTS = ("gmail.*", "apple-mail.*", "outlook.*", "yahoo.*", "samsung-email.*")
"""The mail apps checked (globs over the linter's client names)."""

ARCHIVE_URL = "https://archive.example.org/daily"
"""``digest.archive_url`` for the renders that link their contents to the web page."""

DEGRADES_ON_PURPOSE: dict[str, str] = {
    # selectors and at-rules: the <style> block only refines what is inlined
    "Class selector": "inlined by premailer; the <style> copy is for clients that keep it",
    "Type selector": "MJML's reset rules; inline styles carry the layout",
    "ID selector": "MJML's Outlook reset (#outlook a); harmless where dropped",
    "Descendant combinator": "dark-mode and list rules only; light mode is inlined",
    "Chaining selectors": "dark-mode rules only; light mode is inlined",
    "@media": "dark mode and list spacing; without them the light layout stays",
    "!important keyword": "dark-mode overrides only",
    # elements and attributes MJML emits
    "<body> element": "replaced by a <div>; the body colour is repeated on the wrapper",
    "lang attribute": "a hint to screen readers; text reads the same without it",
    "dir attribute": "MJML's dir=auto; left-to-right is the default anyway",
    "direction": "MJML's ltr on the body; the default anyway",
    "role attribute": "role=presentation on layout tables; ignored means read as tables",
    "aria-label attribute": "MJML labels the wrapper; ignored means no label",
    "align attribute": "MJML's centring of the 640 px column; left-aligned where dropped",
    "width attribute": "Outlook's fixed width for the column; max-width covers the rest",
    # CSS properties: where each is ignored the text still reads
    "display": "MJML's block/inline-block columns and the hidden preheader",
    "display:none": "the preheader (inbox preview text) shows as a first line where ignored",
    "opacity": "the hidden preheader; see display:none",
    "overflow": "the hidden preheader; see display:none",
    "max-width": "MJML's column width; the table width attribute backs it up",
    "margin": "spacing between blocks; paragraphs keep their own default spacing",
    "padding": "spacing inside sections; Outlook on Windows uses the cells' own padding",
    "border": "MJML's image reset (border:0)",
    "outline": "MJML's link/image reset (outline:none)",
    "font-size": "sizes of headings and details; the client's default size where ignored",
    "font-weight": "bold titles; titles are links (or <b>) anyway",
    "line-height": "spacing of lines; the client's default where ignored",
    "text-align": "MJML's left alignment, the default anyway",
    "text-decoration": "no underline on titles; underlined links where ignored",
    "word-spacing": "MJML's reset of the hidden preheader",
    "overflow-wrap": "long URLs wrap; where ignored, word-break (or the client) wraps them",
    "word-break": "long URLs wrap; where ignored, overflow-wrap (or the client) wraps them",
}
"""Every caniemail finding for the clients above, and why the layout does not depend on it."""

SUPPORTED_CSS = frozenset(
    """background background-color border-collapse border-spacing border-top
    border-top-color color color-scheme font-family height max-height padding-left
    padding-top vertical-align width supported-color-schemes -ms-interpolation-mode
    -ms-text-size-adjust -webkit-text-size-adjust mso-line-height-rule mso-table-lspace
    mso-table-rspace""".split()  # noqa: SIM905
)
"""CSS properties the layout uses that the linter reports for none of the clients
(vendor ``-ms-``/``-webkit-``/``mso-`` properties: read by their own client, ignored by
the rest; ``color-scheme``: a hint)."""

_FINDING = re.compile(
    r"^`(?P<feature>.+?)` is (?P<how>not supported|only partially supported) by `(?P<client>.+?)`"
)

LINT_SCRIPT = """
import { doIUseEmail } from '@jsx-email/doiuse-email';
import { readFileSync } from 'node:fs';
const clients = JSON.parse(process.argv[2]);
const out = {};
for (const path of process.argv.slice(3)) {
  const r = doIUseEmail(readFileSync(path, 'utf8'), { emailClients: clients });
  out[path] = [...(r.errors ?? []), ...(r.warnings ?? [])];
}
console.log(JSON.stringify(out));
"""


def install(cache: Path) -> Path:
    """The linter installed under ``cache`` (npm, once); its folder."""
    marker = cache / "node_modules" / "@jsx-email" / "doiuse-email" / "package.json"
    if not marker.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", PACKAGE],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return cache


def lint(cache: Path, paths: list[Path]) -> dict[str, list[str]]:
    script = cache / "lint.mjs"
    script.write_text(LINT_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        ["node", str(script), json.dumps(CLIENTS), *map(str, paths)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def renders(data: Path, folder: Path) -> list[Path]:
    """The HTML parts to check, written into ``folder``."""
    days = [load_sample_day(dt.date(2026, 11, 25))]
    for path in sorted(data.glob("hf/*.json")):
        date = dt.date.fromisoformat(path.stem)
        papers = merge_duplicates(read_path(path, settings=Settings().source))
        days.append(Day(date=date, papers=papers, source=str(path)))
    taxonomy, templates = load_taxonomy(None), load_templates(None)
    written = []
    for day in days:
        for archive in (None, ARCHIVE_URL):
            settings = Settings()
            web = f"{archive}/{day.date.isoformat()}.html" if archive else None
            prepared = plan_day(
                day, (), settings=settings, taxonomy=taxonomy, templates=templates, web_url=web
            )
            html, _ = prepared.full.rendered.fill(
                {
                    "name": "Ada",
                    "email": "ada@example.org",
                    "unsubscribe_url": "https://news.example.org/unsubscribe?token=x",
                    "preferences_url": "https://news.example.org/preferences?token=x",
                }
            )
            path = folder / f"{day.date}-{'archive' if archive else 'plain'}.html"
            path.write_text(html, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument(
        "--cache", default=os.path.expanduser("~/.cache/newsletter-caniemail"), type=Path
    )
    parser.add_argument("--show", action="store_true", help="Print every finding.")
    args = parser.parse_args(argv)
    if not shutil.which("node") or not shutil.which("npm"):
        print("error: node and npm are needed (Debian: nodejs, npm)", file=sys.stderr)
        return 2
    cache = install(args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        paths = renders(Path(args.data), Path(tmp))
        found = lint(cache, paths)
    table: dict[str, set[str]] = defaultdict(set)
    unexplained: dict[str, set[str]] = defaultdict(set)
    for path, findings in found.items():
        for finding in findings:
            match = _FINDING.match(finding)
            if not match:
                unexplained[finding].add(Path(path).name)
                continue
            mark = "" if match["how"] == "not supported" else " (partly)"
            table[match["feature"]].add(match["client"] + mark)
            if match["feature"] not in DEGRADES_ON_PURPOSE:
                unexplained[match["feature"]].add(match["client"])
    print(f"{len(paths)} HTML parts checked with {PACKAGE} for {', '.join(CLIENTS)}")
    for feature in sorted(table):
        reason = DEGRADES_ON_PURPOSE.get(feature, "NOT EXPLAINED")
        print(f"- {feature}: {reason}")
        if args.show:
            print(f"    {', '.join(sorted(table[feature]))}")
    flagged_css = {f for f in table if re.fullmatch(r"[a-z-]+", f)}
    for prop in sorted(SUPPORTED_CSS & flagged_css):
        unexplained[f"{prop} is listed in SUPPORTED_CSS but flagged"].add("")
    for feature, where in sorted(unexplained.items()):
        print(f"FAIL {feature}: {', '.join(sorted(where))}")
    print(f"local anchors (in-message #links): {'found' if 'Local anchors' in table else 'none'}")
    return 1 if unexplained or "Local anchors" in table else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
