"""Malformed control messages end a socket with 4400 and an Error, never a
1011: the JSON parser or the type check used to crash on them (found in
review)."""

import json

import pytest

from tests.transcription.helpers import adb, atoken_for, communicator, expect_close, make_session, receive_until

# Control messages the JSON parser or the type check used to crash on:
# an unhashable "type" (TypeError) and nesting deeper than the recursion
# limit, all inside the 4096-character limit.
CRASHING_CONTROL_MESSAGES = [
    json.dumps({"type": []}),
    json.dumps({"type": {"KeepAlive": 1}}),
    "[" * 2000 + "]" * 2000,
    '{"type": ' + "[" * 1500 + "]" * 1500 + "}",
]


@pytest.fixture
def _media(tmp_media, settings):
    settings.AUDIO_FLUSH_SECONDS = 0.2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("text", CRASHING_CONTROL_MESSAGES, ids=["list-type", "dict-type", "deep-list", "deep-type"])
@pytest.mark.parametrize("kind", ["stream", "live"])
async def test_it_closes_malformed_control_messages_with_4400_not_1011(_media, principal_clinician_a, kind, text):
    session = await adb(make_session)(principal_clinician_a)
    comm = communicator(session.pk, kind, token=await atoken_for(principal_clinician_a, session))
    await comm.connect()
    await receive_until(comm, "Begin")
    await comm.send_to(text_data=text)
    code, messages = await expect_close(comm)
    assert code == 4400
    assert messages[-1]["type"] == "Error" and messages[-1]["code"] in {"bad_json", "unknown_type"}
    await comm.disconnect()
