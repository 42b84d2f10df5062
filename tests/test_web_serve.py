"""``newsletter serve``: the command, its settings and the confirmation email senders."""

from __future__ import annotations

import email
import email.policy
import os
import time
from pathlib import Path

import httpx
import pytest
from aiosmtpd.handlers import Sink
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.cli.serve import build_app, confirmation_sender
from newsletter.config import DeliverySettings, DigestSettings, Settings
from newsletter.errors import ConfigError
from newsletter.prefs import PrefsStore
from newsletter.tokens import UNSUBSCRIBE, make_token
from tests.doubles import serve_process, smtp_server

ROOT = Path(__file__).resolve().parent.parent


def test_serve_needs_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "NEWSLETTER_SECRET_KEY" in result.output
    assert "Traceback" not in result.output


def test_serve_help() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--allow-signup", "--config"):
        assert option in result.output


def test_serve_runs_for_real_and_takes_a_one_click_post(tmp_path: Path) -> None:
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n", encoding="utf-8"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        "NEWSLETTER_SECRET_KEY": "serve-secret-0123456789abcdef0123456789",
        "PYTHONPATH": str(ROOT),
    }
    with serve_process(tmp_path, env) as run:
        token = make_token(
            b"serve-secret-0123456789abcdef0123456789", "ada@example.org", UNSUBSCRIBE
        )
        response = httpx.post(
            f"{run.url}/unsubscribe",
            params={"token": token},
            data={"List-Unsubscribe": "One-Click"},
            timeout=10,
        )
        assert response.status_code == 200
    err = run.stderr
    store = PrefsStore(f"sqlite:///{tmp_path}/newsletter.db")
    assert store.is_suppressed("ada@example.org")
    assert "POST /unsubscribe 200" in err
    assert token not in err


def test_outbox_confirmation(tmp_path: Path) -> None:
    settings = Settings(delivery=DeliverySettings(backend="outbox", outbox=str(tmp_path / "out")))
    send = confirmation_sender(settings)
    send("new@example.org", "http://news.example.org/confirm?token=abc")
    (eml,) = (tmp_path / "out").glob("confirm-*.eml")
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["To"] == "new@example.org"
    assert msg["Subject"] == "Confirm your subscription to Daily Papers"
    assert "http://news.example.org/confirm?token=abc" in msg.get_content()


def test_smtp_confirmation_reaches_a_real_smtp_server() -> None:
    class Keep(Sink):
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], bytes]] = []

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            self.messages.append(
                (envelope.mail_from, envelope.rcpt_tos, envelope.content)  # type: ignore[attr-defined]
            )
            return "250 OK"

    handler = Keep()
    with smtp_server(handler) as port:
        settings = Settings(
            delivery=DeliverySettings(backend="smtp", host="127.0.0.1", port=port, security="none")
        )
        confirmation_sender(settings)("new@example.org", "http://x/confirm?token=t")
        deadline = time.monotonic() + 10
        while not handler.messages and time.monotonic() < deadline:
            time.sleep(0.02)
    ((sender, rcpts, content),) = handler.messages
    assert sender == "digest@localhost"
    assert rcpts == ["new@example.org"]
    assert b"http://x/confirm?token=t" in content


def test_other_backends_are_refused_for_signup(tmp_path: Path) -> None:
    settings = Settings(
        delivery=DeliverySettings(backend="sendgrid"),
        secret_key="k" * 32,
        state=f"sqlite:///{tmp_path}/s.db",
    )
    with pytest.raises(ConfigError, match="sign-up confirmations"):
        build_app(settings, allow_signup=True)
    app = build_app(settings, allow_signup=False)
    assert app.signup is None


def test_build_app_with_signup(tmp_path: Path) -> None:
    settings = Settings(
        secret_key="k" * 32,
        state=f"sqlite:///{tmp_path}/s.db",
        subscribers=str(tmp_path / "subs.yaml"),
        digest=DigestSettings(base_url="https://news.example.org"),
        delivery=DeliverySettings(outbox=str(tmp_path / "out")),
    )
    app = build_app(settings, allow_signup=True)
    assert app.signup is not None
    assert app.signup.base_url == "https://news.example.org"
    assert app.signup.list_path == str(tmp_path / "subs.yaml")
