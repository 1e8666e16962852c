import pytest

from tests.servers import server_factory  # noqa: F401  (fixture for real-process tests)


@pytest.fixture(autouse=True)
def _close_thread_connections():
    """The pipeline runs DB work on pool threads; with CONN_MAX_AGE=0 each
    call closes its connection, so the test database can be dropped."""
    from django.db import connection

    connection.settings_dict["CONN_MAX_AGE"] = 0


@pytest.fixture
def stream_settings(settings, tmp_path):
    """What the in-process socket tests share: storage in a temporary
    folder, quick flushes and the scripted fake engine with no delay."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    settings.AUDIO_FLUSH_SECONDS = 0.2
    settings.FAKE_ENGINE_MODE = "script"
    settings.FAKE_ENGINE_DELAY_MS = 0
    from transcription.engines import get_engine

    get_engine.cache_clear()
    return settings
