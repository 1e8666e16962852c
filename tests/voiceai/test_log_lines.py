"""`make run` (DEBUG=1) logs each request once, as a JSON line: Django's
default plain console handler on the "django" loggers is gone."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import django, logging
django.setup()
logging.getLogger("django.channels.server").info("HTTP %s %s %s", "GET", "/probe-path", 200)
"""


def test_it_logs_each_request_once_as_json_under_make_run():
    env = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL",)}
    env.update(DEBUG="1", DJANGO_SETTINGS_MODULE="voiceai.settings", DATABASE_URL="sqlite:///:memory:")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "/probe-path" in line]
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["event"].endswith("/probe-path 200")
