"""The offline extractive engine: sorts the transcript's own sentences
(finals, latest revisions, speaker roles) into S/O/A/P in Japanese and
English, each citing the segment it came from; it never writes a word."""

from notes.engines.base import NoteRequest, NoteSegment
from notes.engines.extractive import ExtractiveNoteEngine, split_sentences
from notes.models import ClinicalNote, NoteStatus
from notes.services import note_generate
from sessions.models import TranscriptSegment
from sessions.services import segment_correct


def _sections(note: ClinicalNote) -> dict[str, list[str]]:
    return {key: [s["text"] for s in sentences] for key, sentences in note.sections.items()}


def _assert_every_sentence_is_the_transcripts_own(note: ClinicalNote) -> None:
    finals = {s.segment_id: s.text for s in TranscriptSegment.objects.filter(session=note.session, is_final=True)}
    for sentences in note.sections.values():
        for sentence in sentences:
            assert sentence["evidence"], sentence
            for segment_id in sentence["evidence"]:
                assert segment_id in finals  # a real final of this session, never the interim
                assert sentence["text"] in finals[segment_id]


def test_it_sorts_a_japanese_consultation_into_the_four_sections(ja_session, principal_clinician_a, run_jobs):
    note_generate(principal=principal_clinician_a, session=ja_session)
    run_jobs()
    note = ClinicalNote.objects.get(session=ja_session)
    assert note.status == NoteStatus.DRAFT and note.engine == "extractive" and note.prompt_version
    assert _sections(note) == {
        "subjective": ["先週の火曜日から頭痛がひどくて、夜も眠れません。", "熱はありませんが、少し吐き気があります。"],
        "objective": ["血圧は130の80で、神経学的な異常はありません。"],
        "assessment": ["緊張型頭痛の可能性が高いと思います。"],
        "plan": ["鎮痛薬を出しますので、一週間後にもう一度来てください。"],
    }
    assert note.sections["plan"][0]["evidence"] == ["seg-6"]
    _assert_every_sentence_is_the_transcripts_own(note)


def test_it_sorts_an_english_consultation_and_leaves_out_questions_and_greetings(
    en_session, principal_clinician_a, run_jobs
):
    note_generate(principal=principal_clinician_a, session=en_session)
    run_jobs()
    note = ClinicalNote.objects.get(session=en_session)
    assert _sections(note) == {
        "subjective": [
            "I have had chest pain since last Tuesday, mostly at night.",
            "No, but I also get a headache in the mornings.",
        ],
        "objective": ["Your blood pressure is 150 over 95 today."],
        "assessment": ["This is probably related to your blood pressure."],
        "plan": ["Let's do an ECG today and follow up in two weeks."],
    }
    _assert_every_sentence_is_the_transcripts_own(note)


def test_it_drafts_from_the_latest_revision_of_a_corrected_final(en_session, principal_clinician_a, run_jobs):
    segment_correct(
        principal=principal_clinician_a,
        session=en_session,
        segment_id="seg-1",
        text="I have had chest pain since last Monday.",
        revision=0,
    )
    note_generate(principal=principal_clinician_a, session=en_session)
    run_jobs()
    note = ClinicalNote.objects.get(session=en_session)
    assert note.sections["subjective"][0] == {
        "id": "n1",
        "text": "I have had chest pain since last Monday.",
        "evidence": ["seg-1"],
    }


def test_it_uses_the_speaker_roles_a_person_set(en_session, principal_clinician_a, run_jobs):
    # The clinician's plain statement is a finding; the same words from the patient are what they report.
    en_session.speaker_roles = {"spk_0": "patient", "spk_1": "clinician"}
    en_session.save(update_fields=["speaker_roles"])
    note_generate(principal=principal_clinician_a, session=en_session)
    run_jobs()
    note = ClinicalNote.objects.get(session=en_session)
    assert "Your blood pressure is 150 over 95 today." in _sections(note)["subjective"]
    assert "I have had chest pain since last Tuesday, mostly at night." in _sections(note)["objective"]


def test_it_splits_segments_into_sentences_each_citing_its_segment():
    request = NoteRequest(
        language="en-US",
        segments=(
            NoteSegment("a", 0, 900, "My knee hurts. It is swollen since Friday.", "patient"),
            NoteSegment("b", 1000, 1900, "We'll order an X-ray. Okay.", "clinician"),
        ),
    )
    draft = ExtractiveNoteEngine().generate(request, progress=lambda p: None)
    assert [(s.text, s.evidence) for s in draft.sections["subjective"]] == [
        ("My knee hurts.", ["a"]),
        ("It is swollen since Friday.", ["a"]),
    ]
    assert [(s.text, s.evidence) for s in draft.sections["plan"]] == [("We'll order an X-ray.", ["b"])]
    assert split_sentences("頭が痛いです。熱もあります！", "ja-JP") == ["頭が痛いです。", "熱もあります！"]


def test_it_drafts_an_empty_note_from_an_empty_transcript(en_session, principal_clinician_a, run_jobs):
    TranscriptSegment.objects.filter(session=en_session).delete()
    note_generate(principal=principal_clinician_a, session=en_session)
    run_jobs()
    note = ClinicalNote.objects.get(session=en_session)
    assert note.status == NoteStatus.DRAFT
    assert note.sections == {"subjective": [], "objective": [], "assessment": [], "plan": []}
