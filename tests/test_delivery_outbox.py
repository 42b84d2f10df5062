"""The offline backends (outbox, memory) and the backend alias table."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest

from newsletter.config import SenderSettings, load_settings
from newsletter.delivery import BACKENDS, backend_class, make_backend
from newsletter.delivery.memory import MemoryBackend
from newsletter.delivery.outbox import OutboxBackend, eml_name
from newsletter.errors import ConfigError
from newsletter.message import build_template
from newsletter.models import SendStatus
from tests.doubles import sample_rendered, slot_values

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SENDER = SenderSettings(from_="Daily Papers <digest@papers.example>")


def test_outbox_writes_one_eml_per_message_and_a_rerun_replaces_it(tmp_path: Path) -> None:
    tpl = build_template(sample_rendered(), sender=SENDER, date=DATE, now=NOW)
    people = [tpl.recipient(f"u{i}@x.org", "", slot_values(f"u{i}@x.org")) for i in range(3)]
    backend = OutboxBackend(tmp_path / "outbox")
    results = backend.send(tpl, people)
    results += backend.send(tpl, people[:1])
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == sorted(
        eml_name("2026-11-25", f"u{i}@x.org") for i in range(3)
    )
    assert all(r.status == SendStatus.SENT for r in results)
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not list((tmp_path / "outbox").glob(".tmp-*"))


def test_outbox_name_hides_the_address() -> None:
    name = eml_name("2026-11-25", "Ada@Example.org")
    assert name == eml_name("2026-11-25", "ada@example.org")
    assert name.startswith("2026-11-25-") and name.endswith(".eml") and "ada" not in name


def test_memory_backend_keeps_messages() -> None:
    tpl = build_template(sample_rendered(), sender=SENDER, date=DATE, now=NOW)
    backend = MemoryBackend()
    backend.send(tpl, [tpl.recipient("a@x.org", "A", slot_values("a@x.org"))])
    (sent,) = backend.outbox
    assert sent.email == "a@x.org" and sent.raw.startswith(b"From: ")


def test_alias_table_and_dotted_path(tmp_path: Path) -> None:
    assert set(BACKENDS) == {
        "smtp",
        "sendgrid",
        "mailgun",
        "postmark",
        "resend",
        "ses",
        "outbox",
        "memory",
    }
    for alias in BACKENDS:
        assert backend_class(alias).name == alias
    assert backend_class("newsletter.delivery.memory:MemoryBackend") is MemoryBackend
    with pytest.raises(ConfigError, match="unknown backend 'pigeon'"):
        backend_class("pigeon")
    with pytest.raises(ConfigError, match="is not a Backend"):
        backend_class("newsletter.config:Settings")
    settings = load_settings(None, env={"NEWSLETTER_DELIVERY__OUTBOX": str(tmp_path / "o")})
    backend = make_backend(settings)
    assert isinstance(backend, OutboxBackend) and backend.folder == tmp_path / "o"
