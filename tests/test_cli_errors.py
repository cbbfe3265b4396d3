"""Ordinary failures of the real ``topicwatch`` command: one line on stderr, a non-zero exit,
never a traceback — a missing or bad file, Redis down, a service that refuses connections,
a refused API key — and ``--version`` from the installed distribution's metadata."""

from __future__ import annotations

import importlib.metadata
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.redis_server import free_port
from services.common.settings import Settings
from tests.cli_run import clean_env, run_cli
from tests.conftest import SEED_JSON
from tests.ingest_server import running_ingest
from tests.notify_receiver import serve

KEY = "right-key"


def one_line_error(
    result: subprocess.CompletedProcess[str], status: int, prefix: str = "topicwatch: "
) -> str:
    """The single stderr line of a failed run (asserting there is exactly one, no traceback)."""
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def test_version_comes_from_the_installed_distribution() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"topicwatch {importlib.metadata.version('topicwatch')}"


def test_a_missing_file_is_one_line() -> None:
    line = one_line_error(run_cli("classify", "/nonexistent.json"), 2)
    assert line == "topicwatch: /nonexistent.json: No such file or directory"


def test_a_bad_json_file_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"title": "Half an article", \n')
    line = one_line_error(run_cli("classify", str(bad)), 1, prefix=f"{bad}:1: rejected: ")
    assert "not valid JSON" in line


def test_a_bad_corrected_payload_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "fixed.json"
    bad.write_text("{nope")
    result = run_cli("rejected", "retry", "1-0", "--payload", str(bad))
    assert str(bad) in one_line_error(result, 2)


def test_dead_letters_with_redis_down_is_one_line() -> None:
    nothing = free_port()
    env = clean_env(TOPICWATCH_REDIS_URL=f"redis://127.0.0.1:{nothing}")
    line = one_line_error(run_cli("dead-letters", "list", env=env), 2)
    assert "cannot reach Redis" in line and str(nothing) in line
    assert "TOPICWATCH_REDIS_URL" in line  # says what to check


@pytest.mark.parametrize(
    "argv",
    [
        ["rejected", "list"],
        ["feeds", "list"],
        ["subscriptions", "list"],
        ["subscriptions", "show", "sub_x"],
        ["subscribe", "--topic", "cyber"],
        ["tail", "sub_x", "--token", "swr_x"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_a_service_that_refuses_connections_is_one_line(argv: list[str]) -> None:
    """`tail` used to retry a refused connection forever; now only a stream that dropped after
    it was open is reconnected."""
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(run_cli(*argv, "--url", url, timeout=30), 2)
    assert f"cannot reach {url}/" in line


@pytest.fixture
def notify_with_keys(redis_url: str, tmp_path: Path) -> Iterator[str]:
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, api_keys=KEY, read_block_ms=50)
    with serve(settings) as url:
        yield url


@pytest.mark.parametrize(
    "argv",
    [
        ["subscriptions", "list"],
        ["subscriptions", "delete", "sub_x"],
        ["subscribe", "--topic", "cyber"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_a_refused_api_key_is_one_line(notify_with_keys: str, argv: list[str]) -> None:
    for env in (clean_env(), clean_env(TOPICWATCH_API_KEYS="wrong-key")):
        line = one_line_error(run_cli(*argv, "--url", notify_with_keys, env=env), 1)
        assert "answered 401" in line and "missing or invalid API key" in line
        assert "TOPICWATCH_API_KEYS" in line  # where the CLI's key comes from


def test_the_right_api_key_is_sent(notify_with_keys: str) -> None:
    result = run_cli(
        "subscriptions",
        "list",
        "--json",
        "--url",
        notify_with_keys,
        env=clean_env(TOPICWATCH_API_KEYS=KEY),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # no subscriptions, no lines


def test_traceback_flag_shows_the_traceback() -> None:
    result = run_cli("--traceback", "classify", "/nonexistent.json")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "FileNotFoundError" in result.stderr


def test_a_422_lists_every_field_on_one_line(notify_with_keys: str) -> None:
    result = run_cli(
        "subscribe",
        "--topic",
        "Not A Topic!",
        "--min-score",
        "7",
        "--url",
        notify_with_keys,
        env=clean_env(TOPICWATCH_API_KEYS=KEY),
    )
    line = one_line_error(result, 1)
    assert "answered 422" in line and "topics" in line and "min_score" in line


@pytest.mark.parametrize(
    "argv", [["rejected", "retry", "--all"], ["feeds", "poll"]], ids=lambda argv: " ".join(argv)
)
def test_ingest_refusing_the_api_key_is_one_line(settings: Settings, argv: list[str]) -> None:
    with running_ingest(settings, api_keys=KEY) as url:
        result = run_cli(*argv, "--url", url, env=clean_env(TOPICWATCH_API_KEYS="wrong-key"))
        publish = run_cli(
            "publish",
            "--url",
            url,
            str(SEED_JSON),
            env=clean_env(TOPICWATCH_API_KEYS="wrong-key"),
        )
    for refused in (result, publish):
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith("topicwatch: ") and "answered 401" in line, line
        assert "TOPICWATCH_API_KEYS" in line
