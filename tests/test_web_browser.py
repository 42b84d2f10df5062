"""A real browser: headless Chromium opens the unsubscribe link of an email that
``send_day`` rendered and sent (to the outbox), clicks the button, and the next send
skips that subscriber.

Driven over the Chrome DevTools Protocol by :mod:`newsletter.browser`. Without
Chromium this test FAILS (CI installs Debian's ``chromium``): it is never skipped.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

from newsletter.browser import Page
from newsletter.config import DeliverySettings, DigestSettings, Settings
from newsletter.prefs import PrefsStore
from newsletter.web import WebApp
from tests.doubles import EXAMPLE_LIST, send_collecting, serving

SECRET = "browser-test-secret-0123456789abcdef0"
DAY1 = dt.date(2026, 3, 2)
DAY2 = dt.date(2026, 3, 3)


def test_browser_unsubscribes_from_a_rendered_email(browser: Page, tmp_path: Path) -> None:
    listfile = tmp_path / "subscribers.yaml"
    listfile.write_bytes(EXAMPLE_LIST.read_bytes())
    state = f"sqlite:///{tmp_path}/state.db"
    store = PrefsStore(state)
    app = WebApp(store=store, secret=SECRET.encode(), title="Daily Papers")
    with serving(app) as base_url:
        settings = Settings(
            subscribers=str(listfile),
            state=state,
            secret_key=SECRET,
            delivery=DeliverySettings(backend="outbox", outbox=str(tmp_path / "outbox")),
            digest=DigestSettings(base_url=base_url),
        )
        _, first = send_collecting(settings, DAY1, source="sample")
        assert "ada@example.org" in {r.email for r in first}
        # The HTML part of the message ada was sent, opened as a page.
        (html_part,) = [
            m.get_body(("html",))
            for m in (
                email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in sorted((tmp_path / "outbox").glob("*.eml"))
            )
            if "ada@example.org" in str(m["To"])
        ]
        assert html_part is not None
        page_file = tmp_path / "digest.html"
        page_file.write_text(html_part.get_content(), encoding="utf-8")
        browser.send("Page.navigate", url=page_file.as_uri())
        browser.wait_for("Page.loadEventFired")

        browser.click_and_wait('a[href*="/unsubscribe?token="]')
        assert browser.evaluate("location.pathname") == "/unsubscribe"
        assert "Stop sending" in browser.evaluate("document.body.innerText")
        assert not store.is_suppressed("ada@example.org")  # opening the page changes nothing

        browser.click_and_wait("button#unsubscribe")
        assert "You are unsubscribed" in browser.evaluate("document.body.innerText")
        assert store.is_suppressed("ada@example.org")

        _, second = send_collecting(settings, DAY2, source="sample")
        sent_again = {r.email for r in second}
        assert "ada@example.org" not in sent_again
        assert sent_again == {r.email for r in first} - {"ada@example.org"}
