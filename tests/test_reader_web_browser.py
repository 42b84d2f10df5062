"""Headless Chromium at 375 px on the preferences page: every field is edited the way a
person does it (typing, ticking, choosing), saved with the button, and shown back after a
reload; the state database holds each value; the page never scrolls sideways.

Without Chromium this test FAILS (CI installs Debian's ``chromium``): it is never skipped.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from newsletter.browser import Page
from newsletter.headers import message_id_for
from newsletter.models import Day, Subscriber
from newsletter.prefs import PrefsStore
from newsletter.tokens import PREFERENCES, feedback_token, make_token
from newsletter.web import ReaderOptions, WebApp
from tests.doubles import EXAMPLE_TOPICS, serving
from tests.steer_papers import ROBOTICS

SECRET = b"reader-browser-secret"


def _set(page: Page, selector: str, value: str) -> None:
    """Type into a field: the value set and the input/change events a person's typing fires."""
    page.evaluate(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        f" e.focus(); e.value = {json.dumps(value)};"
        " e.dispatchEvent(new Event('input', {bubbles: true}));"
        " e.dispatchEvent(new Event('change', {bubbles: true})); })()"
    )


def _tick(page: Page, selector: str) -> None:
    page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


def test_every_field_edits_and_persists_at_375px(browser: Page, tmp_path: Path) -> None:
    store = PrefsStore(f"sqlite:///{tmp_path}/state.db")
    store.save_day(Day(dt.date(2026, 1, 5), (ROBOTICS[0],), "test"))
    store.record_signal("ada@example.org", "more", ROBOTICS[0].key, paper=ROBOTICS[0])
    listed = {
        "ada@example.org": Subscriber(
            "ada@example.org", topics=("Robotics & embodied AI",), keywords=("grasping",)
        )
    }
    app = WebApp(store=store, secret=SECRET, topics=EXAMPLE_TOPICS, lookup=listed.get)
    with serving(app) as base:
        url = f"{base}/preferences?token={make_token(SECRET, 'ada@example.org', PREFERENCES)}"
        browser.set_viewport(375, 800, mobile=True)
        browser.navigate(url)
        assert browser.evaluate("document.documentElement.scrollWidth") <= 375
        assert browser.evaluate("document.querySelector('#keywords').value") == "grasping"

        _tick(browser, 'input[name=topic][value="Robotics & embodied AI"]')  # off
        _tick(browser, 'input[name=topic][value="Agents & tool use"]')  # on
        _set(browser, "#keywords", "diffusion policy\nrobot arm")
        _set(browser, "#authors", "Ada Lovelace\nLeCun, Yann")
        _tick(browser, "input[name=summary][value=titles]")
        _set(browser, "#max_papers", "12")
        _tick(browser, "input[name=frequency][value=weekly]")
        _set(browser, "#weekday", "wed")
        _set(browser, "#timezone", "America/New_York")
        _tick(browser, "input[name=paused]")
        browser.click_and_wait("#save")
        assert "Saved. Your emails are paused." in browser.evaluate("document.body.innerText")

        browser.navigate(url)  # a fresh load shows what was stored
        shown = browser.evaluate(
            "(() => ({"
            " topics: [...document.querySelectorAll('input[name=topic]:checked')]"
            "   .map(e => e.value),"
            " keywords: document.querySelector('#keywords').value,"
            " authors: document.querySelector('#authors').value,"
            " summary: document.querySelector('input[name=summary]:checked').value,"
            " papers: document.querySelector('#max_papers').value,"
            " frequency: document.querySelector('input[name=frequency]:checked').value,"
            " weekday: document.querySelector('#weekday').value,"
            " timezone: document.querySelector('#timezone').value,"
            " paused: document.querySelector('input[name=paused]').checked,"
            " width: document.documentElement.scrollWidth }))()"
        )
        assert shown == {
            "topics": ["Agents & tool use"],
            "keywords": "diffusion policy\nrobot arm",
            "authors": "Ada Lovelace\nLeCun, Yann",
            "summary": "titles",
            "papers": "12",
            "frequency": "weekly",
            "weekday": "wed",
            "timezone": "America/New_York",
            "paused": True,
            "width": min(shown["width"], 375),  # never wider than the phone
        }

        # the feedback given so far is listed and can be cleared with its button
        assert ROBOTICS[0].title in browser.evaluate("document.body.innerText")
        browser.click_and_wait("button.clear")
        assert store.signals("ada@example.org") == []

    overlay = store.preferences("ada@example.org")
    assert overlay is not None and overlay.paused
    assert store.apply(list(listed.values())) == []  # paused: left out of the next send
    assert (overlay.topics, overlay.keywords, overlay.authors) == (
        ("Agents & tool use",),
        ("diffusion policy", "robot arm"),
        ("Ada Lovelace", "LeCun, Yann"),
    )
    assert (overlay.summary, overlay.max_papers, overlay.frequency, overlay.weekday) == (
        "titles",
        12,
        "weekly",
        "wed",
    )
    assert overlay.timezone == "America/New_York"


def test_a_feedback_link_confirms_with_its_one_button_at_375px(
    browser: Page, tmp_path: Path
) -> None:
    """The email's "more like this" link in a real browser: the page's form posts under the
    page's Content-Security-Policy (form-action 'self') and records the signal."""
    day, list_id, domain = dt.date(2026, 1, 5), "Daily <daily.example>", "papers.example"
    store = PrefsStore(f"sqlite:///{tmp_path}/state.db")
    store.save_day(Day(day, (ROBOTICS[0],), "test"))
    store.mark_pending(
        day, {"ada@example.org": message_id_for(list_id, day, "ada@example.org", domain)}
    )
    apps: list[WebApp] = []
    with serving(lambda environ, start: apps[0](environ, start)) as base:
        options = ReaderOptions(base_url=base, message_domain=domain)
        apps.append(WebApp(store=store, secret=SECRET, reader=options))
        token = feedback_token(SECRET, "ada@example.org", list_id=list_id, date=day)
        browser.set_viewport(375, 800, mobile=True)
        browser.navigate(f"{base}/f/{token}/more/{ROBOTICS[0].id}")
        assert ROBOTICS[0].title in browser.evaluate("document.body.innerText")
        assert browser.evaluate("document.documentElement.scrollWidth") <= 375
        assert store.signals("ada@example.org") == []  # opening the link changes nothing
        browser.click_and_wait("#confirm-feedback")
        assert "Thank you" in browser.evaluate("document.body.innerText")
    assert [(s.signal, s.target) for s in store.signals("ada@example.org")] == [
        ("more", ROBOTICS[0].key)
    ]
