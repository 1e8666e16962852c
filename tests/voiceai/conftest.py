"""Fixtures for the voiceai package's tests."""

from tests.servers import server_factory  # noqa: F401  (fixture for real-process tests)
