from dataclasses import dataclass

from sessions import formats


@dataclass
class Seg:
    segment_id: str
    start_ms: int
    end_ms: int
    text: str
    speaker: str = ""
    confidence: float | None = None
    revision: int = 0


SEGMENTS = [
    Seg("a", 0, 1500, "Hello\n\nthere", "dr"),
    Seg("b", 3_723_004, 3_725_000, "x --> y <b> & z"),
]


def test_it_renders_srt_with_comma_milliseconds_and_hours():
    assert formats.transcript_as_srt(SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:01,500\ndr: Hello there\n\n2\n01:02:03,004 --> 01:02:05,000\nx --> y <b> & z\n"
    )


def test_it_renders_vtt_with_escaped_cue_text_and_voice_tags():
    assert formats.transcript_as_vtt(SEGMENTS) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n<v dr>Hello there\n\n"
        "01:02:03.004 --> 01:02:05.000\nx --&gt; y &lt;b&gt; &amp; z\n"
    )


def test_it_renders_plain_text_one_line_per_segment():
    assert formats.transcript_as_txt(SEGMENTS) == "dr: Hello there\nx --> y <b> & z\n"
    assert formats.transcript_as_txt([]) == ""


def test_it_keeps_times_speaker_and_confidence_in_json():
    data = formats.transcript_document([Seg("a", 5, 9, "こんにちは", "pt", 0.5)], session_id="s", language="ja-JP")
    assert data == {
        "session_id": "s",
        "language": "ja-JP",
        "segments": [
            {
                "segment_id": "a",
                "revision": 0,
                "start_ms": 5,
                "end_ms": 9,
                "text": "こんにちは",
                "speaker": "pt",
                "confidence": 0.5,
            }
        ],
    }
    assert "こんにちは" in formats.transcript_as_json([Seg("a", 5, 9, "こんにちは")], session_id="s", language="ja-JP")
