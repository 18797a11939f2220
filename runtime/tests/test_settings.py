"""Settings: environment over .env over defaults, and one error that lists every problem."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shoestring_runtime.settings import SettingsError

from .shop import SERVICE

ROOT = SERVICE.root


def test_defaults_give_a_sqlite_database_in_var():
    settings = SERVICE.load_settings(environ={}, env_file=None, spec_keys=[])
    assert settings.database_url == f"sqlite:///var/{SERVICE.package}.db"
    assert settings.log_level == "INFO"
    assert settings.max_body_bytes == 1048576


def test_one_error_lists_every_missing_or_bad_setting():
    environ = {
        "DATABASE_URL": "postgres://db/app",
        "LOG_LEVEL": "LOUD",
        "MAX_BODY_BYTES": "lots",
    }
    with pytest.raises(SettingsError) as raised:
        SERVICE.load_settings(environ=environ, env_file=None, spec_keys=["PEER_URL"])
    message = str(raised.value)
    assert len(raised.value.problems) == 4
    assert "DATABASE_URL" in message and "mysql://" in message
    assert "LOG_LEVEL='LOUD'" in message
    assert "MAX_BODY_BYTES='lots'" in message
    assert "PEER_URL is missing" in message


def test_a_peer_url_must_be_an_http_url():
    with pytest.raises(SettingsError, match="PEER_URL='ftp://x'"):
        SERVICE.load_settings(
            environ={"PEER_URL": "ftp://x"}, env_file=None, spec_keys=["PEER_URL"]
        )


def test_the_database_password_never_appears_in_an_error():
    with pytest.raises(SettingsError) as raised:
        SERVICE.load_settings(
            environ={"DATABASE_URL": "mysql://app:hunter2@db:3306/"}, env_file=None, spec_keys=[]
        )
    assert "hunter2" not in str(raised.value)


def test_env_file_fills_in_and_the_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=debug\nMAX_BODY_BYTES=2048\n")
    settings = SERVICE.load_settings(
        environ={"MAX_BODY_BYTES": "4096"}, env_file=env_file, spec_keys=[]
    )
    assert settings.log_level == "DEBUG"
    assert settings.max_body_bytes == 4096


def test_check_command_prints_every_problem_and_fails(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", SERVICE.package, "check"],
        cwd=ROOT,
        env={"PATH": "", "LOG_LEVEL": "LOUD", "MAX_BODY_BYTES": "-1", "SYSTEMROOT": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "LOG_LEVEL='LOUD'" in result.stderr
    assert "MAX_BODY_BYTES='-1'" in result.stderr
