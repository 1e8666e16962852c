import pytest


@pytest.fixture(autouse=True)
def _close_thread_connections():
    """As in tests/transcription: the socket tests run DB work on pool
    threads; with CONN_MAX_AGE=0 each call closes its connection, so the
    test database can be dropped at the end."""
    from django.db import connection

    connection.settings_dict["CONN_MAX_AGE"] = 0
