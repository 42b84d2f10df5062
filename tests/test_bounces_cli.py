"""The operator's path: send, import reports, the next send skips them, status shows rates."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.cli.run import Ops
from newsletter.headers import message_id_for
from newsletter.state import State

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
LIST_ID = "Daily Papers <daily-papers.example.org>"
READERS = ("ada@example.net", "bob@gmail.com", "carol@contoso.com", "frank@yahoo.com")
DAY1 = dt.date(2026, 12, 5)
DAY2 = dt.date(2026, 12, 6)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "bounce-fixtures-secret-0123456789abcdef")
    entries = "".join(f"  - email: {address}\n" for address in READERS)
    (tmp_path / "subscribers.yaml").write_text("subscribers:\n" + entries)
    (tmp_path / "newsletter.yaml").write_text(
        textwrap.dedent(
            f"""
            state: sqlite:///{tmp_path / "state.db"}
            subscribers: {tmp_path / "subscribers.yaml"}
            sender:
              from: Daily Papers <digest@example.org>
              list_id: {LIST_ID}
            delivery:
              backend: outbox
              outbox: {tmp_path / "outbox"}
            """
        )
    )
    return tmp_path


def _run(*args: str, obj: object = None) -> str:
    result = CliRunner().invoke(cli, list(args), obj=obj)
    assert result.exit_code == 0, result.output
    return result.output


def _outbox_recipients(site: Path) -> set[str]:
    out = set()
    for path in (site / "outbox").rglob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        out.add(msg["To"].addresses[0].addr_spec)
    return out


def test_import_then_next_send_skips_exactly_those_two_and_status_shows_rates(
    site: Path,
) -> None:
    first = _run("send", "--date", DAY1.isoformat(), "--source", "sample")
    assert "sent=4" in first
    assert _outbox_recipients(site) == set(READERS)
    with State(f"sqlite:///{site / 'state.db'}") as state:
        rows = state.deliveries(DAY1)
    # the fixtures quote the Message-IDs these settings give (the ledger keeps them)
    assert rows["frank@yahoo.com"].message_id == message_id_for(
        LIST_ID, DAY1, "frank@yahoo.com", "example.org"
    )

    reports = [
        FIXTURES / "postfix_user_unknown.eml",  # ada: hard, matched by its VERP token
        FIXTURES / "yahoo_arf_complaint.eml",  # frank: complaint, matched by Message-ID
        FIXTURES / "outlook_automatic_reply.eml",  # not a bounce
        FIXTURES / "postfix_delayed.eml",  # a warning only
    ]
    imported = _run("bounces", "import", *map(str, reports))
    assert "4 message(s): 2 new event(s) (complaint 1, hard 1)" in imported
    assert "2 not a bounce or complaint" in imported
    assert "suppressed ada@example.net (bounce)" in imported
    assert "suppressed frank@yahoo.com (complaint)" in imported
    again = _run("bounces", "import", *map(str, reports))
    assert "0 new event(s), 2 already imported" in again

    with State(f"sqlite:///{site / 'state.db'}") as state:
        events = {e.email: e for e in state.bounce_events()}
    assert events.keys() == {"ada@example.net", "frank@yahoo.com"}
    assert (events["ada@example.net"].matched, events["ada@example.net"].day) == ("verp", DAY1)
    assert events["ada@example.net"].status == "5.1.1"
    assert events["ada@example.net"].source.startswith("file:")
    assert (events["frank@yahoo.com"].matched, events["frank@yahoo.com"].day) == (
        "message-id",
        DAY1,
    )

    for path in (site / "outbox").rglob("*.eml"):
        path.unlink()
    second = _run("send", "--date", DAY2.isoformat(), "--source", "sample")
    assert "sent=2" in second
    assert "suppressed 2" in second
    assert _outbox_recipients(site) == {"bob@gmail.com", "carol@contoso.com"}

    clock = Ops(clock=lambda: dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC))
    status = json.loads(_run("status", "--json", obj=clock))
    week = status["deliverability"]["7d"]
    assert (week["sent"], week["hard"], week["soft"], week["complaints"]) == (6, 1, 0, 1)
    assert week["bounce_rate"] == pytest.approx(1 / 6)
    assert week["complaint_rate"] == pytest.approx(1 / 6)
    assert len(status["deliverability"]["warnings"]) == 4  # both rates, both windows
    human = _run("status", obj=clock)
    assert "last 7 days: 6 sent, bounces 16.67% (1 hard, 0 soft), complaints 16.67% (1)" in human
    assert "warning: complaint rate 16.67% over the last 7 days is above 0.1%" in human

    listed = _run("subscribers", "list")
    assert "suppressed: bounce" in listed and "suppressed: complaint" in listed

    sups = _run("suppressions", "list")
    assert "ada@example.net" in sups and "hard 5.1.1: 550 5.1.1" in sups
    exported = _run("suppressions", "export")
    assert exported.splitlines()[0].startswith("email,reason,source,since,event_id")
    assert len(exported.splitlines()) == 3

    refused = CliRunner().invoke(cli, ["suppressions", "remove", "frank@yahoo.com"])
    assert refused.exit_code == 2
    assert refused.output.startswith("error: frank@yahoo.com reported the digest as spam")
    resub = CliRunner().invoke(cli, ["subscribers", "set", "frank@yahoo.com", "--resubscribe"])
    assert resub.exit_code == 2 and "suppressions remove --force" in resub.output
    assert "lifted the suppression of ada@example.net (bounce)" in _run(
        "suppressions", "remove", "ada@example.net"
    )
    assert "lifted" in _run("suppressions", "remove", "--force", "frank@yahoo.com")


def test_soft_bounces_suppress_only_past_the_limit(site: Path) -> None:
    _run("send", "--date", DAY1.isoformat(), "--source", "sample")
    raw = (FIXTURES / "exim_mailbox_full.eml").read_bytes()
    folder = site / "reports"
    folder.mkdir()
    for n in range(3):
        (folder / f"full{n}.eml").write_bytes(
            raw.replace(b"E1tJ9bc-0004Y3-1q@", f"E1tJ9bc-{n}@".encode()).replace(
                b"gina@example.com", b"carol@contoso.com"
            )
        )
    out = _run("bounces", "import", str(folder / "full0.eml"), str(folder / "full1.eml"))
    assert "2 new event(s) (soft 2)" in out and "suppressed" not in out
    out = _run("bounces", "import", str(folder))
    assert "1 new event(s)" in out and "suppressed carol@contoso.com (soft-bounce)" in out


def test_mbox_and_maildir_are_read(site: Path) -> None:
    import mailbox

    box = mailbox.mbox(site / "bounces.mbox")
    for name in ("gmail_no_such_user.eml", "exim_user_unknown.eml", "gmail_vacation_reply.eml"):
        box.add((FIXTURES / name).read_bytes())
    box.close()
    out = _run("bounces", "import", str(site / "bounces.mbox"))
    assert "3 message(s): 2 new event(s) (hard 2)" in out
    maildir = mailbox.Maildir(site / "Maildir")
    maildir.add((FIXTURES / "outlook_recipient_not_found.eml").read_bytes())
    maildir.add((FIXTURES / "yahoo_no_account.eml").read_bytes())
    out = _run("bounces", "import", str(site / "Maildir"))
    assert "2 message(s): 2 new event(s) (hard 2)" in out
    with State(f"sqlite:///{site / 'state.db'}") as state:
        suppressed = {s.email for s in state.suppressions()}
    # unmatched reports (nothing was sent) still count against the address they name
    assert suppressed == {"bob@gmail.com", "dan@example.org", "carol@contoso.com", "erin@yahoo.com"}


def test_missing_path_is_one_error_line(site: Path) -> None:
    result = CliRunner().invoke(cli, ["bounces", "import", str(site / "nope.mbox")])
    assert result.exit_code == 2
    assert result.output == f"error: {site / 'nope.mbox'}: no such file or folder\n"


def test_refusal_at_submission_counts_as_a_hard_bounce(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typing import Any

    from tests.doubles import smtp_server

    class Refusing:
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            if address == "carol@contoso.com":
                return "550 5.1.1 <carol@contoso.com>: Recipient address rejected"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    with smtp_server(Refusing()) as port:
        for key, value in {
            "DELIVERY__BACKEND": "smtp",
            "DELIVERY__HOST": "127.0.0.1",
            "DELIVERY__PORT": str(port),
            "DELIVERY__SECURITY": "none",
            "DIGEST__BASE_URL": "https://papers.example.org",
        }.items():
            monkeypatch.setenv("NEWSLETTER_" + key, value)
        result = CliRunner().invoke(cli, ["send", "--date", DAY1.isoformat(), "--source", "sample"])
    assert result.exit_code == 1, result.output  # a permanent failure
    with State(f"sqlite:///{site / 'state.db'}") as state:
        (event,) = state.bounce_events()
        suppression = state.suppression("carol@contoso.com")
    assert (event.email, event.kind, event.status, event.source) == (
        "carol@contoso.com",
        "hard",
        "5.1.1",
        "submission",
    )
    assert (event.day, event.matched) == (DAY1, "ledger")
    assert suppression is not None and suppression.reason == "bounce"
    assert suppression.event_id == event.event_id
