"""The drain state in-process (voiceai.ops.drain): /readyz fails with
``draining`` and new sockets are refused with 1012 before their single-use
token is spent. The SIGTERM path itself is tested with real processes in
test_runtime.py."""

import json

from tests.transcription.helpers import communicator, expect_close, make_session, token_for
from voiceai.db import db_async
from voiceai.ops import drain

adb = db_async


def test_it_answers_readyz_503_draining_while_draining(client):
    drain.begin()
    try:
        response = client.get("/readyz")
    finally:
        drain.reset()
    assert response.status_code == 503 and response.json() == {"status": "draining"}


async def test_it_refuses_new_streams_with_1012_while_draining_without_using_the_token(
    transactional_db, principal_clinician_a
):
    session = await adb(make_session)(principal_clinician_a)
    token = await adb(token_for)(principal_clinician_a, session)
    drain.begin()
    try:
        comm = communicator(session.pk, token=token)
        connected, _ = await comm.connect()
        assert connected
        code, messages = await expect_close(comm)
    finally:
        drain.reset()
    assert code == 1012
    assert [(m["type"], m["code"], m["retryable"]) for m in messages] == [("Error", "server_draining", True)]
    # The token was not consumed: the same one works on a process that is not draining.
    comm = communicator(session.pk, token=token)
    await comm.connect()
    begin = json.loads(await comm.receive_from(timeout=10))
    assert begin["type"] == "Begin"
    await comm.send_to(text_data=json.dumps({"type": "CloseStream"}))
    await expect_close(comm, seconds=15)
