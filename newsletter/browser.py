"""A small Chrome DevTools Protocol client: headless Chromium for checks and screenshots.

::

    with launch() as browser:               # Debian's /usr/bin/chromium, headless
        page = browser.page
        page.set_viewport(375, 800)         # CSS pixels, scale 1
        page.emulate_color_scheme("dark")   # prefers-color-scheme
        page.navigate(Path("digest.html").resolve().as_uri())
        page.evaluate("document.title")
        png = page.screenshot()             # the full page, PNG bytes

Chromium is started with ``--remote-debugging-port=0`` in a throw-away profile; the
port it picked is read from the profile's ``DevToolsActivePort`` file and the first
tab is driven over one WebSocket (websocket-client). Used by ``newsletter preview
--screenshot`` and by the browser tests. websocket-client is the optional extra
``newsletter[browser]``: a plain install has no browser client. A missing extra, or a
missing or failing browser, raises :class:`~newsletter.errors.BrowserError` with what to
install.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import httpx

from newsletter.errors import BrowserError

__all__ = [
    "CHROMIUM_NAMES",
    "Browser",
    "ColorScheme",
    "Page",
    "find_chromium",
    "launch",
]

CHROMIUM_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome")
"""Executables tried in order on PATH (Debian's package installs ``/usr/bin/chromium``)."""

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)
"""Headless, offline, no first-run noise, DevTools on a free port."""

INSTALL_HINT = "install it with `apt-get install -y chromium`"
"""What to do when no browser is found."""

STARTUP_SECONDS = 60.0
"""How long Chromium may take to open DevTools."""

STEP_SECONDS = 30.0
"""How long one protocol command or awaited event may take."""

POLL_SECONDS = 0.05
"""How often to look for the DevToolsActivePort file and the first tab."""

STOP_SECONDS = 10.0
"""How long Chromium may take to exit after SIGTERM before it gets SIGKILL."""

ColorScheme = Literal["light", "dark"]
"""What ``prefers-color-scheme`` can answer."""


EXTRA_HINT = "pip install 'newsletter[browser]'"
"""How to get the browser client (websocket-client), an optional extra."""


def _websocket() -> ModuleType:
    """websocket-client, or BrowserError saying how to install the extra."""
    try:
        import websocket
    except ImportError:
        raise BrowserError(
            f"screenshots need the browser client, which is not installed: {EXTRA_HINT}"
        ) from None
    return websocket


def find_chromium(binary: str | None = None) -> str:
    """The browser executable: ``binary`` if given, else the first of :data:`CHROMIUM_NAMES`."""
    for name in (binary,) if binary else CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    wanted = binary or " / ".join(CHROMIUM_NAMES)
    raise BrowserError(f"headless Chromium is needed and {wanted} was not found: {INSTALL_HINT}")


class Page:
    """One browser tab over the DevTools protocol: send commands, wait for events."""

    def __init__(self, ws_url: str, *, timeout: float = STEP_SECONDS) -> None:
        self._timeout = timeout
        self._websocket = _websocket()
        self._ws = self._websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    def close(self) -> None:
        self._ws.close()

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one protocol command and return its result (events seen meanwhile are kept)."""
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message', message)}")
                return dict(message.get("result", {}))
            self._events.append(message)

    def wait_for(self, event: str) -> dict[str, Any]:
        """Wait for the next ``event`` (e.g. ``Page.loadEventFired``); older events are dropped."""
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            for index, message in enumerate(self._events):
                if message.get("method") == event:
                    del self._events[: index + 1]
                    return message
            self._events.append(self._receive())
        raise BrowserError(f"no {event} within {self._timeout:g} s")

    def _receive(self) -> dict[str, Any]:
        try:
            message = json.loads(self._ws.recv())
        except self._websocket.WebSocketTimeoutException:
            raise BrowserError(f"Chromium did not answer within {self._timeout:g} s") from None
        except self._websocket.WebSocketException as exc:
            raise BrowserError(f"lost the connection to Chromium: {exc}") from None
        return dict(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (JSON-able values; promises are awaited)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript failed: {text}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        """Open ``url`` and wait until it has loaded."""
        self._events.clear()
        answer = self.send("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        self.wait_for("Page.loadEventFired")

    def click_and_wait(self, selector: str) -> None:
        """Click the first element matching ``selector`` and wait for the next page load."""
        self._events.clear()
        clicked = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        if not clicked:
            raise BrowserError(f"nothing matches {selector} on {self.evaluate('location.href')}")
        self.wait_for("Page.loadEventFired")

    def set_viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        """Make the window ``width`` x ``height`` CSS pixels at device scale 1."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    def emulate_color_scheme(self, scheme: ColorScheme | None) -> None:
        """Answer ``prefers-color-scheme`` with ``scheme`` (None: the browser's own)."""
        features = [{"name": "prefers-color-scheme", "value": scheme or ""}]
        self.send("Emulation.setEmulatedMedia", features=features)

    def screenshot(self, *, full_page: bool = True) -> bytes:
        """A PNG of the viewport, or of the whole page at the viewport's width."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            content = metrics.get("cssContentSize") or metrics["contentSize"]
            viewport = metrics.get("cssLayoutViewport") or metrics["layoutViewport"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": viewport["clientWidth"],
                "height": max(content["height"], viewport["clientHeight"]),
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        result = self.send("Page.captureScreenshot", **params)
        return base64.b64decode(result["data"])


class Browser(contextlib.closing["Browser"]):
    """A running headless Chromium and its first tab; close it (or use ``with``)."""

    def __init__(self, process: subprocess.Popen[bytes], profile: str, page: Page) -> None:
        super().__init__(self)  # ``with`` gives this Browser and closes it
        self._process = process
        self._profile = profile
        self.page = page

    def close(self) -> None:
        """Close the tab, stop the browser, remove its profile."""
        try:
            self.page.close()
        finally:
            _stop(self._process)
            shutil.rmtree(self._profile, ignore_errors=True)


def launch(
    binary: str | None = None,
    *,
    startup_timeout: float = STARTUP_SECONDS,
    timeout: float = STEP_SECONDS,
) -> Browser:
    """Start headless Chromium in a temporary profile and connect to its first tab."""
    websocket = _websocket()
    executable = find_chromium(binary)
    profile = tempfile.mkdtemp(prefix="newsletter-chromium-")
    try:
        process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: its helpers end with it
        )
    except OSError as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise BrowserError(f"cannot start {executable}: {exc}") from None
    try:
        deadline = time.monotonic() + startup_timeout
        port = _devtools_port(process, Path(profile), deadline, startup_timeout)
        page = Page(_first_tab(port, deadline, startup_timeout), timeout=timeout)
        page.send("Page.enable")
    except BaseException as exc:
        _stop(process)
        shutil.rmtree(profile, ignore_errors=True)
        if isinstance(exc, OSError | websocket.WebSocketException):
            raise BrowserError(f"cannot reach Chromium's DevTools: {exc!r}") from None
        raise
    return Browser(process, profile, page)


def _devtools_port(
    process: subprocess.Popen[bytes], profile: Path, deadline: float, timeout: float
) -> int:
    """The port from ``DevToolsActivePort`` (port, then browser path: wait for both lines)."""
    port_file = profile / "DevToolsActivePort"
    while True:
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return int(lines[0])
        if process.poll() is not None:
            raise BrowserError(f"Chromium exited at start-up with status {process.returncode}")
        if time.monotonic() > deadline:
            raise BrowserError(f"Chromium did not open DevTools within {timeout:g} s")
        time.sleep(POLL_SECONDS)


def _first_tab(port: int, deadline: float, timeout: float) -> str:
    """The DevTools WebSocket URL of the first tab (it may take a moment to appear)."""
    while True:
        try:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=timeout).json()
        except (httpx.HTTPError, ValueError):
            targets = []
        pages = [t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"]
        if pages:
            return str(pages[0])
        if time.monotonic() > deadline:
            raise BrowserError(f"Chromium opened no tab within {timeout:g} s")
        time.sleep(POLL_SECONDS)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the browser we started and its helper processes (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=STOP_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue
