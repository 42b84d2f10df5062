"""``newsletter preview``: render a day's digest to files for the operator to look at.

What it writes is the email: the full digest greets neutrally ("Hi there,") with links that
carry no valid token; ``--subscriber`` renders exactly that subscriber's email (their
variant, name and signed links, as ``send`` makes them, without the papers ``send``
leaves out as recently sent). Both carry "View in browser" when ``digest.archive_url``
is set, and the date defaults as ``send``'s does (today, UTC).
"""

from __future__ import annotations

import datetime as dt
import json
import webbrowser
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from newsletter.archive import web_url
from newsletter.browser import ColorScheme, launch
from newsletter.cli.options import DATE, config_option, count
from newsletter.config import SenderSettings, Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.message import build_template
from newsletter.models import Digest, Subscriber
from newsletter.pipeline import Variant, prepare_day
from newsletter.render import RenderedDigest, summary_text
from newsletter.state import State
from newsletter.tokens import FEEDBACK_TOKEN_CHARS, PREFERENCES, UNSUBSCRIBE, feedback_base, link

GMAIL_CLIP_BYTES = 102_000
"""Gmail clips a message whose HTML is larger than this (about 102 KB)."""

CLIP_WARNING_RATIO = 0.9
"""Warn when the HTML reaches this share of the clip limit."""

PREVIEW_EMAIL = "preview@example.org"
"""The recipient shown in a preview without --subscriber."""

PREVIEW_TOKEN = "preview"
"""The token in a preview's links: it unsubscribes nobody."""

SCREENSHOT_WIDTHS: tuple[int, ...] = (375, 640)
"""Screenshot widths in CSS pixels: a phone, and the email's own width."""

SCREENSHOT_VIEWPORT_HEIGHT = 800
"""The window height while capturing (the PNG holds the whole page)."""


PREVIEW_VALUES: Mapping[str, str] = {
    "name": "",
    "unsubscribe_url": "https://example.invalid/unsubscribe",
    "preferences_url": "https://example.invalid/preferences",
    "feedback_url": "https://example.invalid/f/" + "x" * FEEDBACK_TOKEN_CHARS,
}
"""Slot values of a preview message (besides ``email``)."""


def build_preview_eml(
    rendered: RenderedDigest,
    *,
    sender: SenderSettings,
    to: str,
    date: dt.date,
    values: Mapping[str, str] | None = None,
) -> bytes:
    """One message as an ``.eml`` file for the preview command (dated 08:00 UTC that day)."""
    now = dt.datetime.combine(date, dt.time(8, 0), tzinfo=dt.UTC)
    template = build_template(rendered, sender=sender, date=date, now=now)
    slot_values = {**PREVIEW_VALUES, "email": to, **(values or {})}
    recipient = template.recipient(to, slot_values.get("name", ""), slot_values)
    return template.fill(recipient)


def register(group: click.Group) -> None:
    group.add_command(preview)


@click.command()
@click.option("--date", "date_", type=DATE, help="Day (default: today, UTC).")
@click.option("--source", help="hf, arxiv:CATS, sample, a file path or an http(s) URL.")
@click.option("--subscriber", help="Render this subscriber's email (variant, name, links) instead.")
@click.option("--subscribers", "subscribers_path", help="Subscriber list (default from config).")
@click.option(
    "--out",
    default="preview",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder the files are written to.",
)
@click.option("--open", "open_", is_flag=True, help="Open the HTML in the browser.")
@click.option(
    "--screenshot",
    is_flag=True,
    help="Also write digest-375.png and digest-640.png (whole page, headless Chromium).",
)
@click.option(
    "--dark",
    is_flag=True,
    help="With --screenshot, also capture dark mode (digest-375-dark.png, digest-640-dark.png).",
)
@config_option
def preview(
    date_: dt.date | None,
    source: str | None,
    subscriber: str | None,
    subscribers_path: str | None,
    out: str,
    open_: bool,
    screenshot: bool,
    dark: bool,
    config_path: str | None,
) -> None:
    """Write digest.html, digest.txt, digest.eml and digest.json for one day.

    Without --subscriber it is the full digest: every paper of the day. With
    --screenshot, headless Chromium (Debian's `chromium`) also captures the HTML at
    375 and 640 px wide.
    """
    settings = load_settings(config_path, overrides={"subscribers": subscribers_path})
    day = date_ or dt.datetime.now(dt.UTC).date()
    chosen = _find_subscriber(settings, subscriber) if subscriber else None
    prepared = prepare_day(
        settings,
        day,
        source=source,
        subscribers=[chosen] if chosen else [],
        web_url=web_url(settings, day),
        exclude=recently_sent(settings, day) if chosen else (),
    )
    variant = prepared.variants[0] if chosen else prepared.full
    paths = write_preview(settings, variant, Path(out), subscriber=chosen)
    if screenshot or dark:
        paths += write_screenshots(paths[0], dark=dark)
    for path in paths:
        click.echo(str(path))
    html_bytes = len(paths[0].read_bytes())
    click.echo(
        f"{count(len(variant.digest.papers), 'paper')} in "
        f"{count(len(variant.digest.topics), 'topic')}; "
        f"HTML {html_bytes:,} bytes (Gmail clips at {GMAIL_CLIP_BYTES:,})"
    )
    if html_bytes > GMAIL_CLIP_BYTES * CLIP_WARNING_RATIO:
        click.echo(f"warning: the HTML is {html_bytes / GMAIL_CLIP_BYTES:.0%} of the clip limit")
    if prepared.day.is_empty:
        click.echo(f"note: {prepared.day.source} has no papers for {day.isoformat()}")
    if open_:
        webbrowser.open(paths[0].resolve().as_uri())


def write_preview(
    settings: Settings, variant: Variant, out: Path, *, subscriber: Subscriber | None = None
) -> list[Path]:
    """Write the four preview files; return their paths, the HTML first.

    Without ``subscriber``: the full digest's neutral preview (:func:`preview_slots`);
    with one, that subscriber's own slot values, as ``send`` fills them.
    """
    out.mkdir(parents=True, exist_ok=True)
    if subscriber is None:
        recipient, slots = PREVIEW_EMAIL, preview_slots(settings, PREVIEW_EMAIL)
    else:
        recipient, slots = (
            subscriber.email,
            subscriber_slots(settings, subscriber, variant.digest.date),
        )
    html, text = variant.rendered.fill(slots)
    summary = digest_summary(variant.digest, summary_chars=variant.rendered.summary_chars)
    files = {
        "digest.html": html,
        "digest.txt": text,
        "digest.json": json.dumps(summary, indent=2, ensure_ascii=False),
    }
    paths = []
    for name, content in files.items():
        path = out / name
        path.write_text(content, encoding="utf-8")
        paths.append(path)
    eml = out / "digest.eml"
    eml.write_bytes(
        build_preview_eml(
            variant.rendered,
            sender=settings.sender,
            to=recipient,
            date=variant.digest.date,
            values=slots,
        )
    )
    paths.insert(2, eml)
    return paths


def write_screenshots(html: Path, *, dark: bool = False) -> list[Path]:
    """Capture ``html`` whole at each of :data:`SCREENSHOT_WIDTHS`, in light mode (and dark).

    The PNGs go beside it as ``digest-<width>.png`` (``digest-<width>-dark.png``).
    Raises :class:`~newsletter.errors.BrowserError` without a working Chromium.
    """
    schemes: tuple[ColorScheme, ...] = ("light", "dark") if dark else ("light",)
    written = []
    with launch() as browser:
        tab = browser.page
        for scheme in schemes:
            tab.emulate_color_scheme(scheme)
            for width in SCREENSHOT_WIDTHS:
                tab.set_viewport(width, SCREENSHOT_VIEWPORT_HEIGHT)
                tab.navigate(html.resolve().as_uri())
                suffix = "-dark" if scheme == "dark" else ""
                path = html.with_name(f"digest-{width}{suffix}.png")
                path.write_bytes(tab.screenshot())
                written.append(path)
    return written


def preview_slots(settings: Settings, email: str) -> dict[str, str]:
    """Per-subscriber values for a preview: no name (a neutral greeting), real-looking
    links that carry no valid token."""
    base = settings.digest.base_url
    return {
        "name": "",
        "email": email,
        "unsubscribe_url": link(base, UNSUBSCRIBE, PREVIEW_TOKEN),
        "preferences_url": link(base, PREFERENCES, PREVIEW_TOKEN),
        "feedback_url": feedback_base(base) + PREVIEW_TOKEN.ljust(FEEDBACK_TOKEN_CHARS, "0"),
    }


def recently_sent(settings: Settings, day: dt.date) -> set[str]:
    """The paper keys ``send`` leaves out of a subscriber's digest (``digest.dedupe_days``),
    from the state database when there is one (a preview creates none)."""
    if settings.digest.dedupe_days <= 0:
        return set()
    state = State.open_existing(settings.state)
    if state is None:
        return set()
    with state:
        return state.recent_paper_keys(day, settings.digest.dedupe_days)


def subscriber_slots(settings: Settings, subscriber: Subscriber, date: dt.date) -> dict[str, str]:
    """The slot values ``send`` gives ``subscriber`` on ``date``: name, address, signed links."""
    from newsletter.send import OFFLINE_BACKENDS, link_secret, subscriber_values

    offline = settings.delivery.backend in OFFLINE_BACKENDS
    secret = link_secret(settings, offline=offline)
    return subscriber_values(
        subscriber,
        base_url=settings.digest.base_url,
        secret=secret,
        list_id=settings.sender.list_id,
        date=date,
    )


def digest_summary(digest: Digest, *, summary_chars: int | None = None) -> dict[str, Any]:
    """The machine-readable digest: every paper under exactly one topic, with the
    ``summary`` the reader sees at ``summary_chars`` (the rendered length)."""
    style = digest.profile.summary
    return {
        "date": digest.date.isoformat(),
        "total_papers": digest.total_papers,
        "topics": [
            {
                "name": group.name,
                "papers": [
                    {
                        "id": rp.paper.id,
                        "title": rp.paper.title,
                        "url": rp.paper.url,
                        "topic": rp.topic,
                        "score": round(rp.score, 6),
                        "summary": summary_text(rp.paper, style, summary_chars),
                        "reasons": list(rp.reasons),
                    }
                    for rp in group.papers
                ],
            }
            for group in digest.topics
        ],
    }


def _find_subscriber(settings: Settings, email: str) -> Subscriber:
    from newsletter.subscribers import load_subscribers

    wanted = email.strip().lower()
    for entry in load_subscribers(settings.subscribers, state=settings.state):
        if entry.email.lower() == wanted:
            return entry
    raise ConfigError(f"{settings.subscribers}: no subscriber {email}")
