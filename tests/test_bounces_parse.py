"""Delivery reports as real MTAs write them become the right event, or none."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from newsletter.bounces.parse import (
    COMPLAINT,
    HARD,
    MAX_REPORT_BYTES,
    SOFT,
    classify,
    parse_report,
)
from newsletter.errors import ReportError

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "email", "kind", "status", "message_id", "fmt"),
    [
        (
            "postfix_user_unknown.eml",
            "ada@example.net",
            HARD,
            "5.1.1",
            "<048f15a2a5c1acb4a5502771b145ecaa@example.org>",
            "dsn",
        ),
        (
            "gmail_no_such_user.eml",
            "bob@gmail.com",
            HARD,
            "5.1.1",
            "<52c2f9fe08d4540d0ad5ad58e5a4bc72@example.org>",
            "dsn",
        ),
        (
            "outlook_recipient_not_found.eml",
            "carol@contoso.com",
            HARD,
            "5.1.10",
            "<3059391fe9a0f73c314345ad85ea6a22@example.org>",
            "dsn",
        ),
        (
            "exim_user_unknown.eml",
            "dan@example.org",
            HARD,
            "5.1.1",
            "<ca12c48794ee2f950cb1dde9c20e2f42@example.org>",
            "text",
        ),
        (
            "exim_mailbox_full.eml",
            "gina@example.com",
            SOFT,
            "5.2.2",
            "<241241c02df6a721a761daf6bc83bdc3@example.org>",
            "text",
        ),
        (
            "yahoo_no_account.eml",
            "erin@yahoo.com",
            HARD,
            "554",
            "<d681e7ed41f9a51a24ca91b3504e5b4d@example.org>",
            "text",
        ),
        (
            "yahoo_arf_complaint.eml",
            "frank@yahoo.com",
            COMPLAINT,
            None,
            "<00056b5b8f8664c65c6f05a8e07dd110@example.org>",
            "arf",
        ),
    ],
)
def test_each_mta_shape_gives_one_event(
    name: str, email: str, kind: str, status: str | None, message_id: str, fmt: str
) -> None:
    (report,) = parse_report(_read(name))
    assert report.email == email
    assert report.kind == kind
    assert report.status == status
    assert report.message_id == message_id
    assert report.format == fmt
    assert report.at is not None and report.at.tzinfo is not None
    assert report.diagnostic


@pytest.mark.parametrize(
    "name",
    [
        "postfix_delayed.eml",
        "exim_delay_warning.eml",
        "outlook_automatic_reply.eml",
        "gmail_vacation_reply.eml",
    ],
)
def test_non_bounces_give_no_event(name: str) -> None:
    assert parse_report(_read(name)) == []


def test_forwarded_recipient_keeps_the_verp_address() -> None:
    (report,) = parse_report(_read("postfix_forwarded_verp.eml"))
    assert report.email == "c.lovelace@old-isp.example"
    assert report.return_path == "bounces+20261205-6galfviiuz4wxsvc@example.org"
    assert report.kind == HARD


def test_event_ids_are_stable_per_report_and_address() -> None:
    first = parse_report(_read("gmail_no_such_user.eml"))
    again = parse_report(_read("gmail_no_such_user.eml"))
    assert [r.event_id for r in first] == [r.event_id for r in again]
    assert first[0].event_id.endswith(":bob@gmail.com")


def test_not_spam_feedback_is_no_complaint() -> None:
    raw = _read("yahoo_arf_complaint.eml").replace(
        b"Feedback-Type: abuse", b"Feedback-Type: not-spam"
    )
    assert parse_report(raw) == []


def test_dsn_with_several_recipients_reports_only_the_failed_ones() -> None:
    raw = _read("postfix_user_unknown.eml").replace(
        b"Final-Recipient: rfc822; ada@example.net\n",
        b"Final-Recipient: rfc822; zed@example.net\nAction: delivered\nStatus: 2.0.0\n\n"
        b"Final-Recipient: rfc822; ada@example.net\n",
        1,
    )
    assert [r.email for r in parse_report(raw)] == ["ada@example.net"]


def test_ordinary_mail_is_no_report() -> None:
    raw = (
        b"From: Reader <reader@example.com>\nTo: digest@example.org\nSubject: thanks!\n"
        b"Message-ID: <1@example.com>\n\nLoved today's papers. user unknown? 550 no.\n"
    )
    assert parse_report(raw) == []


def test_oversized_input_is_refused_unread() -> None:
    with pytest.raises(ReportError, match="larger than"):
        parse_report(b"x" * (MAX_REPORT_BYTES + 1))


def test_hostile_nesting_and_garbage_are_bounded() -> None:
    depth = 5000
    head = b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
    nested = b"--b\nContent-Type: multipart/mixed; boundary=b\n\n" * depth
    started = time.monotonic()
    try:
        result = parse_report(head + nested)
    except ReportError:
        result = []
    assert result == []
    assert parse_report(b"\x00\xff" * 1000) == []
    long_line = b"Content-Type: multipart/report; report-type=delivery-status\n\n" + b"5" * 500_000
    assert parse_report(long_line) == []
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("status", "text", "kind"),
    [
        ("5.1.1", "user unknown", HARD),
        ("4.2.2", "mailbox full", SOFT),
        ("5.2.2", "552 mailbox full", SOFT),
        ("5.7.1", "message rejected as spam", SOFT),
        (None, "550 no such user here", HARD),
        (None, "Quota exceeded", SOFT),
        ("4.4.7", "expired", SOFT),
        (None, "", HARD),
    ],
)
def test_classify(status: str | None, text: str, kind: str) -> None:
    assert classify(status, text) == kind
