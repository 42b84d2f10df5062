from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import SECRET_KEYS, env_var, load_settings, require_secret, secret_values
from newsletter.errors import ConfigError


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.delivery.backend == "outbox"
    assert settings.state.startswith("sqlite:///")
    assert settings.config_path is None


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "n.yaml"
    cfg.write_text("sender:\n  from: A <a@example.org>\ndelivery:\n  backend: smtp\n  port: 25\n")
    env = {"NEWSLETTER_DELIVERY__PORT": "2525", "NEWSLETTER_DELIVERY__PASSWORD": "s3cret"}
    settings = load_settings(cfg, env=env, overrides={"delivery.backend": "memory"})
    assert settings.sender.from_ == "A <a@example.org>"
    assert settings.delivery.port == 2525
    assert settings.delivery.backend == "memory"
    assert require_secret(settings, "delivery.password") == "s3cret"


def test_secret_in_file_is_refused_and_names_the_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "n.yaml"
    cfg.write_text("delivery:\n  password: hunter2\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    assert "NEWSLETTER_DELIVERY__PASSWORD" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_missing_secret_names_the_variable() -> None:
    settings = load_settings(None, env={})
    with pytest.raises(ConfigError, match="NEWSLETTER_DELIVERY__API_KEY"):
        require_secret(settings, "delivery.api_key")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("delivery:\n  prot: 1\n", "delivery.prot: unknown setting"),
        ("delivery:\n  port: many\n", "delivery.port: 'many' is not a valid int"),
        ("delivery:\n  security: ssl\n", "delivery.security: 'ssl' is not one of"),
        ("delivery: [\n", ":2: invalid YAML"),
        ("- a\n", "top level must be a mapping"),
    ],
)
def test_bad_files_name_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(cfg, env={})
    assert str(cfg) in str(info.value)


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_secret_values_are_every_secret_that_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert secret_values(load_settings(env={})) == []
    env = {env_var(key): f"value-of-{key}" for key in SECRET_KEYS}
    assert env_var("delivery.api_key") == "NEWSLETTER_DELIVERY__API_KEY"
    assert sorted(secret_values(load_settings(env=env))) == sorted(env.values())
    one = load_settings(env={"NEWSLETTER_SECRET_KEY": "k3y"})
    assert secret_values(one) == ["k3y"]


def test_errors_name_the_line_of_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "n.yaml"
    cfg.write_text("digest:\n  title: T\ndelivery:\n  backend: smtp\n  port: many\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    assert str(info.value) == f"{cfg}:5: delivery.port: 'many' is not a valid int"


def test_a_bad_environment_value_names_its_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"NEWSLETTER_SOURCE__TIMEOUT": "0"})
    assert str(info.value).startswith("NEWSLETTER_SOURCE__TIMEOUT: source.timeout: '0' is not")


def test_environment_lists_are_comma_separated_and_empty_is_unset() -> None:
    settings = load_settings(
        None, env={"NEWSLETTER_SCHEDULE__DAYS": "mon, wed", "NEWSLETTER_SENDER__REPLY_TO": ""}
    )
    assert settings.schedule.days == ("mon", "wed")
    assert settings.sender.reply_to is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x {port: 1}\ndelivery: *x\n", ":2: aliases (*name) are not allowed"),
        ("delivery:\n  port: 1\n  port: 2\n", ":3: 'port': duplicate key (first on line 2)"),
        (
            "delivery: {}\ndigest: {}\ndelivery: {}\n",
            ":3: 'delivery': duplicate key (first on line 1)",
        ),
        (
            f"digest:\n  title: {'x' * 5000}\n  lang: [1]\n",
            ":3: digest.lang: [1] is not a valid str",
        ),
    ],
)
def test_hostile_config_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    assert str(info.value).startswith(f"{cfg}{message}"), info.value


def test_long_values_are_cut_in_messages(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"delivery:\n  port: {'9' * 10_000}x\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    message = str(info.value).removeprefix(str(cfg))
    assert len(message) < 200 and "(10001 characters)" in message
