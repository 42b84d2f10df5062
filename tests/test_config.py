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
        ("delivery: [\n", "line 2"),
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
