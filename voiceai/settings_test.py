"""Settings for the test suite: the real settings with test-safe defaults
for what production must set explicitly."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("ALLOWED_HOSTS", "*")
os.environ.setdefault("TRANSCRIPTION_ENGINE", "fake")

from voiceai.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user fixtures
