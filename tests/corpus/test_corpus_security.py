"""The hostile-input corpus, part two: attacks on the public surface (issue 12).

Sources that try to exhaust memory or send the fetch elsewhere, mail servers and
providers that echo our credentials back, sign-up floods and replays. Each case runs the
real CLI, or real servers on loopback, and checks the exact outcome: one ``error:`` line,
nothing leaked, nothing changed.
"""

from __future__ import annotations

import base64
import email
import email.policy
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from aiosmtpd.smtp import AuthResult

from newsletter.prefs import PrefsStore
from newsletter.tokens import UNSUBSCRIBE, make_token
from tests.corpus.helpers import DATE, assert_one_line_error, invoke
from tests.doubles import serve_process, smtp_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEWSLETTER_SOURCE__RETRIES", "0")


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def http_server(
    handle: Handler, host: str = "127.0.0.1", *, methods: tuple[str, ...] = ("GET",)
) -> Iterator[tuple[int, list[str]]]:
    """A real HTTP server on ``host`` answering ``methods`` with ``handle``; yields its
    port and the list of paths it was asked for."""
    seen: list[str] = []

    def answer(self: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(self.path)
        handle(self)

    class Answer(http.server.BaseHTTPRequestHandler):
        for _method in methods:
            locals()[f"do_{_method}"] = answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Answer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- sources that try to exhaust memory

BOMB_INFLATED = 500 * 1024 * 1024
"""What the gzip bomb inflates to: 500 MiB of zeros."""

PEAK_RSS_LIMIT = 300 * 1024 * 1024
"""The fetch of the bomb must stay under this much resident memory."""


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """500 MiB of zeros, gzip-compressed (about 509 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(BOMB_INFLATED // len(block))]
    return b"".join([*parts, packer.flush()])


def test_a_gzip_bomb_ends_in_one_line_with_bounded_memory(gzip_bomb: bytes, tmp_path: Path) -> None:
    assert 400_000 < len(gzip_bomb) < 600_000

    def bomb(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Encoding", "gzip")
        request.send_header("Content-Length", str(len(gzip_bomb)))
        request.end_headers()
        request.wfile.write(gzip_bomb)

    with http_server(bomb) as (port, _seen):
        url = f"http://127.0.0.1:{port}/day.json"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
            "PYTHONPATH": str(ROOT),
            "NEWSLETTER_SOURCE__RETRIES": "0",
        }
        code = "from newsletter.cli import main; main()"
        args = [sys.executable, "-c", code, "fetch", "--source", url, "--date", DATE]
        err, returncode, peak = _run_measured(args, cwd=tmp_path, env=env)
    assert returncode == 2, err
    assert err.splitlines() == [
        f"error: {url}: the answer is larger than source.max_bytes "
        "(33554432 bytes after decompression)"
    ]
    print(f"peak RSS of the fetch: {peak / 2**20:.0f} MiB")
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"


def _run_measured(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[str, int, int]:
    """Run ``args``; (stderr, exit code, peak resident memory in bytes) of that process
    alone (wait4 gives one child's own resource usage)."""
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    killer = threading.Timer(120, proc.kill)
    killer.start()
    try:
        assert proc.stderr is not None
        with proc.stderr:
            err = proc.stderr.read().decode()
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return err, proc.returncode, usage.ru_maxrss * 1024  # Linux reports KiB


def test_a_source_larger_than_max_bytes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SOURCE__MAX_BYTES", "1000")

    def big(request: http.server.BaseHTTPRequestHandler) -> None:
        body = b"[" + b" " * 5000 + b"]"
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    with http_server(big) as (port, _seen):
        url = f"http://127.0.0.1:{port}/day.json"
        result = invoke(["fetch", "--source", url, "--date", DATE])
    assert_one_line_error(
        result, f"error: {url}: the answer is larger than source.max_bytes (1000 bytes"
    )


# --- sources that redirect elsewhere


def _redirect_to(location: str) -> Handler:
    def answer(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", location)
        request.send_header("Content-Length", "0")
        request.end_headers()

    return answer


def _papers(request: http.server.BaseHTTPRequestHandler) -> None:
    body = b'[{"paper": {"id": "2611.00001", "title": "Internal page", "summary": "S"}}]'
    request.send_response(200)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def test_a_redirect_to_another_internal_host_is_refused() -> None:
    with http_server(_papers, host="127.0.0.2") as (inner_port, inner_seen):
        inner = f"http://127.0.0.2:{inner_port}/admin/papers.json"
        with http_server(_redirect_to(inner)) as (port, _seen):
            url = f"http://127.0.0.1:{port}/day.json"
            result = invoke(["fetch", "--source", url, "--date", DATE])
    assert_one_line_error(
        result,
        f"error: {url}: redirect to {inner} refused: another host over plain http",
    )
    assert inner_seen == []  # the internal host was never asked
    assert "Internal page" not in result.output


def test_a_redirect_on_the_configured_host_is_followed() -> None:
    def answer(request: http.server.BaseHTTPRequestHandler) -> None:
        if request.path == "/day.json":
            _redirect_to("/moved/day.json")(request)
        else:
            _papers(request)

    with http_server(answer) as (port, seen):
        url = f"http://127.0.0.1:{port}/day.json"
        result = invoke(["fetch", "--source", url, "--date", DATE, "--json"])
    assert result.exit_code == 0, result.output
    assert "Internal page" in result.output
    assert seen == ["/day.json", "/moved/day.json"]


def test_a_redirect_loop_stops() -> None:
    with http_server(_redirect_to("/day.json")) as (port, seen):
        url = f"http://127.0.0.1:{port}/day.json"
        result = invoke(["fetch", "--source", url, "--date", DATE])
    assert_one_line_error(result, f"error: {url}: more than 5 redirects")
    assert len(seen) == 6


# --- servers that echo our credentials back

SMTP_USER = "digest-user"
SMTP_PASSWORD = "hunter2-Sup3r/Secret+Pass=word"
API_KEY = "key-0123456789abcdef/+ABCDEFGHij"
SIGNING_KEY = "signing-key-0123456789abcdef-0123456789"
SUBSCRIBERS = "subscribers:\n  - email: ada@example.org\n  - email: bob@example.org\n"


def leak_forms(secret: str, *, user: str) -> dict[str, bytes]:
    """Every spelling of ``secret`` that must not appear anywhere, by name."""
    raw = secret.encode()
    forms = {
        "plain": raw,
        "base64": base64.b64encode(raw),
        "base64-unpadded": base64.b64encode(raw).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "auth-plain": base64.b64encode(b"\0" + user.encode() + b"\0" + raw),
        "basic": base64.b64encode(user.encode() + b":" + raw),
        "url-encoded": quote(secret, safe="").encode(),
        "form-encoded": quote_plus(secret).encode(),
    }
    return forms


def assert_no_leak(where: dict[str, bytes], secret: str, *, user: str) -> None:
    assert where, "nothing to search"
    for place, content in where.items():
        for name, form in leak_forms(secret, user=user).items():
            assert form not in content, f"{name} form of the secret in {place}"


def _state_files(folder: Path) -> dict[str, bytes]:
    """The state database and its journal files, as bytes."""
    found = {str(p): p.read_bytes() for p in folder.glob("newsletter.db*")}
    assert found, "no state database was written"
    return found


def _env(**extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        "PYTHONPATH": str(ROOT),
        "NEWSLETTER_SECRET_KEY": SIGNING_KEY,
        **extra,
    }


def _newsletter(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    proc = subprocess.run(
        [sys.executable, "-c", "from newsletter.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


class EchoingAuth:
    """An SMTP server's AUTH that puts what the client sent into its 535 reply: the
    base64 it received, and that decoded (plain and URL-encoded)."""

    async def auth_PLAIN(self, server: Any, args: list[str]) -> AuthResult:
        blob = args[1] if len(args) > 1 else ""
        _authz, user, password = base64.b64decode(blob).decode().split("\0")
        await server.push(
            f"535 5.7.8 bad credentials {blob} = {user}:{password} ({quote(password, safe='')})"
        )
        return AuthResult(success=False, handled=True)

    async def auth_LOGIN(self, server: Any, args: list[str]) -> AuthResult:
        password = await server.challenge_auth("Password:")
        assert isinstance(password, bytes)
        await server.push(
            f"535 5.7.8 bad password {base64.b64encode(password).decode()} "
            f"{password.decode()} {quote(password.decode(), safe='')}"
        )
        return AuthResult(success=False, handled=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


JSON_RUN = """\
import datetime as dt, logging, sys
from newsletter.config import load_settings, secret_values
from newsletter.errors import NewsletterError
from newsletter.logs import run_context, setup_logging
from newsletter.send import send_day

settings = load_settings()
setup_logging(fmt="json", secrets_=secret_values(settings))  # as `newsletter run --log-format json`
log = logging.getLogger("newsletter.scheduler")
with run_context():
    try:
        report = send_day(
            settings,
            dt.date.fromisoformat(sys.argv[1]),
            source="sample",
            progress=lambda r: log.info("%s %s: %s", r.status, r.email, r.error),
        )
        log.info("run finished: %s", report.summary())
    except NewsletterError as exc:  # what the daemon's job does with a failed run
        log.error("run failed: %s", exc)
        log.exception("run crashed")
"""


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_an_smtp_server_echoing_the_password_leaves_no_trace(
    mechanism: str, tmp_path: Path
) -> None:
    (tmp_path / "subscribers.yaml").write_text(SUBSCRIBERS, encoding="utf-8")
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    with smtp_server(EchoingAuth(), auth_require_tls=False, auth_exclude_mechanism=[other]) as port:
        env = _env(
            NEWSLETTER_DELIVERY__BACKEND="smtp",
            NEWSLETTER_DELIVERY__HOST="127.0.0.1",
            NEWSLETTER_DELIVERY__PORT=str(port),
            NEWSLETTER_DELIVERY__SECURITY="none",
            NEWSLETTER_DELIVERY__USERNAME=SMTP_USER,
            NEWSLETTER_DELIVERY__PASSWORD=SMTP_PASSWORD,
            NEWSLETTER_DIGEST__BASE_URL="https://papers.example.org",
            NEWSLETTER_SENDER__LIST_ID="Daily Papers <daily-papers.example.org>",
        )
        code, out, err = _newsletter(
            ["send", "--date", DATE, "--source", "sample"], cwd=tmp_path, env=env
        )
        json_code, json_out, json_err = _newsletter_script(JSON_RUN, DATE, cwd=tmp_path, env=env)
    assert code == 2, err
    first = err.decode().splitlines()[-1]
    assert first.startswith(f"error: SMTP server 127.0.0.1:{port} refused the login"), err
    assert "535 5.7.8 bad" in first and "[redacted]" in first
    assert json_code == 0, json_err
    records = [json.loads(line) for line in json_err.decode().splitlines()]
    assert any(r["message"].startswith("run failed: SMTP server") for r in records)
    assert any("exc" in r for r in records)  # the traceback went through the filter too
    assert_no_leak(
        {
            "send stdout": out,
            "send stderr (summary, log, error)": err,
            "json log": json_err + json_out,
            **_state_files(tmp_path),
        },
        SMTP_PASSWORD,
        user=SMTP_USER,
    )


def _newsletter_script(
    script: str, *args: str, cwd: Path, env: dict[str, str]
) -> tuple[int, bytes, bytes]:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _echoing_provider(status: int) -> Handler:
    """A provider API that answers every call with ``status`` and a JSON message quoting
    the Authorization header it got, and the key inside it decoded and URL-encoded."""

    def answer(request: http.server.BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        request.rfile.read(length)
        header = request.headers.get("Authorization", "")
        decoded = base64.b64decode(header.split()[-1]).decode() if header else ""
        key = decoded.split(":", 1)[-1]
        message = f"bad request: Authorization: {header} ({decoded}; {quote(key, safe='')})"
        body = json.dumps({"message": message}).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return answer


@pytest.mark.parametrize("status", [400, 401])
def test_a_provider_echoing_the_api_key_leaves_no_trace(status: int, tmp_path: Path) -> None:
    (tmp_path / "subscribers.yaml").write_text(SUBSCRIBERS, encoding="utf-8")
    handler = _echoing_provider(status)
    with http_server(handler, methods=("POST",)) as (port, seen):
        env = _env(
            NEWSLETTER_DELIVERY__BACKEND="mailgun",
            NEWSLETTER_DELIVERY__DOMAIN="news.example.org",
            NEWSLETTER_DELIVERY__BASE_URL=f"http://127.0.0.1:{port}",
            NEWSLETTER_DELIVERY__API_KEY=API_KEY,
            NEWSLETTER_DELIVERY__MAX_ATTEMPTS="1",
            NEWSLETTER_DIGEST__BASE_URL="https://papers.example.org",
            NEWSLETTER_SENDER__LIST_ID="Daily Papers <daily-papers.example.org>",
        )
        code, out, err = _newsletter(
            ["send", "--date", DATE, "--source", "sample"], cwd=tmp_path, env=env
        )
        json_code, json_out, json_err = _newsletter_script(JSON_RUN, DATE, cwd=tmp_path, env=env)
    assert seen, "the provider was called"
    text = (out + err).decode()
    if status == 401:
        assert code == 2 and "refused the API key (HTTP 401: bad request" in text, text
    else:
        assert code == 1 and "HTTP 400: bad request: Authorization: Basic [redacted]" in text, text
    assert "[redacted]" in text
    assert json_code == 0, json_err
    assert_no_leak(
        {
            "send stdout (summary)": out,
            "send stderr (log, error)": err,
            "json log": json_err + json_out,
            **_state_files(tmp_path),
        },
        API_KEY,
        user="api",
    )


# --- the real `newsletter serve`, attacked over loopback


@contextmanager
def newsletter_serve(folder: Path, *args: str) -> Iterator[str]:
    """``newsletter serve --port 0 ARGS`` in ``folder`` (outbox backend); yields its URL."""
    env = _env(
        NEWSLETTER_DELIVERY__BACKEND="outbox",
        NEWSLETTER_DIGEST__BASE_URL="https://news.example.org",
    )
    with serve_process(folder, env, *args) as run:
        yield run.url
    assert "Traceback" not in run.stderr, run.stderr


def test_serve_answers_a_malformed_request_line_with_a_400(tmp_path: Path) -> None:
    with newsletter_serve(tmp_path) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /?token=X HTTP/1.1 extra\r\nHost: a\r\n\r\n")
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n"), answer
        assert b"\r\nserver:" not in answer.lower()
        assert httpx.get(f"{base}/", timeout=5).status_code == 200


def test_a_signup_flood_sends_one_confirmation_and_a_replay_changes_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    name: Ada\n", encoding="utf-8"
    )
    with (
        newsletter_serve(tmp_path, "--allow-signup") as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        for _ in range(200):
            client.post("/subscribe", data={"email": "victim@example.org", "name": "Mallory"})
        mails = sorted((tmp_path / "outbox").glob("confirm-*.eml"))
        assert len(mails) == 1
        message = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
        assert message["To"] == "victim@example.org"
        body = message.get_body(("plain",))
        assert body is not None
        url = next(w for w in body.get_content().split() if "/confirm?token=" in w)
        confirm = "/confirm?" + url.split("?", 1)[1]
        assert client.post(confirm).status_code == 200
        listed = (tmp_path / "subscribers.yaml").read_text(encoding="utf-8")
        assert listed.count("victim@example.org") == 1
        token = make_token(SIGNING_KEY.encode(), "victim@example.org", UNSUBSCRIBE)
        client.post("/unsubscribe", params={"token": token}, data={"List-Unsubscribe": "One-Click"})
        replay = client.post(confirm)
        assert replay.status_code == 400
        assert (tmp_path / "subscribers.yaml").read_text(encoding="utf-8") == listed
    assert PrefsStore(f"sqlite:///{tmp_path}/newsletter.db").is_suppressed("victim@example.org")
