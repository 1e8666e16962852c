"""The bedrock note engine against the local Converse stand-in (a real HTTP
server speaking the Converse wire protocol; boto3 unchanged, pointed at it):
success, throttling (retryable, then failed), malformed output (failed,
visible), a timeout; the clinic's opt-in; nothing but the transcript leaves."""

import json

import pytest

from notes.engines.base import NoteEngineError, NoteRequest, NoteSegment
from notes.engines.bedrock import BedrockNoteEngine
from notes.models import ClinicalNote, NoteEngineCall, NoteStatus
from notes.services import note_generate
from tests.api.conftest import error_code
from tests.bedrock_standin.server import Scenario


@pytest.fixture
def opted_in(clinic_a):
    clinic_a.notes_bedrock_enabled = True
    clinic_a.save(update_fields=["notes_bedrock_enabled"])
    return clinic_a


def _engine(standin, timeout: float = 30.0) -> BedrockNoteEngine:
    return BedrockNoteEngine(
        model_id="anthropic.claude-3-5-sonnet-20240620-v1:0",
        region="ap-northeast-1",
        endpoint_url=standin.url,
        timeout=timeout,
        credentials=("AKIDSTANDIN", "standin-secret"),
    )


REQUEST = NoteRequest(
    language="en-US",
    segments=(
        NoteSegment("seg-0", 0, 900, "My knee hurts since Friday.", "patient"),
        NoteSegment("seg-1", 1000, 1900, "The knee is swollen.", "clinician"),
    ),
)


def test_it_drafts_through_the_converse_api(converse_standin, en_session, principal_clinician_a, opted_in, run_jobs):
    note_generate(principal=principal_clinician_a, session=en_session, engine="bedrock")
    assert run_jobs() == 1
    note = ClinicalNote.objects.get(session=en_session)
    assert note.status == NoteStatus.DRAFT and note.engine == "bedrock"
    assert note.model_id == "anthropic.claude-3-5-sonnet-20240620-v1:0" and note.prompt_version == "bedrock-soap-1"
    assert note.sections["subjective"][0] == {
        "id": "n1",
        "text": "I have had chest pain since last Tuesday, mostly at night.",
        "evidence": ["seg-1"],
    }
    [request] = converse_standin.requests
    assert request.model_id == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert request.path.startswith("/model/") and request.path.endswith("/converse")
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256")
    assert "/ap-northeast-1/bedrock/aws4_request" in request.headers["authorization"]
    assert request.body["inferenceConfig"]["temperature"] == 0.0
    [call] = NoteEngineCall.objects.filter(clinic=opted_in)
    assert call.engine == "bedrock" and call.outcome == "ok" and call.input_chars > 0 and call.output_chars > 0


def test_it_sends_no_clinic_or_patient_identifier(
    converse_standin, en_session, principal_clinician_a, opted_in, run_jobs
):
    note_generate(principal=principal_clinician_a, session=en_session, engine="bedrock")
    run_jobs()
    [request] = converse_standin.requests
    sent = request.raw.decode() + request.path + json.dumps(request.headers)
    for identifier in (
        str(en_session.pk), str(opted_in.pk), opted_in.slug, opted_in.name, en_session.external_ref,
        f"user:{principal_clinician_a.user.pk}", "carl-clinician-a",
    ):  # fmt: skip
        assert identifier not in sent
    assert set(request.body) == {"messages", "system", "inferenceConfig"}
    assert "I have had chest pain since last Tuesday" in request.raw.decode()


def test_it_retries_a_throttled_call_then_fails_visibly(
    converse_standin, en_session, principal_clinician_a, opted_in, run_jobs, settings, client_a
):
    from datetime import timedelta

    from django.utils import timezone

    settings.NOTES_MAX_ATTEMPTS = 2
    converse_standin.script += [Scenario("throttle"), Scenario("throttle")]
    note_generate(principal=principal_clinician_a, session=en_session, engine="bedrock")
    run_jobs()
    note = ClinicalNote.objects.get(session=en_session)
    assert (note.status, note.error_code, note.error_retryable, note.attempts) == (
        NoteStatus.QUEUED, "note_engine_throttled", True, 1,
    )  # fmt: skip
    assert note.run_after > timezone.now()
    body = client_a.get(f"/api/v1/sessions/{en_session.pk}/note/").json()
    assert body["status"] == "queued" and body["error"]["code"] == "note_engine_throttled"
    assert body["next_attempt_at"] is not None
    assert run_jobs() == 0  # not due yet
    run_jobs(now=timezone.now() + timedelta(hours=1))
    note.refresh_from_db()
    assert (note.status, note.error_code, note.attempts) == (NoteStatus.FAILED, "note_engine_throttled", 2)
    assert len(converse_standin.requests) == 2
    assert list(NoteEngineCall.objects.values_list("outcome", flat=True)) == ["note_engine_throttled"] * 2
    # The retry endpoint takes it up again; the stand-in answers this time.
    assert client_a.post(f"/api/v1/sessions/{en_session.pk}/note/retry/").status_code == 202
    run_jobs()
    note.refresh_from_db()
    assert note.status == NoteStatus.DRAFT and note.error_code == ""


def test_it_fails_a_malformed_answer_visibly_without_retrying(
    converse_standin, en_session, principal_clinician_a, opted_in, run_jobs, client_a
):
    converse_standin.script.append(Scenario("malformed"))
    note_generate(principal=principal_clinician_a, session=en_session, engine="bedrock")
    run_jobs()
    body = client_a.get(f"/api/v1/sessions/{en_session.pk}/note/").json()
    assert body["status"] == "failed" and body["attempts"] == 1
    assert body["error"]["code"] == "note_output_invalid" and body["error"]["retryable"] is False
    assert all(s["sentences"] == [] for s in body["sections"])


def test_it_refuses_an_answer_citing_segments_the_transcript_does_not_have(
    converse_standin, en_session, principal_clinician_a, opted_in, run_jobs
):
    invented = {"subjective": [{"text": "The patient smokes.", "evidence": ["seg-99"]}]}
    converse_standin.script.append(Scenario("success", answer_text=json.dumps(invented)))
    note_generate(principal=principal_clinician_a, session=en_session, engine="bedrock")
    run_jobs()
    note = ClinicalNote.objects.get(session=en_session)
    assert (note.status, note.error_code) == (NoteStatus.FAILED, "note_output_invalid")
    assert note.sections == {}


def test_it_reads_a_fenced_json_answer(converse_standin):
    answer = '```json\n{"plan": [{"text": "Ice the knee.", "evidence": ["seg-1"]}]}\n```'
    converse_standin.script.append(Scenario("success", answer_text=answer))
    draft = _engine(converse_standin).generate(REQUEST, progress=lambda p: None)
    assert [(s.text, s.evidence) for s in draft.sections["plan"]] == [("Ice the knee.", ["seg-1"])]


def test_it_turns_a_timeout_into_a_retryable_error(converse_standin):
    converse_standin.script.append(Scenario("slow", delay=10.0))
    with pytest.raises(NoteEngineError) as raised:
        _engine(converse_standin, timeout=0.3).generate(REQUEST, progress=lambda p: None)
    assert raised.value.code == "note_engine_timeout" and raised.value.retryable


@pytest.mark.parametrize(
    ("kind", "code", "retryable"),
    [("error500", "note_engine_unavailable", True), ("denied", "note_engine_denied", False)],
)
def test_it_says_whether_a_refusal_is_worth_retrying(converse_standin, kind, code, retryable):
    converse_standin.script.append(Scenario(kind))
    with pytest.raises(NoteEngineError) as raised:
        _engine(converse_standin).generate(REQUEST, progress=lambda p: None)
    assert (raised.value.code, raised.value.retryable) == (code, retryable)


def test_it_needs_the_clinics_opt_in_for_bedrock(client_a, en_session, settings, principal_clinician_a):
    response = client_a.post(f"/api/v1/sessions/{en_session.pk}/note/generate/", {"engine": "bedrock"}, format="json")
    assert response.status_code == 403 and error_code(response) == "bedrock_not_enabled"
    # The platform default bedrock, the clinic not opted in: the extractive engine.
    settings.NOTES_ENGINE = "bedrock"
    note = note_generate(principal=principal_clinician_a, session=en_session)
    assert note.engine == "extractive"


def test_it_uses_bedrock_by_default_for_a_clinic_that_opted_in(settings, opted_in, en_session, principal_clinician_a):
    settings.NOTES_ENGINE = "bedrock"
    principal_clinician_a.clinic.refresh_from_db()
    assert note_generate(principal=principal_clinician_a, session=en_session).engine == "bedrock"


def test_it_lets_a_clinic_admin_opt_in(client_a_admin, client_a, clinic_a):
    assert client_a.patch("/api/v1/clinic/", {"notes_bedrock_enabled": True}, format="json").status_code == 403
    response = client_a_admin.patch("/api/v1/clinic/", {"notes_bedrock_enabled": True}, format="json")
    assert response.status_code == 200 and response.json()["notes_bedrock_enabled"] is True
    clinic_a.refresh_from_db()
    assert clinic_a.notes_bedrock_enabled
