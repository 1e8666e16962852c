"""What a clinic's speech engine transcribes is known before recording: the
clinic endpoint says it, and a session in another language is refused with
a stable code instead of hanging at the socket."""

from sessions.models import ConsultationSession
from tests.api.conftest import error_code


def test_it_refuses_a_japanese_session_on_the_offline_engine_before_recording(client_a, clinic_a):
    clinic_a.transcription_engine = "local"
    clinic_a.default_language = "ja-JP"
    clinic_a.save()
    response = client_a.post("/api/v1/sessions/", {"language": "ja-JP"}, format="json")
    assert response.status_code == 400
    assert error_code(response) == "language_not_supported"
    details = response.json()["error"]["details"]
    assert details == {"language": "ja-JP", "engine": "local", "supported_languages": ["en-US"]}
    assert not ConsultationSession.objects.filter(clinic=clinic_a).exists()
    # The clinic's default (ja-JP) is refused the same way; English works.
    assert error_code(client_a.post("/api/v1/sessions/", {}, format="json")) == "language_not_supported"
    assert client_a.post("/api/v1/sessions/", {"language": "en-US"}, format="json").status_code == 201


def test_it_accepts_japanese_on_the_aws_engine(client_a, clinic_a):
    clinic_a.transcription_engine = "aws"
    clinic_a.save()
    assert client_a.post("/api/v1/sessions/", {"language": "ja-JP"}, format="json").status_code == 201


def test_it_tells_each_clinic_what_its_own_engine_transcribes(client_a, clinic_a, client_b, clinic_b):
    clinic_a.transcription_engine = "local"
    clinic_a.save()
    clinic_b.transcription_engine = "aws"
    clinic_b.save()
    body_a = client_a.get("/api/v1/clinic/").json()
    assert (body_a["engine"], body_a["engine_languages"]) == ("local", ["en-US"])
    body_b = client_b.get("/api/v1/clinic/").json()
    assert (body_b["engine"], body_b["engine_languages"]) == ("aws", ["ja-JP", "en-US"])
