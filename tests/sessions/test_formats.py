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


def test_it_guesses_the_first_label_heard_until_a_person_sets_the_roles():
    assert formats.speaker_roles(["", "spk_1", "spk_0"], {}) == {"spk_1": "clinician"}
    assert formats.speaker_roles(["spk_1"], {"spk_0": "patient"}) == {"spk_0": "patient"}
    assert formats.speaker_roles(["", ""], None) == {}


def test_it_names_roles_in_the_sessions_language_keeping_the_label():
    segments = [Seg("a", 0, 900, "どうされましたか", "spk_0"), Seg("b", 1000, 1900, "頭痛です", "spk_9")]
    roles = {"spk_0": "clinician"}
    assert formats.transcript_as_txt(segments, roles=roles, language="ja-JP") == (
        "医師 (spk_0): どうされましたか\nspk_9: 頭痛です\n"
    )
    assert "<v Clinician (spk_0)>" in formats.transcript_as_vtt(segments, roles=roles, language="en-US")
    document = formats.transcript_document(segments, session_id="s", language="ja-JP", roles=roles)
    assert document["speaker_roles"] == roles
    assert [s["speaker_role"] for s in document["segments"]] == ["clinician", None]


def test_it_flags_only_unchecked_finals_below_the_threshold():
    unsure, sure = Seg("a", 0, 1, "x", confidence=0.59), Seg("b", 0, 1, "y", confidence=0.6)
    silent = Seg("c", 0, 1, "z")  # an engine that gives no confidence
    assert [formats.needs_review(s, 0.6) for s in (unsure, sure, silent)] == [True, False, False]
    unsure.reviewed_at = "2026-12-05T06:00:00+00:00"  # type: ignore[attr-defined]
    assert formats.needs_review(unsure, 0.6) is False
    document = formats.transcript_document([sure, silent], session_id="s", language="en-US", review_threshold=0.7)
    assert document["needs_review_count"] == 1 and document["segments"][1]["needs_review"] is False
