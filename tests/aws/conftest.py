"""Fixtures for the AWS engine, quota, S3 and batch tests."""

import struct

import pytest

from tests.transcribe_standin.fixtures import standin_cert, transcribe_standin  # noqa: F401
from transcription.engines.aws import AwsTranscribeEngine

CHUNK_BYTES = 3200  # 100 ms of 16 kHz PCM16: the stand-in's window


def numbered_chunks(count: int, first: int = 1) -> list[bytes]:
    """Chunks whose samples all carry the chunk's index: the stand-in turns
    chunk N into the word ``wN``, so lost or repeated audio shows in text.
    Numbering starts at 1: an all-zero chunk is silence to the stand-in."""
    return [struct.pack("<h", first + i) * (CHUNK_BYTES // 2) for i in range(count)]


def words(n: int, first: int = 1) -> list[str]:
    return [f"w{i}" for i in range(first, first + n)]


@pytest.fixture
def aws_engine(transcribe_standin, standin_cert):  # noqa: F811
    return AwsTranscribeEngine(
        regions=["ap-northeast-1", "us-west-2"],
        endpoint_url=transcribe_standin.url,
        ca_file=standin_cert[0],
        credentials=("AKIDSTANDIN", "standin-secret"),
        open_timeout=2.0,
    )


async def wait_until(predicate, limit: float = 5.0) -> None:
    """Poll a condition another task or process makes true (no event to await)."""
    import asyncio

    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _close_thread_connections():
    """Pipeline DB work runs on pool threads; with CONN_MAX_AGE=0 each call
    closes its connection, so the test database can be dropped."""
    from django.db import connection

    connection.settings_dict["CONN_MAX_AGE"] = 0
