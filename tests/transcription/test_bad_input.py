"""Bad input on the producer socket: every malformed frame or message gets
an Error with a code and the 4400 close; another session streaming at the
same time is unaffected."""

import json
import random

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.transcription.helpers import (
    FRAME,
    adb,
    atoken_for,
    communicator,
    expect_close,
    make_session,
    pcm,
    receive_until,
)
from transcription.audio_ledger import AudioLedger
from transcription.wire import StreamError, parse_control

pytestmark = pytest.mark.django_db(transaction=True)

rng = random.Random(20261128)

# (what the client sends, the Error code expected)
BAD_INPUTS = [
    ({"bytes": pcm(FRAME + 1)}, "odd_length_frame"),
    ({"bytes": pcm(2)}, "frame_too_small"),
    ({"bytes": b""}, "frame_too_small"),
    ({"bytes": pcm(32000 + 2)}, "frame_too_large"),
    ({"bytes": pcm(4_000_000)}, "frame_too_large"),
    ({"text": '{"type": "KeepAl'}, "bad_json"),
    ({"text": "AAAAAAAAAA=="}, "bad_json"),  # base64 audio where binary is due
    ({"text": "[1, 2, 3]"}, "unknown_type"),
    ({"text": '{"type": "Shutdown"}'}, "unknown_type"),
    ({"text": '{"kind": "KeepAlive"}'}, "unknown_type"),
    ({"text": '{"type": ["KeepAlive"]}'}, "unknown_type"),  # unhashable "type"
    ({"text": "[" * 2040 + "]" * 2040}, "bad_json"),  # nesting deeper than the parser's recursion limit
    ({"text": json.dumps({"type": "KeepAlive", "pad": "x" * 10_000})}, "message_too_large"),
    *[({"bytes": rng.randbytes(rng.randrange(1, 64_000, 2))}, "odd_length_frame") for _ in range(3)],
    *[({"text": rng.randbytes(rng.randrange(1, 200)).decode("latin-1")}, None) for _ in range(3)],
]


@pytest.fixture(autouse=True)
def _media(stream_settings):
    """Socket tests run with tests/transcription/conftest.py's stream settings."""


async def test_it_closes_each_bad_input_with_an_error_and_4400_while_others_stream_on(principal_clinician_a):
    good_session = await adb(make_session)(principal_clinician_a)
    good = communicator(good_session.pk, token=await atoken_for(principal_clinician_a, good_session))
    await good.connect()
    await receive_until(good, "Begin")
    sent = 0
    for frame, expected in BAD_INPUTS:
        session = await adb(make_session)(principal_clinician_a)
        bad = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
        await bad.connect()
        await receive_until(bad, "Begin")
        await bad.send_input({"type": "websocket.receive", **frame})
        code, messages = await expect_close(bad)
        error = messages[-1]
        assert code == 4400, frame
        assert error["type"] == "Error" and error["retryable"] is False and error["message"]
        if expected is not None:
            assert error["code"] == expected
        else:
            assert error["code"] in {"bad_json", "unknown_type"}
        await bad.disconnect()
        await good.send_to(bytes_data=pcm(FRAME, seed=sent))
        sent += 1
    ack = {"audio_bytes_durable": 0}
    while ack["audio_bytes_durable"] < sent * FRAME:
        ack, _ = await receive_until(good, "Ack")
    assert ack["audio_bytes_durable"] == sent * FRAME
    await good.send_json_to({"type": "CloseStream"})
    code, _ = await expect_close(good, seconds=10)
    assert code == 1000
    await good.disconnect()


async def test_it_closes_a_control_message_flood_with_4400(principal_clinician_a):
    session = await adb(make_session)(principal_clinician_a)
    comm = communicator(session.pk, token=await atoken_for(principal_clinician_a, session))
    await comm.connect()
    await receive_until(comm, "Begin")
    for _ in range(60):
        await comm.send_json_to({"type": "KeepAlive"})
    code, messages = await expect_close(comm)
    assert code == 4400 and messages[-1]["code"] == "flood"
    await comm.disconnect()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=40_000))
def test_it_accepts_or_rejects_any_binary_frame_with_a_protocol_error(data):
    ledger = AudioLedger(sample_rate=16000)
    try:
        ledger.accept(data)
    except StreamError as exc:
        assert exc.close_code == 4400
        assert ledger.received == 0 and not ledger.buffer  # nothing of a bad frame is kept
    else:
        assert len(data) % 2 == 0 and 640 <= len(data) <= 32000 and bytes(ledger.buffer) == data


@hsettings(max_examples=120, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.builds(lambda v: json.dumps(v), st.dictionaries(st.text(max_size=8), st.text(max_size=8))),
        # Any JSON value under "type" (lists and objects are unhashable).
        st.builds(lambda v: json.dumps({"type": v}), JSON_VALUES),
    )
)
def test_it_rejects_any_unknown_text_with_a_protocol_error(text):
    try:
        kind = parse_control(text)
    except StreamError as exc:
        assert exc.close_code == 4400 and exc.code in {"bad_json", "unknown_type", "message_too_large"}
    else:
        assert json.loads(text)["type"] == kind and kind in {"KeepAlive", "Finalize", "CloseStream"}
