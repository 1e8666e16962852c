"""AudioLedger: frame validation, the unstored buffer and the offsets, on
their own (no socket, no storage)."""

import pytest

from transcription.audio_ledger import AudioLedger
from transcription.wire import StreamError

RATE = 16000
FRAME = 3200  # 100 ms


def test_it_keeps_valid_frames_in_order_and_counts_received():
    ledger = AudioLedger(sample_rate=RATE)
    ledger.accept(b"\x01" * FRAME)
    ledger.accept(b"\x02" * FRAME)
    assert ledger.received == 2 * FRAME and ledger.durable == 0
    assert ledger.unstored() == b"\x01" * FRAME + b"\x02" * FRAME


@pytest.mark.parametrize(
    ("size", "code"), [(FRAME + 1, "odd_length_frame"), (638, "frame_too_small"), (32002, "frame_too_large")]
)
def test_it_refuses_a_bad_frame_and_keeps_nothing_of_it(size, code):
    ledger = AudioLedger(sample_rate=RATE)
    with pytest.raises(StreamError) as caught:
        ledger.accept(b"\x00" * size)
    assert caught.value.close_code == 4400 and caught.value.code == code
    assert ledger.received == 0 and not ledger.buffer


def test_it_keeps_frames_that_arrive_during_a_store_after_the_stored_bytes():
    ledger = AudioLedger(sample_rate=RATE)
    ledger.accept(b"\x01" * FRAME)
    written = ledger.unstored()  # the flush writes this...
    ledger.accept(b"\x02" * FRAME)  # ...while this frame arrives
    ledger.stored(len(written))
    assert ledger.durable == FRAME and ledger.received == 2 * FRAME
    assert ledger.unstored() == b"\x02" * FRAME
    assert ledger.buffered_from(FRAME + 100) == b"\x02" * (FRAME - 100)


def test_it_starts_a_resumed_connection_at_the_stored_length():
    ledger = AudioLedger(sample_rate=RATE)
    ledger.start_at(10 * FRAME)
    assert ledger.resume_from == ledger.durable == ledger.received == ledger.acked == 10 * FRAME
    assert not ledger.unacked
    ledger.accept(b"\x00" * FRAME)
    assert ledger.unacked
    ledger.mark_acked()
    assert not ledger.unacked


def test_it_asks_for_an_inline_flush_at_three_seconds_of_unstored_audio():
    ledger = AudioLedger(sample_rate=RATE)
    for _ in range(29):
        ledger.accept(b"\x00" * FRAME)
    assert not ledger.needs_inline_flush
    ledger.accept(b"\x00" * FRAME)
    assert ledger.needs_inline_flush


def test_it_warns_near_and_stops_at_the_clinics_session_length():
    ledger = AudioLedger(sample_rate=RATE, max_session_seconds=301)  # warning 300 s ahead: from 1 s on
    assert not ledger.near_limit and not ledger.over_limit
    for _ in range(10):
        ledger.accept(b"\x00" * FRAME)
    assert ledger.near_limit and not ledger.over_limit and ledger.seconds_left == 300
    unlimited = AudioLedger(sample_rate=RATE)
    unlimited.accept(b"\x00" * FRAME)
    assert not unlimited.near_limit and not unlimited.over_limit
