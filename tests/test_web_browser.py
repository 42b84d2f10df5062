"""A real browser: headless Chromium opens the unsubscribe link of an email that
``send_day`` rendered and sent (to the outbox), clicks the button, and the next send
skips that subscriber.

Driven over the Chrome DevTools Protocol with websocket-client. Without Chromium this
test FAILS (CI installs Debian's ``chromium``): it is never skipped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

from newsletter.config import DeliverySettings, DigestSettings, Settings
from newsletter.prefs import PrefsStore
from newsletter.send import send_day
from newsletter.web import WebApp, make_server

ROOT = Path(__file__).resolve().parent.parent
SECRET = "browser-test-secret"
DAY1 = dt.date(2026, 3, 2)
DAY2 = dt.date(2026, 3, 3)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)
STARTUP_SECONDS = 60.0
STEP_SECONDS = 30.0


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "headless Chromium is required for this test and was not found: "
        "install it with `apt-get install -y chromium` (.ci/run does)",
        pytrace=False,
    )


class Page:
    """One browser tab over the DevTools protocol: send commands, wait for events."""

    def __init__(self, ws_url: str) -> None:
        self._ws = websocket.create_connection(ws_url, timeout=STEP_SECONDS, suppress_origin=True)
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    def close(self) -> None:
        self._ws.close()

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self._events.append(message)

    def wait_for(self, event: str) -> dict[str, Any]:
        deadline = time.monotonic() + STEP_SECONDS
        while time.monotonic() < deadline:
            for index, message in enumerate(self._events):
                if message.get("method") == event:
                    del self._events[: index + 1]
                    return message
            self._events.append(json.loads(self._ws.recv()))
        raise AssertionError(f"no {event} within {STEP_SECONDS} s")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def click_and_wait(self, selector: str) -> None:
        self._events.clear()
        clicked = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        assert clicked, f"nothing matches {selector} on {self.evaluate('location.href')}"
        self.wait_for("Page.loadEventFired")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End the browser we started and its helper processes (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _page_target(port: int, deadline: float) -> str:
    """The DevTools websocket of the browser's first tab (it may take a moment to appear)."""
    while True:
        try:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        except httpx.HTTPError:
            targets = []
        pages = [t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"]
        if pages:
            return str(pages[0])
        if time.monotonic() > deadline:
            pytest.fail(f"chromium opened no tab within {STARTUP_SECONDS} s")
        time.sleep(0.1)


@pytest.fixture
def browser() -> Iterator[Page]:
    binary = chromium_path()
    # Chromium's helper processes may still be writing the profile while they exit.
    with tempfile.TemporaryDirectory(
        prefix="chromium-profile-", ignore_cleanup_errors=True
    ) as profile:
        proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the helpers end with it
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + STARTUP_SECONDS
            while not port_file.exists() or len(port_file.read_text().split()) < 2:
                if proc.poll() is not None:
                    pytest.fail(f"chromium exited at start-up with {proc.returncode}")
                if time.monotonic() > deadline:
                    pytest.fail(f"chromium did not open DevTools within {STARTUP_SECONDS} s")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            page = Page(_page_target(port, deadline))
            page.send("Page.enable")
            try:
                yield page
            finally:
                page.close()
        finally:
            _stop_group(proc)


def test_browser_unsubscribes_from_a_rendered_email(browser: Page, tmp_path: Path) -> None:
    listfile = tmp_path / "subscribers.yaml"
    listfile.write_bytes((ROOT / "subscribers.example.yaml").read_bytes())
    state = f"sqlite:///{tmp_path}/state.db"
    store = PrefsStore(state)
    app = WebApp(store=store, secret=SECRET.encode(), title="Daily Papers")
    httpd = make_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        settings = Settings(
            subscribers=str(listfile),
            state=state,
            secret_key=SECRET,
            delivery=DeliverySettings(backend="outbox", outbox=str(tmp_path / "outbox")),
            digest=DigestSettings(base_url=f"http://127.0.0.1:{httpd.server_address[1]}"),
        )
        first = send_day(settings, DAY1, source="sample")
        assert "ada@example.org" in {r.email for r in first.results}
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

        second = send_day(settings, DAY2, source="sample")
        sent_again = {r.email for r in second.results}
        assert "ada@example.org" not in sent_again
        assert sent_again == {r.email for r in first.results} - {"ada@example.org"}
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
