"""Test doubles and servers shared by the tests.

- ``hand_rendered`` / ``sample_rendered``: a RenderedDigest of hand-written parts.
- ``free_port``: a free TCP port on loopback.
- ``slot_values``: every slot's value for one address.
- ``smtp_server``: an aiosmtpd server on loopback for the duration of a ``with`` block.
- ``serving``: a WSGI app (the web app) served in a thread on loopback, the same way.
- ``EXAMPLE_LIST`` / ``EXAMPLE_TOPICS``: the shipped example subscriber list and its topics.
- ``deliver`` / ``send_collecting``: ``deliver_variants`` / ``send_day`` with every result
  collected (the report only counts them).
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from newsletter.config import Settings
from newsletter.delivery.base import BackendOptions, RetryPolicy
from newsletter.delivery.smtp import SmtpBackend
from newsletter.models import SendResult
from newsletter.render import RenderedDigest, encoded_size
from newsletter.send import RunReport, SendOptions, VariantLike, deliver_variants, send_day
from newsletter.slots import SLOTS, placeholder
from newsletter.state import State
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


HAND_NONCE = "0123456789abcdef"
"""The placeholder nonce of :func:`hand_rendered`'s digests."""


def hand_rendered(subject: str, html: str, text: str, preheader: str = "") -> RenderedDigest:
    """A RenderedDigest of hand-written parts whose slots are written ``{{slot}}``."""
    for slot in SLOTS:
        html = html.replace("{{" + slot + "}}", placeholder(HAND_NONCE, slot))
        text = text.replace("{{" + slot + "}}", placeholder(HAND_NONCE, slot))
    return RenderedDigest(
        subject=subject,
        html=html,
        text=text,
        preheader=preheader,
        nonce=HAND_NONCE,
        html_bytes=encoded_size(html),
        budget=10**9,
        summary_chars=None,
        compact_papers=0,
    )


def slot_values(email: str, name: str = "", **links: str) -> dict[str, str]:
    """Every slot's value for ``email``: the given links, else https ones made from it."""
    return {
        "name": name,
        "email": email,
        "unsubscribe_url": links.get("unsubscribe_url", f"https://p.example/u?t={email}"),
        "preferences_url": links.get("preferences_url", f"https://p.example/p?t={email}"),
        "feedback_url": links.get("feedback_url", "https://p.example/f/" + "F" * 36),
    }


def sample_rendered(subject: str = "Daily Papers — 2026-11-25: Robotics") -> RenderedDigest:
    html = (
        "<!doctype html>\n<html><body>\n"
        "<p>Hello {{name}},</p>\n"
        "<p>Today&#8217;s papers for {{email}} &#8212; na&#239;ve diffusion.</p>\n"
        + "".join(
            f'<p>Paper {i}: <a href="https://hf.co/papers/2511.{i:05d}">title {i}</a>'
            f' <a href="{{{{feedback_url}}}}/more/2511.{i:05d}">more like this</a></p>\n'
            for i in range(30)
        )
        + '<p><a href="{{unsubscribe_url}}">Unsubscribe</a> |\n'
        '<a href="{{preferences_url}}">Preferences</a> |\n'
        '<a href="{{feedback_url}}/more/2511.00001">more like this</a></p>\n'
        "</body></html>\n"
    )
    text = (
        "Hello {{name}},\n\n"
        "Today’s papers for {{email}} — naïve diffusion, “quoted” = equals.\n"
        + "".join(
            f"{i}. title {i} https://hf.co/papers/2511.{i:05d}\n"
            f"   More like this: {{{{feedback_url}}}}/more/2511.{i:05d}\n"
            for i in range(30)
        )
        + "A very long line "
        + "word " * 40
        + "\n"
        "Trailing space here \n"
        ".leading dot\n"
        "Unsubscribe: {{unsubscribe_url}}\nPreferences: {{preferences_url}}\n"
        "More like paper 1: {{feedback_url}}/more/2511.00001\n"
    )
    return hand_rendered(subject=subject, html=html, text=text, preheader="Top: robotics")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


def dkim_key() -> tuple[bytes, bytes]:
    """A fresh RSA key for DKIM tests: (private key PEM, public key as a DNS ``p=`` value)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public)


def plain_smtp_backend(port: int) -> SmtpBackend:
    """An SMTP backend to 127.0.0.1:``port``: no TLS, one connection, one attempt."""
    return SmtpBackend(
        host="127.0.0.1",
        port=port,
        envelope_from="digest@papers.example",
        security="none",
        connections=1,
        options=BackendOptions(retry=RetryPolicy(max_attempts=1)),
    )


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


SERVE_COMMAND = (sys.executable, "-c", "from newsletter.cli import main; main()", "serve")
"""``newsletter serve`` run from this interpreter."""


@dataclass
class ServeRun:
    """A running ``newsletter serve``: its URL, and what it wrote to stderr once stopped."""

    url: str
    stderr: str = ""


@contextmanager
def serve_process(folder: Path, env: Mapping[str, str], *args: str) -> Iterator[ServeRun]:
    """The real ``newsletter serve --port 0 ARGS`` as a process in ``folder``."""
    proc = subprocess.Popen(
        [*SERVE_COMMAND, "--port", "0", *args],
        cwd=folder,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line
        run = ServeRun(line.split()[2])
        yield run
    finally:
        proc.terminate()
        run_err = proc.communicate(timeout=20)[1]
    run.stderr = run_err


def deliver(
    variants: Sequence[VariantLike], *, ledger: State | None = None, **options: Any
) -> tuple[RunReport, list[SendResult]]:
    """:func:`newsletter.send.deliver_variants` with ``options`` (SendOptions' fields),
    and every result in the order they came (through ``progress``)."""
    results: list[SendResult] = []
    report = deliver_variants(
        variants, SendOptions(progress=results.append, **options), ledger=ledger
    )
    return report, results


def send_collecting(
    settings: Settings, date: dt.date, **options: Any
) -> tuple[RunReport, list[SendResult]]:
    """:func:`newsletter.send.send_day`, and every result in the order they came."""
    results: list[SendResult] = []
    report = send_day(settings, date, progress=results.append, **options)
    return report, results
