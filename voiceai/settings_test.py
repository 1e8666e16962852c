"""Settings for the test suite: the real settings with test-safe defaults
for what production must set explicitly."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("ALLOWED_HOSTS", "*")
os.environ.setdefault("TRANSCRIPTION_ENGINE", "fake")
# Tests run note jobs themselves (notes.jobs.note_jobs_run_due), never in a
# thread that outlives the test's database.
os.environ.setdefault("NOTES_WORKER_IN_PROCESS", "0")

from voiceai.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user fixtures

# The suite's own process opens connections from many threads (the realtime
# tests' db_async calls) and drops the test database at the end; a pool would
# keep connections open across that. Server processes the tests start run
# voiceai.settings, with the pool (tests/ops/test_database_pool.py).
DATABASES["default"].get("OPTIONS", {}).pop("pool", None)  # noqa: F405
