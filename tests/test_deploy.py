"""deploy/: every command the units and containers run is a real ``newsletter`` command
with valid options, the units carry their restart, secret and hardening settings, and
deploy/check.sh (run by CI where systemd-analyze exists) reports what verify says."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import SECRET_KEYS, load_settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
BINARY = "/opt/newsletter/bin/newsletter"
UNITS = sorted(DEPLOY.glob("*.service")) + sorted(DEPLOY.glob("*.timer"))
EXEC_PREFIXES = "-@:+!"


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a systemd unit, each a list of (key, value) in order (keys repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def unit_commands() -> list[tuple[str, list[str]]]:
    out = []
    for path in DEPLOY.glob("*.service"):
        for key, value in parse_unit(path).get("Service", []):
            if key == "ExecReload":
                assert value == "/bin/kill -HUP $MAINPID", f"{path.name}: {value}"
            elif key.startswith("Exec"):
                argv = shlex.split(value.lstrip(EXEC_PREFIXES))
                out.append((f"{path.name} {key}", argv))
    return out


def container_commands() -> list[tuple[str, list[str]]]:
    text = (DEPLOY / "Containerfile").read_text(encoding="utf-8")
    found = dict(re.findall(r"^(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", text, flags=re.M))
    entrypoint, cmd = json.loads(found["ENTRYPOINT"]), json.loads(found["CMD"])
    assert entrypoint == ["newsletter"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    return [
        ("Containerfile CMD", [*entrypoint, *cmd]),
        ("compose.yaml command", [*entrypoint, *services["newsletter"]["command"]]),
        ("compose.yaml web command", [*entrypoint, *services["web"]["command"]]),
    ]


def check_newsletter_args(args: list[str]) -> None:
    """The arguments after ``newsletter``: a known subcommand, known options, valid values."""
    assert args, "no subcommand"
    name, rest = args[0], args[1:]
    command = cli.commands.get(name)
    assert command is not None, f"newsletter {name}: no such command"
    # The --help of the command, with the unit's options in front: an unknown option or
    # a missing value fails the parse before the help is printed.
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {name}") or f" {name} " in result.output
    # Parsing for real converts every value (choices, dates, flags) without running it.
    with command.make_context(name, list(rest)) as ctx:
        assert isinstance(ctx, click.Context)


ALL_COMMANDS = unit_commands() + container_commands()


def test_the_units_and_containers_run_commands() -> None:
    names = [where for where, _ in ALL_COMMANDS]
    assert "newsletter.service ExecStart" in names
    assert "newsletter-send.service ExecStart" in names
    assert "newsletter-send.service ExecStartPost" in names
    assert "newsletter-web.service ExecStart" in names
    assert len(ALL_COMMANDS) == 7


@pytest.mark.parametrize(("where", "argv"), ALL_COMMANDS, ids=[w for w, _ in ALL_COMMANDS])
def test_every_command_they_run_is_a_real_newsletter_command(where: str, argv: list[str]) -> None:
    assert argv[0] in (BINARY, "newsletter"), f"{where}: runs {argv[0]}"
    check_newsletter_args(argv[1:])


def test_the_checker_rejects_bad_commands() -> None:
    for bad in (
        ["nosuch"],
        ["run", "--log-format", "xml"],
        ["run", "--log-level", "LOUD"],
        ["run", "--nosuch"],
        ["status", "-c"],
    ):
        with pytest.raises((AssertionError, click.UsageError)):
            check_newsletter_args(bad)
    with pytest.raises(AssertionError):
        check_newsletter_args(["send", "--bogus"])


def test_the_daemon_unit_restarts_keeps_secrets_out_and_is_hardened() -> None:
    unit = parse_unit(DEPLOY / "newsletter.service")
    service = dict(unit["Service"])
    assert service["Type"] == "exec"
    assert service["Restart"] == "on-failure"  # a clean stop (exit 0) stays stopped
    assert values(unit, "Service", "EnvironmentFile") == ["/etc/newsletter/newsletter.env"]
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"].rstrip("s")) >= 60
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "StateDirectory": "newsletter",
        "WorkingDirectory": "/var/lib/newsletter",
    }.items():
        assert service.get(key) == value, key
    assert "@system-service" in values(unit, "Service", "SystemCallFilter")
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]


def test_the_timer_starts_the_oneshot_send_on_weekdays() -> None:
    timer = parse_unit(DEPLOY / "newsletter-send.timer")
    assert values(timer, "Timer", "Unit") == ["newsletter-send.service"]
    assert values(timer, "Timer", "Persistent") == ["yes"]
    (calendar,) = values(timer, "Timer", "OnCalendar")
    assert calendar.startswith("Mon..Fri ") and calendar.endswith(" Europe/Berlin")
    service = parse_unit(DEPLOY / "newsletter-send.service")
    assert values(service, "Service", "Type") == ["oneshot"]
    assert values(service, "Service", "EnvironmentFile") == ["/etc/newsletter/newsletter.env"]
    assert values(service, "Service", "DynamicUser") == ["yes"]


def settings_env(pairs: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in pairs.items() if k.startswith("NEWSLETTER_")}


def test_secrets_come_by_environment_and_every_variable_is_a_setting(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    service = compose["services"]["newsletter"]
    assert service["env_file"] == ["newsletter.env"]
    secret_vars = {"NEWSLETTER_" + key.upper().replace(".", "__") for key in SECRET_KEYS}
    environment = service["environment"]
    assert not secret_vars & set(environment), "secrets belong in the env_file"
    example = {}
    for line in (DEPLOY / "newsletter.env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    assert set(example) == secret_vars
    filled = {key: "x" for key in example}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    settings = load_settings(empty, env={**environment, **filled})
    assert settings.state == "sqlite:////data/newsletter.db"
    assert settings.delivery.password == "x"
    blank = load_settings(empty, env=settings_env(example))
    assert blank.delivery.password is None  # an empty line in the env file means "unset"


def test_the_web_unit_serves_on_loopback_behind_the_proxy_hardened() -> None:
    unit = parse_unit(DEPLOY / "newsletter-web.service")
    service = dict(unit["Service"])
    (start,) = values(unit, "Service", "ExecStart")
    argv = shlex.split(start)
    assert argv[:2] == [BINARY, "serve"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--trusted-proxy") + 1] == "127.0.0.1"
    assert values(unit, "Service", "EnvironmentFile") == ["/etc/newsletter/newsletter.env"]
    # the daemon's state directory: the unsubscribes recorded here are what the send reads
    daemon = dict(parse_unit(DEPLOY / "newsletter.service")["Service"])
    assert service["StateDirectory"] == daemon["StateDirectory"]
    assert service["WorkingDirectory"] == daemon["WorkingDirectory"]
    assert int(service["LimitNOFILE"]) > 1000  # the server's connection limit fits
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "CapabilityBoundingSet"):
        assert service[key] == daemon[key], key


def test_compose_mounts_the_folder_of_the_subscriber_list_not_the_file() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    for name in ("newsletter", "web"):
        service = compose["services"][name]
        binds = [v.split(":") for v in service["volumes"] if v.startswith("./")]
        writable = [(host, inside) for host, inside, *mode in binds if mode != ["ro"]]
        assert ("./data", "/data") in writable, name
        for host, _inside in writable:
            assert not Path(host).suffix, f"{name}: {host} is a file bind mount"
    web = compose["services"]["web"]
    assert web["ports"] == ["127.0.0.1:8080:8080"]  # published only to the proxy
    assert web["env_file"] == ["newsletter.env"]


def test_the_proxy_example_has_tls_body_and_rate_limits_and_logs_no_query() -> None:
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert "proxy_pass http://newsletter_web;" in text and "server 127.0.0.1:8080;" in text
    for directive in ("ssl_certificate ", "ssl_certificate_key ", "listen 443 ssl"):
        assert directive in text, directive
    assert "client_max_body_size 64k;" in text
    assert re.search(r"limit_req_zone \$binary_remote_addr .*rate=", text)
    assert "limit_req zone=newsletter_signup" in text
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    formats = re.findall(r"log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", text)
    assert formats, "a log_format of our own"
    for _name, spec in formats:
        for leaky in ("$request ", '$request"', "$request_uri", "$args", "$query_string"):
            assert leaky not in spec, leaky
    for log_line in re.findall(r"access_log\s+([^;]+);", text):
        assert log_line.split()[-1] in {name for name, _ in formats}, log_line


def test_the_example_config_loads_and_the_readme_installs_it() -> None:
    settings = load_settings(DEPLOY / "newsletter.yaml", env={})
    assert settings.digest.base_url.startswith("https://")
    assert settings.source.max_bytes > 0
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "install -m 0644 deploy/newsletter.yaml /etc/newsletter/newsletter.yaml" in readme


def test_the_readme_covers_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for path in DEPLOY.iterdir():
        if path.name != "README.md":
            assert path.name in readme, path.name
    assert "systemd-analyze verify" in readme


# ----------------------------------------------------------------------------- check.sh

TOOLS = ("bash", "sh", "dirname", "mktemp", "rm", "chmod", "sed", "grep", "basename", "cat")


def toolbox(tmp_path: Path, analyze: str | None) -> dict[str, str]:
    """A PATH of the plain tools check.sh uses, plus a stand-in systemd-analyze (or none)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    if analyze is not None:
        fake = bin_dir / "systemd-analyze"
        fake.write_text(f"#!/bin/sh\n{analyze}\n")
        fake.chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY / "check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        executable=shutil.which("bash"),
    )


def test_check_sh_passes_units_verify_accepts(tmp_path: Path) -> None:
    result = run_check(toolbox(tmp_path, "exit 0"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{unit.name}: ok" for unit in UNITS]


def test_check_sh_fails_on_anything_verify_says(tmp_path: Path) -> None:
    script = 'echo "$2:12: Unknown key BogusDirective in section [Service], ignoring." >&2'
    result = run_check(toolbox(tmp_path, script))
    assert result.returncode == 1
    assert "Unknown key BogusDirective" in result.stderr


def test_check_sh_says_so_when_systemd_is_missing(tmp_path: Path) -> None:
    result = run_check(toolbox(tmp_path, None))
    assert result.returncode == 0
    assert "systemd-analyze not found" in result.stderr


def test_check_sh_gives_verify_units_whose_binary_exists(tmp_path: Path) -> None:
    # The stand-in records what it was given: the rewritten unit must run an executable.
    script = (
        'exe=$(sed -n "s/^ExecStart=\\([^ ]*\\).*/\\1/p" "$3" | head -n 1); '
        '[ -z "$exe" ] || [ -x "$exe" ] || { echo "$3: $exe missing" >&2; exit 1; }'
    )
    env = toolbox(tmp_path, script)
    (tmp_path / "bin" / "head").symlink_to(shutil.which("head") or "/usr/bin/head")
    result = run_check(env)
    assert result.returncode == 0, result.stderr
    assert os.access(DEPLOY / "check.sh", os.X_OK)
