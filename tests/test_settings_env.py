"""A bad or missing production setting stops the process at start with a
message that names the variable (settings are read in a fresh interpreter)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SETUP = "import django; django.setup(); from django.conf import settings; print('PORT', settings.PORT)"
_OURS = {
    "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "PORT", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE",
    "TRANSCRIPTION_ENGINE", "AWS_STORAGE_BUCKET_NAME", "DATABASE_CONN_MAX_AGE", "DATABASE_POOL",
}  # fmt: skip


def _start(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    clean.update(DJANGO_SETTINGS_MODULE="voiceai.settings", **env)
    return subprocess.run(
        [sys.executable, "-c", _SETUP], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DEBUG": "0"}, "SECRET_KEY"),
        ({"DEBUG": "0", "SECRET_KEY": "x" * 50}, "ALLOWED_HOSTS"),
        ({"DEBUG": "1", "PORT": "eighty"}, "PORT"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DEBUG": "1", "TRANSCRIPTION_ENGINE": "whisper"}, "TRANSCRIPTION_ENGINE"),
        # Persistent connections leak under ASGI; the pool replaces them.
        (
            {"DEBUG": "1", "DATABASE_URL": "postgres://u@127.0.0.1/x", "DATABASE_CONN_MAX_AGE": "60"},
            "DATABASE_CONN_MAX_AGE",
        ),
        (
            {"DEBUG": "1", "DATABASE_URL": "postgres://u@127.0.0.1/x", "DATABASE_POOL_MAX_SIZE": "0"},
            "DATABASE_POOL_MAX_SIZE",
        ),
    ],
)
def test_it_fails_at_start_naming_the_bad_variable(env, variable):
    result = _start(**env)
    assert result.returncode != 0
    assert variable in result.stderr.strip().splitlines()[-1]


def test_it_starts_with_the_embedded_defaults_in_debug():
    result = _start(DEBUG="1", PORT="8123")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PORT 8123" in result.stdout


# The production settings README.md documents for `make check`.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "k3y-" + "x7Qz9" * 12,
    "ALLOWED_HOSTS": "voice.clinic-example.jp",
    "BEHIND_TLS_PROXY": "1",
}


def test_it_passes_the_deploy_checks_with_the_documented_production_settings():
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    clean.update(DJANGO_SETTINGS_MODULE="voiceai.settings", **PRODUCTION_ENV)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no issues (0 silenced)" in result.stdout
