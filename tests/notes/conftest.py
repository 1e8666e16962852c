"""Ended consultations of clinic A (English and Japanese) with finals and
speaker labels, and a helper that runs the note jobs the way a server
process's worker does."""

import pytest

from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from tests.api.conftest import client_a, client_a_admin, client_b, key_a, segments_a, session_a  # noqa: F401
from tests.bedrock_standin.fixtures import converse_standin  # noqa: F401

EN_LINES = (
    ("spk_0", "Good morning. What brings you in today?"),
    ("spk_1", "I have had chest pain since last Tuesday, mostly at night."),
    ("spk_0", "Does the pain spread to your arm or jaw?"),
    ("spk_1", "No, but I also get a headache in the mornings."),
    ("spk_0", "Your blood pressure is 150 over 95 today."),
    ("spk_0", "This is probably related to your blood pressure."),
    ("spk_0", "Let's do an ECG today and follow up in two weeks."),
)
JA_LINES = (
    ("spk_0", "今日はどうされましたか。"),
    ("spk_1", "先週の火曜日から頭痛がひどくて、夜も眠れません。"),
    ("spk_0", "熱や吐き気はありますか。"),
    ("spk_1", "熱はありませんが、少し吐き気があります。"),
    ("spk_0", "血圧は130の80で、神経学的な異常はありません。"),
    ("spk_0", "緊張型頭痛の可能性が高いと思います。"),
    ("spk_0", "鎮痛薬を出しますので、一週間後にもう一度来てください。"),
)


def make_ended_session(clinic, user, *, language: str, lines, ref: str = "visit-note") -> ConsultationSession:
    session = ConsultationSession.objects.create(
        clinic=clinic,
        created_by=user,
        language=language,
        engine="fake",
        external_ref=ref,
        status=SessionStatus.ENDED,
        speaker_roles={"spk_0": "clinician", "spk_1": "patient"},
    )
    for n, (speaker, text) in enumerate(lines):
        TranscriptSegment.objects.create(
            clinic=clinic,
            session=session,
            segment_id=f"seg-{n}",
            start_ms=n * 4000,
            end_ms=n * 4000 + 3500,
            text=text,
            speaker=speaker,
            confidence=0.9,
        )
    # An interim result: never evidence.
    TranscriptSegment.objects.create(
        clinic=clinic, session=session, segment_id="interim-9", start_ms=90_000, end_ms=91_000, text="uh",
        is_final=False,
    )  # fmt: skip
    return session


@pytest.fixture
def en_session(clinic_a, clinician_a) -> ConsultationSession:
    return make_ended_session(clinic_a, clinician_a, language="en-US", lines=EN_LINES)


@pytest.fixture
def ja_session(clinic_a, clinician_a) -> ConsultationSession:
    return make_ended_session(clinic_a, clinician_a, language="ja-JP", lines=JA_LINES, ref="visit-ja")


@pytest.fixture
def run_jobs():
    """Run every due note job now, as the worker thread would."""
    from notes.jobs import note_jobs_run_due

    def run(**kwargs) -> int:
        return note_jobs_run_due(**kwargs)

    return run


@pytest.fixture
def drafted(en_session, principal_clinician_a, run_jobs):
    """The English session with its extractive draft (version 1)."""
    from notes.services import note_generate

    note_generate(principal=principal_clinician_a, session=en_session)
    run_jobs()
    return en_session
