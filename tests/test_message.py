from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import smtplib
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import dkim
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.cli.preview import build_preview_eml
from newsletter.config import SenderSettings
from newsletter.headers import InvalidRecipient, message_id_for
from newsletter.message import (
    DkimSigner,
    MessageTemplate,
    Recipient,
    build_template,
)
from newsletter.render import RenderedDigest
from newsletter.slots import MAX_NAME_CHARS
from tests.doubles import dkim_key, hand_rendered, sample_rendered

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SENDER = SenderSettings(
    from_="Daily Papers <digest@papers.example>",
    reply_to="Editors <editors@papers.example>",
    list_id="Daily Papers <daily.papers.example>",
)


def values(email_addr: str, name: str = "") -> dict[str, str]:
    return {
        "name": name,
        "email": email_addr,
        "unsubscribe_url": f"https://papers.example/unsubscribe?token=t-{email_addr}&x=1",
        "preferences_url": f"https://papers.example/preferences?token=p-{email_addr}",
        "feedback_url": "https://papers.example/f/" + "F" * 36,
    }


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def template_for(rendered: RenderedDigest | None = None, **kwargs: object) -> MessageTemplate:
    return build_template(
        rendered or sample_rendered(), sender=SENDER, date=DATE, now=NOW, **kwargs
    )  # type: ignore[arg-type]


def content_parts(msg: EmailMessage) -> list[tuple[str, str]]:
    """(type, decoded content) of each part, line ends as in Python text."""
    return [(p.get_content_type(), p.get_content().replace("\r\n", "\n")) for p in msg.iter_parts()]


def _ended(part: str) -> str:
    return part if part.endswith("\n") else part + "\n"


def read_to(raw: bytes) -> tuple[str, str]:
    """(name, address) of the To header, its RFC 2047 words decoded by the stdlib as RFC 2047
    says (``email.policy.default`` puts a space between adjacent words of a display name)."""
    value = email.message_from_bytes(raw, policy=email.policy.compat32)["To"]
    phrase, _, address = value.replace("\r\n ", " ").rpartition(" <")
    if phrase.startswith("=?"):  # encoded words: RFC 2047 decoding (no quoting inside)
        return str(make_header(decode_header(phrase))), address.rstrip(">")
    return parseaddr(value)


def assert_reads_back(raw: bytes, rendered: RenderedDigest, recipient: Recipient) -> None:
    """The stdlib parser reads ``raw`` as the headers and parts this subscriber should get."""
    msg = parse(raw)
    assert read_to(raw) == (recipient.name[:MAX_NAME_CHARS], recipient.email)
    assert str(msg["From"]) == "Daily Papers <digest@papers.example>"
    assert str(msg["Reply-To"]) == "Editors <editors@papers.example>"
    assert msg["Subject"] == " ".join(rendered.subject.split())
    assert msg["Message-ID"] == recipient.message_id
    assert msg["List-Unsubscribe"] == (
        f"<{recipient.values['unsubscribe_url']}>, "
        "<mailto:editors@papers.example?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["MIME-Version"] == "1.0"
    html, text = rendered.fill(recipient.values)
    # a part always ends with a line end on the wire; the content is the same
    assert content_parts(msg) == [("text/plain", _ended(text)), ("text/html", _ended(html))]
    assert raw.isascii() and all(len(line) <= 998 for line in raw.split(b"\r\n"))


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("ada@example.org", "Ada Lovelace"),
        ("jose@example.org", "José Ñúñez"),
        ("q@example.org", 'Quote "the" Person, Jr.'),
        ("empty@example.org", ""),
        ("long@example.org", "Ünïcödé " * 12),
        ("emoji@example.org", "Robot 🤖 Fan"),
    ],
)
def test_fill_parses_to_the_headers_and_parts_of_the_subscriber(address: str, name: str) -> None:
    rendered = sample_rendered()
    template = template_for(rendered)
    recipient = template.recipient(address, name, values(address, name))
    assert_reads_back(template.fill(recipient), rendered, recipient)


def test_wire_format_is_ascii_7bit_with_short_lines() -> None:
    template = template_for()
    raw = template.fill(
        template.recipient("jose@example.org", "José", values("jose@example.org", "José"))
    )
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = parse(raw)
    text_part, html_part = list(msg.iter_parts())
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert html_part["Content-Transfer-Encoding"] == "7bit"
    body = raw.split(b"\r\n\r\n", 2)[2].split(b"--" + msg.get_boundary().encode())[0]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))


def test_required_headers() -> None:
    template = template_for()
    msg = parse(
        template.fill(template.recipient("ada@example.org", "Ada", values("ada@example.org")))
    )
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Subject"] == "Daily Papers — 2026-11-25: Robotics"
    assert msg["List-Unsubscribe"].startswith(
        "<https://papers.example/unsubscribe?token=t-ada@example.org&x=1>"
    )
    assert "<mailto:editors@papers.example?subject=unsubscribe>" in msg["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "Daily Papers <daily.papers.example>"
    assert msg["Date"] == "Wed, 25 Nov 2026 08:00:00 +0000"
    assert msg["Reply-To"] == "Editors <editors@papers.example>"
    assert msg["Message-ID"] == message_id_for(
        SENDER.list_id, DATE, "ada@example.org", "papers.example"
    )


def test_message_id_is_stable_per_subscriber_and_day() -> None:
    a = message_id_for("L", DATE, "a@x.org", "d.org")
    assert a == message_id_for("L", DATE, "A@X.org", "d.org")
    assert a != message_id_for("L", DATE + dt.timedelta(days=1), "a@x.org", "d.org")
    assert a != message_id_for("L", DATE, "b@x.org", "d.org")
    assert re.fullmatch(r"<[0-9a-f]{32}@d\.org>", a)
    # two templates of the same day (two variants, two runs) agree
    t1, t2 = template_for(), template_for(sample_rendered("Other subject"))
    r1 = t1.recipient("a@x.org", "", values("a@x.org"))
    r2 = t2.recipient("a@x.org", "", values("a@x.org"))
    assert r1.message_id == r2.message_id


def test_non_ascii_subject_is_rfc2047_encoded() -> None:
    template = template_for(sample_rendered("Статьи дня — «роботы» 🤖"))
    raw = template.fill(template.recipient("a@x.org", "", values("a@x.org")))
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in header_block
    assert parse(raw)["Subject"] == "Статьи дня — «роботы» 🤖"


@pytest.mark.parametrize(
    "address",
    [
        "a@x.org\r\nBcc: evil@x.org",
        "a@x.org\nBcc: evil@x.org",
        "no-at-sign",
        "a b@x.org",
        "<a@x.org>",
        "jösé@x.org",
    ],
)
def test_bad_addresses_are_refused(address: str) -> None:
    template = template_for()
    with pytest.raises(InvalidRecipient):
        template.recipient(address, "", values("a@x.org"))


def test_url_with_line_break_is_refused() -> None:
    template = template_for()
    bad = {**values("a@x.org"), "unsubscribe_url": "https://x.org/u\r\nBcc: evil@x.org"}
    with pytest.raises(InvalidRecipient):
        template.recipient("a@x.org", "", bad)


HEADER_NAMES = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "mime-version",
    "content-type",
}


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(min_size=0, max_size=80),
    subject=st.text(min_size=1, max_size=120),
)
def test_no_header_injection_from_names_or_subjects(name: str, subject: str) -> None:
    rendered = hand_rendered(subject=subject, html="<p>Hi {{name}}</p>\n", text="Hi {{name}}\n")
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    raw = template.fill(template.recipient("a@x.org", name, values("a@x.org", name)))
    assert raw.isascii()
    msg = parse(raw)
    assert {k.lower() for k in msg} == HEADER_NAMES
    assert len(msg.get_all("To") or []) == 1
    for key in msg:
        assert "\n" not in str(msg[key]) and "\r" not in str(msg[key])
    assert msg["To"].addresses[0].addr_spec == "a@x.org"


@settings(max_examples=80, deadline=None)
@given(
    value=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
        max_size=200,
    )
)
def test_any_text_slot_value_survives_quoted_printable(value: str) -> None:
    rendered = hand_rendered(
        subject="s",
        html="<p>{{name}}</p>\n",
        text="Dear {{name}}, naïve = fine\nsecond {{name}}line \n",
    )
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    recipient = template.recipient("a@x.org", "x", {**values("a@x.org"), "name": value})
    msg = parse(template.fill(recipient))
    text_part, html_part = list(msg.iter_parts())
    expected_html, expected_text = rendered.fill(recipient.values)
    assert text_part.get_content().replace("\r\n", "\n") == expected_text
    assert html_part.get_content().replace("\r\n", "\n") == expected_html


def test_an_html_line_the_renderer_did_not_wrap_is_refused_at_build_time() -> None:
    html = "<p>" + "x" * 700 + '<a href="{{unsubscribe_url}}">u</a></p>\n'
    rendered = hand_rendered(subject="s", html=html, text="{{unsubscribe_url}}\n")
    with pytest.raises(ValueError, match="lines of at most 998 bytes"):
        build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    no_slots = hand_rendered(subject="s", html="<p>" + "y" * 1200 + "</p>\n", text="t\n")
    with pytest.raises(ValueError, match="lines of at most 998 bytes"):
        build_template(no_slots, sender=SENDER, date=DATE, now=NOW)


def test_dkim_signature_verifies_and_covers_list_unsubscribe() -> None:
    private, public = dkim_key()
    signer = DkimSigner(private_key=private, selector="s1", domain="papers.example")
    template = template_for(dkim=signer)
    raw = template.fill(
        template.recipient("jose@example.org", "José", values("jose@example.org", "José"))
    )
    assert raw.startswith(b"DKIM-Signature:")
    signed = parse(raw)["DKIM-Signature"]
    tags = dict(
        part.strip().split("=", 1)
        for part in " ".join(str(signed).split()).split(";")
        if "=" in part
    )
    covered = tags["h"].replace(" ", "").lower().split(":")
    assert "list-unsubscribe" in covered and "list-unsubscribe-post" in covered

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.papers.example."
        return b"v=DKIM1; k=rsa; p=" + public

    assert dkim.verify(raw, dnsfunc=dnsfunc)
    tampered = raw.replace(b"unsubscribe?token=t-jose", b"unsubscribe?token=t-evil")
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)


def test_preview_eml() -> None:
    raw = build_preview_eml(sample_rendered(), sender=SENDER, to="me@example.org", date=DATE)
    msg = parse(raw)
    assert msg["To"] == "me@example.org"
    assert msg["Date"] == "Wed, 25 Nov 2026 08:00:00 +0000"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert "me@example.org" in next(iter(msg.iter_parts())).get_content()


# --------------------------------------------------------------------------- with the real renderer


@pytest.fixture(scope="module")
def real_rendered() -> Any:
    from newsletter.config import DigestSettings
    from newsletter.models import Digest, Paper, RankedPaper, TopicGroup
    from newsletter.render import render
    from newsletter.templating import load_templates

    papers = [
        RankedPaper(
            Paper(
                title=f"Naïve diffusion policies, part {i} — “robots” ≥ humans",
                abstract="We study things. " * 20,
                id=f"2511.{i:05d}",
                url=f"https://huggingface.co/papers/2511.{i:05d}",
                authors=("Zoë Müller", "李雷"),
                ai_summary="A short TL;DR with ünïcödé.",
            ),
            score=10.0 - i,
            topic="Robotics",
        )
        for i in range(12)
    ]
    digest = Digest(date=DATE, topics=(TopicGroup("Robotics", tuple(papers)),), total_papers=12)
    return render(digest, settings=DigestSettings(), templates=load_templates(None))


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("ada@example.org", "Ada"),
        ("jose@example.org", "José Ñúñez"),
        ("x@example.org", ""),
        ("l@example.org", "Ü" * 90),
    ],
)
def test_real_render_fill_reads_back(real_rendered: Any, address: str, name: str) -> None:
    template = build_template(real_rendered, sender=SENDER, date=DATE, now=NOW)
    recipient = template.recipient(address, name, values(address, name))
    assert_reads_back(template.fill(recipient), real_rendered, recipient)


def test_real_render_refused_value_is_an_invalid_recipient(real_rendered: Any) -> None:
    template = build_template(real_rendered, sender=SENDER, date=DATE, now=NOW)
    bad = {**values("a@x.org"), "preferences_url": "javascript:alert(1)"}
    with pytest.raises(InvalidRecipient):
        template.recipient("a@x.org", "", bad)


@pytest.mark.parametrize("length", range(70, 82))
def test_long_ascii_values_with_equals_signs_wrap_validly(length: int) -> None:
    rendered = hand_rendered(
        subject="s", html="<p>{{unsubscribe_url}}</p>\n", text="L: {{unsubscribe_url}}\n"
    )
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    url = ("https://p.example/u?a=" + "b=c&" * 40)[:length]
    recipient = template.recipient("a@x.org", "", {**values("a@x.org"), "unsubscribe_url": url})
    raw = template.fill(recipient)
    boundary = parse(raw).get_boundary()
    assert boundary is not None
    text_body = raw.split(b"\r\n\r\n", 2)[2].split(b"\r\n--" + boundary.encode())[0]
    assert text_body.startswith(b"L:=20=\r\nhttps://")
    assert all(len(line) <= 76 for line in text_body.split(b"\r\n"))
    assert content_parts(parse(raw))[0][1] == f"L: {url}\n"


@pytest.mark.parametrize(
    "address", ["ada@example.org\n", "ada@example.org\r\n", "\nada@example.org"]
)
def test_an_address_with_a_line_break_at_either_end_is_refused(address: str) -> None:
    from newsletter.headers import check_address

    with pytest.raises(InvalidRecipient, match="not a deliverable address"):
        check_address(address)


# --------------------------------------------------------------------------- SMTP DATA form


def _stdlib_data(raw: bytes) -> bytes:
    """What smtplib sends of ``raw`` as DATA content (``smtplib.quotedata``: a second dot
    on every line that starts with one), ending in a line end as ``sendmail`` does."""
    data = smtplib.quotedata(raw.decode("latin-1")).encode("latin-1")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


_DOTTY_WORDS = st.lists(st.sampled_from([".", "..", ".x", "a.b", "x", "."]), max_size=3).map(
    " ".join
)
_DOTTY_SLOT = st.sampled_from(
    ["", "{{name}}", "{{email}}", "{{feedback_url}}", "{{unsubscribe_url}}"]
)
_DOTTY_LINE = st.builds(  # words, at most one slot (lines stay under 998 bytes), words
    lambda before, slot, after: f"{before}{slot}{after}", _DOTTY_WORDS, _DOTTY_SLOT, _DOTTY_WORDS
)
_DOTTY_PART = st.lists(_DOTTY_LINE, min_size=1, max_size=12).map("\n".join)
_DOTTY_NAME = st.sampled_from([".", ".bob", "..", "Bob", "x.", "", ". ."]) | st.text(
    st.sampled_from("ab. é"), max_size=90
)
_DOTTY_URL = st.text(st.sampled_from("ab.="), min_size=40, max_size=160).map(
    lambda path: "https://papers.example/" + path
)


@settings(max_examples=300, deadline=None)
@given(html=_DOTTY_PART, text=_DOTTY_PART, name=_DOTTY_NAME, url=_DOTTY_URL)
@example(  # a link whose second quoted-printable line starts with a dot
    html="{{name}}",
    text="x\n{{unsubscribe_url}}",
    name="Ada",
    url="https://papers.example/" + "a" * 52 + ".bbbb",
)
def test_smtp_data_is_the_message_as_smtplib_quotes_it(
    html: str, text: str, name: str, url: str
) -> None:
    """Lines that start with a dot, in the fixed bytes and in any value (a name, a link's
    quoted-printable lines), at the start of a line or not: the DATA form of every
    message is what the stdlib makes of the message."""
    template = template_for(hand_rendered("Dots", html, text))
    links = {"unsubscribe_url": url, "preferences_url": url + ".", "feedback_url": url + "/."}
    recipient = template.recipient(
        "dot@example.org", name, {**values("dot@example.org", name), **links}
    )
    raw = template.fill(recipient)
    assert template.smtp_data.fill(recipient) == _stdlib_data(raw)
    assert template.smtp_data.plain is template and template.smtp_data.smtp_data is (
        template.smtp_data
    )


def test_smtp_data_of_a_real_render_and_a_dotted_name(real_rendered: Any) -> None:
    template = template_for(real_rendered)
    for name in (".", ".Ada", "Ada"):
        recipient = template.recipient("ada@example.org", name, values("ada@example.org", name))
        raw = template.fill(recipient)
        assert b"\r\n." in raw  # the renderer's CSS lines start with a dot
        assert template.smtp_data.fill(recipient) == _stdlib_data(raw)


def test_smtp_data_keeps_a_dkim_signature_of_the_message_itself() -> None:
    private, public = dkim_key()
    signer = DkimSigner(private_key=private, selector="s1", domain="papers.example")
    template = template_for(dkim=signer)
    recipient = template.recipient("jose@example.org", ".José", values("jose@example.org"))
    data = template.smtp_data.fill(recipient)
    assert b"\r\n..leading dot" in data
    received = data.replace(b"\r\n..", b"\r\n.")  # what the server stores (RFC 5321 4.5.2)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return b"v=DKIM1; k=rsa; p=" + public

    assert dkim.verify(received, dnsfunc=dnsfunc)
    assert not dkim.verify(data, dnsfunc=dnsfunc)  # the DATA form is not the message
