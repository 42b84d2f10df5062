"""Test doubles and servers shared by the tests.

- ``FakeRendered`` / ``sample_rendered``: a stand-in for newsletter.render.RenderedDigest.
- ``smtp_server``: an aiosmtpd server on loopback for the duration of a ``with`` block.
- ``serving``: a WSGI app (the web app) served in a thread on loopback, the same way.
- ``EXAMPLE_LIST`` / ``EXAMPLE_TOPICS``: the shipped example subscriber list and its topics.
"""

from __future__ import annotations

import html as html_lib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from benchmarks.bench_smtp import free_port
from newsletter.message import SLOTS
from newsletter.web import WSGIApp, make_server

EXAMPLE_LIST = Path(__file__).resolve().parent.parent / "subscribers.example.yaml"
"""The example subscriber list at the top of the repository."""

EXAMPLE_TOPICS = (
    "Robotics & embodied AI",
    "Multimodal LLMs",
    "Image & video generation",
    "LLM reasoning & RL",
    "Agents & tool use",
)
"""The topics the example subscriber list uses, in the default taxonomy's order."""


@dataclass(frozen=True)
class FakeRendered:
    """Same attributes as RenderedDigest: slots written as {{slot}} in html and text."""

    subject: str
    html: str
    text: str
    preheader: str = ""

    def fill(self, values: Mapping[str, str]) -> tuple[str, str]:
        html, text = self.html, self.text
        for slot in SLOTS:
            value = values.get(slot, "")
            escaped = html_lib.escape(value, quote=True).encode("ascii", "xmlcharrefreplace")
            html = html.replace("{{" + slot + "}}", escaped.decode("ascii"))
            text = text.replace("{{" + slot + "}}", value)
        return html, text


def sample_rendered(subject: str = "Daily Papers — 2026-11-25: Robotics") -> FakeRendered:
    html = (
        "<!doctype html>\n<html><body>\n"
        "<p>Hello {{name}},</p>\n"
        "<p>Today&#8217;s papers for {{email}} &#8212; na&#239;ve diffusion.</p>\n"
        + "".join(
            f'<p>Paper {i}: <a href="https://hf.co/papers/2511.{i:05d}">title {i}</a></p>\n'
            for i in range(30)
        )
        + '<p><a href="{{unsubscribe_url}}">Unsubscribe</a> | '
        '<a href="{{preferences_url}}">Preferences</a></p>\n'
        "</body></html>\n"
    )
    text = (
        "Hello {{name}},\n\n"
        "Today’s papers for {{email}} — naïve diffusion, “quoted” = equals.\n"
        + "".join(f"{i}. title {i} https://hf.co/papers/2511.{i:05d}\n" for i in range(30))
        + "A very long line "
        + "word " * 40
        + "\n"
        "Trailing space here \n"
        ".leading dot\n"
        "Unsubscribe: {{unsubscribe_url}}\nPreferences: {{preferences_url}}\n"
    )
    return FakeRendered(subject=subject, html=html, text=text, preheader="Top: robotics")


@contextmanager
def smtp_server(handler: Any, **controller_kwargs: Any) -> Iterator[int]:
    """Run an aiosmtpd ``Controller`` for ``handler`` on 127.0.0.1 at a free port; yields
    the port and always stops the server (aiosmtpd cannot report port 0's choice)."""
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **controller_kwargs)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@contextmanager
def serving(app: WSGIApp, **options: Any) -> Iterator[str]:
    """Serve ``app`` with newsletter.web.make_server (and its ``options``) on 127.0.0.1 at
    a free port in a daemon thread; yields the base URL (``http://127.0.0.1:PORT``) and
    always shuts the server down."""
    httpd = make_server(app, host="127.0.0.1", port=0, **options)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(timeout=5)
