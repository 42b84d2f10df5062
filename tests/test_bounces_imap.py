"""``bounces import --imap`` against an IMAP responder on loopback speaking the protocol
(RFC 9051 subset: CAPABILITY, LOGIN, SELECT, UID SEARCH/FETCH/STORE, LOGOUT) to imaplib."""

from __future__ import annotations

import os
import shlex
import socketserver
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.bounces.parse import MAX_REPORT_BYTES
from newsletter.cli import cli
from newsletter.state import State

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"


@dataclass
class Mailbox:
    user: str
    password: str
    messages: dict[int, bytes]
    seen: set[int] = field(default_factory=set)
    fake_sizes: dict[int, int] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)


class _Imap(socketserver.StreamRequestHandler):
    box: Mailbox

    def send(self, text: str | bytes) -> None:
        self.wfile.write(text if isinstance(text, bytes) else text.encode())

    def handle(self) -> None:
        box = self.server.box  # type: ignore[attr-defined]
        self.send("* OK [CAPABILITY IMAP4rev1] test IMAP ready\r\n")
        authed = False
        while True:
            line = self.rfile.readline()
            if not line:
                return
            words = shlex.split(line.decode().strip())
            tag, command, args = words[0], words[1].upper(), words[2:]
            box.commands.append(command + (" " + args[0].upper() if args else ""))
            if command == "CAPABILITY":
                self.send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n")
            elif command == "LOGIN":
                authed = args == [box.user, box.password]
                verdict = "OK logged in" if authed else "NO [AUTHENTICATIONFAILED] bad"
                self.send(f"{tag} {verdict}\r\n")
            elif command == "LOGOUT":
                self.send(f"* BYE\r\n{tag} OK bye\r\n")
                return
            elif not authed:
                self.send(f"{tag} BAD log in first\r\n")
            elif command == "SELECT":
                self.send(
                    f"* {len(box.messages)} EXISTS\r\n* FLAGS (\\Seen)\r\n"
                    f"{tag} OK [READ-WRITE] selected\r\n"
                )
            elif command == "UID":
                self._uid(box, tag, args[0].upper(), args[1:])
            else:
                self.send(f"{tag} BAD unknown\r\n")

    def _uid(self, box: Mailbox, tag: str, sub: str, args: list[str]) -> None:
        if sub == "SEARCH":
            uids = sorted(u for u in box.messages if args[0] == "ALL" or u not in box.seen)
            self.send(f"* SEARCH {' '.join(map(str, uids))}\r\n{tag} OK done\r\n")
        elif sub == "FETCH":
            uid = int(args[0])
            data = box.messages[uid]
            if "RFC822.SIZE" in args[1]:
                size = box.fake_sizes.get(uid, len(data))
                self.send(f"* {uid} FETCH (UID {uid} RFC822.SIZE {size})\r\n")
            else:
                self.send(f"* {uid} FETCH (UID {uid} BODY[] {{{len(data)}}}\r\n".encode() + data)
                self.send(")\r\n")
            self.send(f"{tag} OK done\r\n")
        elif sub == "STORE":
            box.seen.add(int(args[0]))
            self.send(f"* {args[0]} FETCH (FLAGS (\\Seen))\r\n{tag} OK done\r\n")
        else:
            self.send(f"{tag} BAD unknown\r\n")


@pytest.fixture
def imap() -> Iterator[tuple[int, Mailbox]]:
    messages = {
        1: (FIXTURES / "postfix_user_unknown.eml").read_bytes(),
        2: (FIXTURES / "yahoo_arf_complaint.eml").read_bytes(),
        3: (FIXTURES / "outlook_automatic_reply.eml").read_bytes(),
        4: (FIXTURES / "gmail_no_such_user.eml").read_bytes(),
        5: b"Subject: huge\r\n\r\nx\r\n",
    }
    box = Mailbox("bounces@example.org", 'p"w\\rd', messages, seen={4})
    box.fake_sizes[5] = MAX_REPORT_BYTES + 1
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Imap)
    server.daemon_threads = True
    server.box = box  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server.server_address[1], box
    finally:
        server.shutdown()
        server.server_close()


def test_imap_import_reads_unseen_reports_and_flags_them(
    imap: tuple[int, Mailbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, box = imap
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "newsletter.yaml").write_text(
        textwrap.dedent(
            f"""
            state: sqlite:///{tmp_path / "state.db"}
            bounces:
              host: 127.0.0.1
              port: {port}
              username: bounces@example.org
              security: none
            """
        )
    )
    missing = CliRunner().invoke(cli, ["bounces", "import", "--imap"])
    assert missing.exit_code == 2
    assert "NEWSLETTER_BOUNCES__PASSWORD" in missing.output

    monkeypatch.setenv("NEWSLETTER_BOUNCES__PASSWORD", "wrong")
    refused = CliRunner().invoke(cli, ["bounces", "import", "--imap"])
    assert refused.exit_code == 2
    assert "login refused for bounces@example.org" in refused.output
    assert "wrong" not in refused.output

    monkeypatch.setenv("NEWSLETTER_BOUNCES__PASSWORD", 'p"w\\rd')
    result = CliRunner().invoke(cli, ["bounces", "import", "--imap"])
    assert result.exit_code == 0, result.output
    assert "4 message(s): 2 new event(s) (complaint 1, hard 1)" in result.output
    assert "1 not a bounce or complaint, 1 skipped" in result.output
    assert box.seen == {1, 2, 3, 4, 5}
    assert "UID FETCH" in box.commands and "UID STORE" in box.commands
    with State(f"sqlite:///{tmp_path / 'state.db'}") as state:
        sources = {e.email: e.source for e in state.bounce_events()}
    assert sources["ada@example.net"].startswith(f"imap://127.0.0.1:{port}/INBOX;UID=1")

    again = CliRunner().invoke(cli, ["bounces", "import", "--imap"])
    assert "0 message(s)" in again.output
    everything = CliRunner().invoke(cli, ["bounces", "import", "--imap", "--all"])
    assert "3 new event(s)" not in everything.output
    assert "1 new event(s) (hard 1), 2 already imported" in everything.output
