"""Speaker roles over REST (issue 13, item 2): the engine's labels mapped to
clinician / patient / family / other — a first guess (the first label heard
is the clinician) that any member can replace; the transcript, its text
formats, the sealed ``transcript.json`` and the clinic export show the role
with the label kept; without labels nothing changes. Audited with labels
and roles only; another clinic's session is 404."""

import json

import pytest
from django.core.files.storage import default_storage

from clinics.models import AuditEvent
from sessions import storage_keys
from sessions.models import ConsultationSession, TranscriptSegment
from tests.api.conftest import error_code


def _speakers(session) -> str:
    return f"/api/v1/sessions/{session.pk}/speakers/"


@pytest.fixture
def labelled_session(clinic_a, clinician_a) -> ConsultationSession:
    """A ja-JP consultation labelled as AWS labels it: spk_1 speaks first."""
    session = ConsultationSession.objects.create(
        clinic=clinic_a, created_by=clinician_a, language="ja-JP", engine="aws"
    )
    for seg, start, speaker, text in [
        ("a", 0, "spk_1", "今日はどうされましたか"),
        ("b", 2000, "spk_0", "頭が痛いです"),
        ("c", 4000, "spk_0", "昨日からです"),
        ("d", 6000, "spk_2", "母も心配しています"),
    ]:
        TranscriptSegment.objects.create(
            clinic=clinic_a, session=session, segment_id=seg, start_ms=start, end_ms=start + 1500, text=text,
            speaker=speaker, confidence=0.95,
        )  # fmt: skip
    return session


def test_it_guesses_the_first_label_heard_is_the_clinician(client_a, labelled_session):
    body = client_a.get(_speakers(labelled_session)).json()
    assert body["guessed"] is True and body["set_by"] == ""
    assert body["roles"] == {"spk_1": "clinician"}
    assert [(s["label"], s["role"], s["segments"]) for s in body["speakers"]] == [
        ("spk_1", "clinician", 1),
        ("spk_0", None, 2),
        ("spk_2", None, 1),
    ]


@pytest.mark.parametrize("client_name", ["client_a", "client_a_admin"])
def test_it_sets_the_roles_and_audits_labels_and_roles_only(request, labelled_session, client_name):
    client = request.getfixturevalue(client_name)
    roles = {"spk_1": "clinician", "spk_0": "patient", "spk_2": "family"}
    response = client.put(_speakers(labelled_session), {"roles": roles}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["guessed"] is False and body["roles"] == roles and body["set_by"].startswith("api-key:")
    labelled_session.refresh_from_db()
    assert labelled_session.speaker_roles == roles
    event = AuditEvent.objects.get(action="session.speaker_roles", object_id=str(labelled_session.pk))
    assert event.details == {"roles": dict(sorted(roles.items()))}
    assert "頭" not in json.dumps(event.details, ensure_ascii=False)
    session = client.get(f"/api/v1/sessions/{labelled_session.pk}/").json()
    assert session["speaker_roles"] == roles


def test_it_shows_roles_in_every_transcript_format_keeping_the_label(client_a, labelled_session):
    roles = {"spk_1": "clinician", "spk_0": "patient", "spk_2": "family"}
    client_a.put(_speakers(labelled_session), {"roles": roles}, format="json")
    base = f"/api/v1/sessions/{labelled_session.pk}/transcript/"
    document = client_a.get(base).json()
    assert document["speaker_roles"] == roles
    assert [(s["speaker"], s["speaker_role"]) for s in document["segments"]] == [
        ("spk_1", "clinician"),
        ("spk_0", "patient"),
        ("spk_0", "patient"),
        ("spk_2", "family"),
    ]
    txt = client_a.get(base + "?format=txt").content.decode()
    # A ja-JP consultation's download names the roles in Japanese.
    assert txt.splitlines()[:2] == ["医師 (spk_1): 今日はどうされましたか", "患者 (spk_0): 頭が痛いです"]
    assert "<v 家族 (spk_2)>母も心配しています" in client_a.get(base + "?format=vtt").content.decode()
    assert "医師 (spk_1): 今日は" in client_a.get(base + "?format=srt").content.decode()


def test_it_goes_back_to_the_guess_with_an_empty_mapping(client_a, labelled_session):
    client_a.put(_speakers(labelled_session), {"roles": {"spk_0": "clinician"}}, format="json")
    body = client_a.put(_speakers(labelled_session), {"roles": {}}, format="json").json()
    assert body["guessed"] is True and body["roles"] == {"spk_1": "clinician"}


def test_it_accepts_a_mapping_chosen_before_the_labels_are_heard(client_a, session_a):
    response = client_a.put(_speakers(session_a), {"roles": {"spk_0": "clinician"}}, format="json")
    assert response.status_code == 200
    assert response.json()["speakers"] == [] and response.json()["roles"] == {"spk_0": "clinician"}


def test_it_changes_nothing_for_a_transcript_without_labels(client_a, clinic_a, clinician_a):
    session = ConsultationSession.objects.create(
        clinic=clinic_a, created_by=clinician_a, language="en-US", engine="local"
    )
    TranscriptSegment.objects.create(
        clinic=clinic_a, session=session, segment_id="x", start_ms=0, end_ms=900, text="no fever", confidence=None
    )
    body = client_a.get(_speakers(session)).json()
    assert body == {"speakers": [], "roles": {}, "guessed": False, "set_by": ""}
    document = client_a.get(f"/api/v1/sessions/{session.pk}/transcript/").json()
    assert "speaker_roles" not in document and "speaker_role" not in document["segments"][0]
    assert client_a.get(f"/api/v1/sessions/{session.pk}/transcript/?format=txt").content.decode() == "no fever\n"


@pytest.mark.parametrize(
    "body",
    [
        {"roles": {"spk_0": "doctor"}},
        {"roles": {"Mr Tanaka": "patient"}},
        {"roles": ["spk_0"]},
        {"roles": {"spk_0": 1}},
        {"roles": {f"spk_{i}": "other" for i in range(17)}},
        {},
        {"roles": {}, "extra": 1},
    ],
)
def test_it_answers_400_to_bad_roles_and_keeps_the_mapping(client_a, labelled_session, body):
    response = client_a.put(_speakers(labelled_session), body, format="json")
    assert response.status_code == 400, response.content
    assert error_code(response) in {"invalid", "unknown_field"}
    labelled_session.refresh_from_db()
    assert labelled_session.speaker_roles == {}
    assert not AuditEvent.objects.filter(action="session.speaker_roles").exists()


@pytest.mark.parametrize("method", ["get", "put"])
def test_it_answers_404_for_another_clinics_session(client_b, labelled_session, method):
    response = getattr(client_b, method)(_speakers(labelled_session), {"roles": {"spk_0": "patient"}}, format="json")
    assert response.status_code == 404 and error_code(response) == "not_found"
    labelled_session.refresh_from_db()
    assert labelled_session.speaker_roles == {}


def test_it_rewrites_a_sealed_sessions_transcript_json_with_the_roles(client_a, labelled_session, tmp_media):
    labelled_session.audio_sha256 = "0" * 64
    labelled_session.save(update_fields=["audio_sha256"])
    client_a.put(_speakers(labelled_session), {"roles": {"spk_0": "patient", "spk_1": "clinician"}}, format="json")
    with default_storage.open(storage_keys.transcript_json_key(labelled_session)) as fh:
        stored = json.load(fh)
    assert stored["speaker_roles"] == {"spk_0": "patient", "spk_1": "clinician"}
    assert stored["segments"][1]["speaker"] == "spk_0" and stored["segments"][1]["speaker_role"] == "patient"
    assert "needs_review" not in stored["segments"][0]  # the clinic's threshold can change; REST computes it
