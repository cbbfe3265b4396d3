"""Configuration: read once from TOPICWATCH_*, bad values stop the process naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from services.common.models import alert_id_for, article_id_for, content_hash_for
from services.common.settings import (
    EarlySettings,
    Settings,
    SettingsError,
    load_settings,
)
from tests.procs import ROOT


def test_defaults_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TOPICWATCH_"):
            monkeypatch.delenv(key)
    settings = load_settings()
    assert settings.redis_url is None
    assert (settings.ingest_port, settings.classify_port, settings.notify_port) == (
        8001,
        8002,
        8003,
    )
    assert str(settings.data_dir) == ".topicwatch"
    assert settings.api_keys == []
    assert settings.allow_private_webhooks is False
    # Standard Webhooks' documented schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
    # 14 h, 20 h and 24 h after the previous attempt (written out, not taken from the code).
    hours = 3600
    assert settings.webhook_retry_schedule == [
        0,
        5,
        300,
        1800,
        2 * hours,
        5 * hours,
        10 * hours,
        14 * hours,
        20 * hours,
        24 * hours,
    ]
    assert settings.read_token is None and settings.redis_server is None
    assert settings.pure_python is False


def test_comma_separated_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICWATCH_API_KEYS", " k1, k2 ,")
    monkeypatch.setenv("TOPICWATCH_WEBHOOK_RETRY_SCHEDULE", "0,1.5,30")
    settings = load_settings()
    assert settings.api_key_values() == {"k1", "k2"}
    assert settings.webhook_retry_schedule == [0, 1.5, 30]
    assert "k1" not in repr(settings)  # secrets stay out of logs


def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOPICWATCH_NOTIFY_PORT", "eighty")
    with pytest.raises(SettingsError):
        load_settings()
    assert "TOPICWATCH_NOTIFY_PORT='eighty'" in capsys.readouterr().err


def test_service_refuses_to_start_with_a_bad_value() -> None:
    env = {
        **os.environ,
        "TOPICWATCH_REDIS_URL": "redis://127.0.0.1:1/0",
        "TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS": "perhaps",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "notify"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS" in result.stderr


def test_ids_are_deterministic() -> None:
    h = content_hash_for("Title", "Body  text")
    assert h == content_hash_for("title", "body text")  # case and whitespace folded
    assert article_id_for("https://x.org/a", h) == article_id_for("https://x.org/a", "other")
    assert article_id_for(None, h) != article_id_for("https://x.org/a", h)
    assert alert_id_for("sub_1", "art_1") == alert_id_for("sub_1", "art_1")
    assert alert_id_for("sub_1", "art_1") != alert_id_for("sub_2", "art_1")


def test_settings_object_is_immutable() -> None:
    settings = Settings(ingest_port=8101)
    with pytest.raises(ValidationError) as info:
        settings.ingest_port = 1  # type: ignore[misc]
    assert [e["type"] for e in info.value.errors()] == ["frozen_instance"]
    assert settings.ingest_port == 8101


def test_settings_needed_before_a_settings_exists_are_read_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TOPICWATCH_PURE_PYTHON and TOPICWATCH_REDIS_SERVER are read at import / fixture time,
    whatever else is wrong; load_settings still reports a bad value of them by name."""
    monkeypatch.setenv("TOPICWATCH_NOTIFY_PORT", "eighty")  # invalid, and irrelevant here
    monkeypatch.setenv("TOPICWATCH_PURE_PYTHON", "1")
    monkeypatch.setenv("TOPICWATCH_REDIS_SERVER", "/opt/valkey/bin/valkey-server")
    early = EarlySettings()
    assert early.pure_python is True
    assert early.redis_server == "/opt/valkey/bin/valkey-server"
    monkeypatch.delenv("TOPICWATCH_NOTIFY_PORT")
    monkeypatch.setenv("TOPICWATCH_PURE_PYTHON", "sometimes")
    with pytest.raises(SettingsError):
        load_settings()
    assert "TOPICWATCH_PURE_PYTHON='sometimes'" in capsys.readouterr().err


def test_the_read_token_is_a_setting_and_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICWATCH_READ_TOKEN", "swr_abc")
    settings = load_settings()
    assert settings.read_token is not None
    assert settings.read_token.get_secret_value() == "swr_abc"
    assert "swr_abc" not in repr(settings)


def test_cli_commands_default_to_the_embedded_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOPICWATCH_REDIS_URL", raising=False)
    monkeypatch.setenv("TOPICWATCH_EMBEDDED_REDIS_PORT", "6391")
    assert load_settings().with_redis().redis_url == "redis://127.0.0.1:6391"
    monkeypatch.setenv("TOPICWATCH_REDIS_URL", "redis://elsewhere:6379/2")
    assert load_settings().with_redis().redis_url == "redis://elsewhere:6379/2"


def test_cluster_and_partition_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scale-out settings (docs/scaling.md): the defaults are one node, one partition, and
    keys without hash tags; the names are what the KEDA manifests set."""
    for name in ("REDIS_URL", "REDIS_CLUSTER", "PARTITIONS", "CONSUME_PARTITIONS"):
        monkeypatch.delenv(f"TOPICWATCH_{name}", raising=False)
    settings = load_settings()
    assert (settings.redis_cluster, settings.partitions, settings.consume_partitions) == (
        False,
        1,
        [],
    )
    assert settings.own_partitions == [0] and not settings.partitioned
    monkeypatch.setenv("TOPICWATCH_REDIS_CLUSTER", "true")
    monkeypatch.setenv("TOPICWATCH_REDIS_URL", "redis://a:7000, redis://b:7001")
    monkeypatch.setenv("TOPICWATCH_PARTITIONS", "4")
    monkeypatch.setenv("TOPICWATCH_CONSUME_PARTITIONS", "3,1,1")
    settings = load_settings()
    assert settings.redis_urls == ["redis://a:7000", "redis://b:7001"]
    assert settings.partitions == 4 and settings.partitioned
    assert settings.own_partitions == [1, 3]


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"TOPICWATCH_PARTITIONS": "0"}, "TOPICWATCH_PARTITIONS='0'"),
        (
            {"TOPICWATCH_PARTITIONS": "2", "TOPICWATCH_CONSUME_PARTITIONS": "1,2"},
            "TOPICWATCH_CONSUME_PARTITIONS names [2], beyond TOPICWATCH_PARTITIONS=2",
        ),
        ({"TOPICWATCH_CONSUME_PARTITIONS": "a"}, "TOPICWATCH_CONSUME_PARTITIONS='a'"),
        (
            {"TOPICWATCH_REDIS_URL": "redis://a:1,redis://b:2"},
            "only TOPICWATCH_REDIS_CLUSTER=true",
        ),
    ],
)
def test_bad_partition_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict, said: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError):
        load_settings()
    assert said in capsys.readouterr().err
