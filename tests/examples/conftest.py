import pytest

from tests.servers import server_factory  # noqa: F401  (fixture for real-process tests)


@pytest.fixture(autouse=True)
def _close_thread_connections():
    """As in tests/transcription: with CONN_MAX_AGE=0 each pool-thread call
    closes its connection, so the test database can be dropped."""
    from django.db import connection

    connection.settings_dict["CONN_MAX_AGE"] = 0
