import asyncio
import json
import logging
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.core.files.storage import default_storage
from django.utils import timezone

from clinics.models import AuditEvent
from clinics.principals import stream_token_consume
from sessions import storage_keys
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from tests.api.conftest import error_code, streamed_body
from transcription.relay import control_log, get_relay

SESSION_ENDPOINTS = [
    ("get", "/api/v1/sessions/{id}/"),
    ("delete", "/api/v1/sessions/{id}/"),
    ("post", "/api/v1/sessions/{id}/end/"),
    ("post", "/api/v1/sessions/{id}/stream-token/"),
    ("get", "/api/v1/sessions/{id}/transcript/"),
    ("get", "/api/v1/sessions/{id}/transcript/?format=vtt"),
    ("get", "/api/v1/sessions/{id}/audio/"),
]


def test_it_creates_a_session_with_stream_urls_and_a_usable_token(client_a, clinic_a):
    response = client_a.post("/api/v1/sessions/", {"external_ref": "enc-42"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "created"
    assert body["language"] == "en-US"  # the clinic's default
    assert body["external_ref"] == "enc-42" and body["sample_rate"] == 16000 and body["engine"] == "fake"
    assert body["stream_url"] == f"ws://testserver/ws/v1/sessions/{body['id']}/stream"
    assert body["live_url"] == f"ws://testserver/ws/v1/sessions/{body['id']}/live"
    assert body["token_expires_at"]
    principal = stream_token_consume(token=body["stream_token"], session_id=body["id"])
    assert principal.clinic == clinic_a and principal.api_key is not None
    session = ConsultationSession.objects.get(pk=body["id"])
    assert session.clinic == clinic_a and session.created_by_api_key_id == principal.api_key.pk
    assert AuditEvent.objects.filter(action="session.create", object_id=body["id"]).exists()


def test_it_builds_wss_urls_behind_tls(client_a, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = client_a.post(
        "/api/v1/sessions/",
        {"language": "ja-JP"},
        format="json",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_HOST="api.example.org",
    )
    assert response.status_code == 201
    assert response.json()["stream_url"].startswith("wss://api.example.org/ws/v1/sessions/")
    assert response.json()["language"] == "ja-JP"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"patient_name": "Taro"}, "unknown_field"),
        ({"language": "fr-FR"}, "invalid"),
        ({"language": 5}, "invalid"),
        ({"sample_rate": "16000"}, "invalid"),
        ({"sample_rate": 100}, "invalid"),
        ({"external_ref": 12}, "invalid"),
        ({"external_ref": "x" * 129}, "invalid"),
        ({"id": "00000000-0000-0000-0000-000000000000"}, "unknown_field"),
        ([1, 2], "invalid"),
    ],
)
def test_it_answers_bad_session_bodies_with_400_and_creates_nothing(client_a, body, code):
    response = client_a.post("/api/v1/sessions/", body, format="json")
    assert response.status_code == 400, response.content
    assert error_code(response) == code
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert ConsultationSession.objects.count() == 0


def test_it_answers_malformed_json_with_400(client_a):
    response = client_a.post("/api/v1/sessions/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert error_code(response) == "malformed_request"


def test_it_answers_an_oversize_body_in_the_error_shape(client_a, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    big = json.dumps({"external_ref": "x" * 5000})
    response = client_a.post("/api/v1/sessions/", big, content_type="application/json")
    assert response.status_code == 413
    assert error_code(response) == "request_too_large"
    form = client_a.post("/api/v1/sessions/", "a=" + "x" * 5000, content_type="application/x-www-form-urlencoded")
    assert form.status_code in (400, 413, 415)
    assert "error" in form.json()
    assert ConsultationSession.objects.count() == 0


def test_it_refuses_new_sessions_when_the_monthly_minutes_are_used(client_a, clinic_a, session_a):
    session_a.audio_duration_ms = 61_000
    session_a.save()
    clinic_a.quota.audio_minutes_per_month = 1
    clinic_a.quota.save()
    response = client_a.post("/api/v1/sessions/", {}, format="json")
    assert response.status_code == 429
    assert error_code(response) == "audio_minutes_exhausted"


def test_it_lists_only_the_callers_clinic_with_filters(client_a, client_b, session_a, clinic_b):
    other = ConsultationSession.objects.create(clinic=clinic_b, language="ja-JP", engine="fake", external_ref="visit-1")
    ended = ConsultationSession.objects.create(
        clinic=session_a.clinic, language="en-US", engine="fake", status=SessionStatus.ENDED, external_ref="visit-2"
    )
    listing = client_a.get("/api/v1/sessions/").json()
    assert listing["count"] == 2
    assert {r["id"] for r in listing["results"]} == {str(session_a.id), str(ended.id)}
    assert [r["id"] for r in client_a.get("/api/v1/sessions/?status=ended").json()["results"]] == [str(ended.id)]
    by_ref = client_a.get("/api/v1/sessions/?external_ref=visit-1").json()["results"]
    assert [r["id"] for r in by_ref] == [str(session_a.id)]
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert client_a.get("/api/v1/sessions/", {"created_after": future}).json()["count"] == 0
    assert client_a.get("/api/v1/sessions/", {"created_before": future}).json()["count"] == 2
    assert client_a.get("/api/v1/sessions/?limit=1").json()["next"]
    assert client_a.get("/api/v1/sessions/?status=bogus").status_code == 400
    assert [r["id"] for r in client_b.get("/api/v1/sessions/").json()["results"]] == [str(other.id)]


def test_it_reads_a_session(client_a, session_a):
    body = client_a.get(f"/api/v1/sessions/{session_a.id}/").json()
    assert body["id"] == str(session_a.id) and body["status"] == "created"


@pytest.mark.parametrize(("method", "path"), SESSION_ENDPOINTS)
def test_it_answers_404_to_another_clinic_for_every_session_endpoint(client_b, session_a, audio_a, method, path):
    response = getattr(client_b, method)(path.format(id=session_a.id))
    assert response.status_code == 404, response.content
    assert error_code(response) == "not_found"
    session_a.refresh_from_db()
    assert session_a.status == SessionStatus.CREATED
    assert default_storage.exists(storage_keys.audio_wav_key(session_a))
    assert not AuditEvent.objects.filter(object_id=str(session_a.id)).exclude(action="session.create").exists()


@pytest.mark.parametrize(("method", "path"), SESSION_ENDPOINTS)
def test_it_answers_404_for_malformed_and_unknown_ids(client_a, method, path):
    for bad in ("not-a-uuid", str(uuid.uuid4())):
        response = getattr(client_a, method)(path.format(id=bad))
        assert response.status_code == 404
        assert error_code(response) == "not_found"


def _relayed(clinic_id, session_id) -> list[dict]:
    """Every event the session relay holds for the session."""

    async def read() -> list[dict]:
        subscription = await get_relay().subscribe(clinic_id, session_id, after_seq=0)
        events = []
        try:
            while True:
                try:
                    events.append((await asyncio.wait_for(anext(subscription), 0.5)).event)
                except TimeoutError:
                    return events
        finally:
            await subscription.aclose()

    return async_to_sync(read)()


def test_it_ends_a_session_and_tells_live_sockets_after_commit(client_a, session_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert _relayed(session_a.clinic_id, session_a.id) == []
        response = client_a.post(f"/api/v1/sessions/{session_a.id}/end/")
        assert _relayed(session_a.clinic_id, session_a.id) == []  # not before the commit
    assert response.status_code == 200 and response.json()["status"] == "ended"
    # After the commit: the sockets are told, the note draft is asked for
    # (transcript_completed), and that draft's job is started.
    assert len(callbacks) == 3
    # Its producer hears it on the control log, its viewers on theirs.
    assert _relayed(session_a.clinic_id, control_log(session_a.id)) == [{"type": "session.ended"}]
    assert _relayed(session_a.clinic_id, session_a.id) == [{"type": "session.ended"}]
    again = client_a.post(f"/api/v1/sessions/{session_a.id}/end/")
    assert again.status_code == 200 and again.json()["ended_at"] == response.json()["ended_at"]
    assert AuditEvent.objects.filter(action="session.end", object_id=str(session_a.id)).count() == 1


def test_it_keeps_an_end_committed_when_the_relay_fails(
    client_a, session_a, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr("transcription.relay.publish_sync", broken)
    with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
        response = client_a.post(f"/api/v1/sessions/{session_a.id}/end/")
    assert response.status_code == 200
    session_a.refresh_from_db()
    assert session_a.status == SessionStatus.ENDED
    assert "session_end_notify_failed" in caplog.text


def test_it_issues_a_fresh_stream_token_only_for_open_sessions(client_a, session_a):
    response = client_a.post(f"/api/v1/sessions/{session_a.id}/stream-token/")
    assert response.status_code == 200
    body = response.json()
    assert stream_token_consume(token=body["stream_token"], session_id=session_a.id).clinic == session_a.clinic
    assert body["stream_url"].endswith(f"/ws/v1/sessions/{session_a.id}/stream")
    client_a.post(f"/api/v1/sessions/{session_a.id}/end/")
    ended = client_a.post(f"/api/v1/sessions/{session_a.id}/stream-token/")
    assert ended.status_code == 409 and error_code(ended) == "session_ended"


def test_it_erases_audio_transcript_and_session_leaving_a_tombstone(
    client_a_admin, session_a, segments_a, audio_a, tmp_media
):
    client_a = client_a_admin
    prefix_dir = tmp_media / storage_keys.session_prefix(session_a)
    assert any(prefix_dir.rglob("*"))
    response = client_a.delete(f"/api/v1/sessions/{session_a.id}/")
    assert response.status_code == 204
    assert not prefix_dir.exists() or not any(p.is_file() for p in prefix_dir.rglob("*"))
    assert not ConsultationSession.objects.filter(pk=session_a.id).exists()
    assert not TranscriptSegment.objects.filter(session_id=session_a.id).exists()
    tombstone = AuditEvent.objects.get(action="session.erase", object_id=str(session_a.id))
    assert tombstone.details == {"storage_objects": 2, "segments": 3}
    assert client_a.get(f"/api/v1/sessions/{session_a.id}/").status_code == 404


def test_it_erases_nothing_when_storage_is_unavailable(client_a_admin, session_a, segments_a, monkeypatch):
    client_a = client_a_admin

    def unavailable(prefix):
        raise OSError("disk gone")

    monkeypatch.setattr("sessions.services.storage_delete_prefix", unavailable)
    response = client_a.delete(f"/api/v1/sessions/{session_a.id}/")
    assert response.status_code == 503 and error_code(response) == "storage_unavailable"
    assert ConsultationSession.objects.filter(pk=session_a.id).exists()
    assert TranscriptSegment.objects.filter(session_id=session_a.id).count() == 3
    assert not AuditEvent.objects.filter(action="session.erase").exists()


def test_it_refuses_erasure_to_clinicians(client_a, session_a, segments_a, audio_a):
    response = client_a.delete(f"/api/v1/sessions/{session_a.id}/")
    assert response.status_code == 403 and error_code(response) == "admin_required"
    assert ConsultationSession.objects.filter(pk=session_a.id).exists()
    assert default_storage.exists(storage_keys.audio_wav_key(session_a))


def test_it_refuses_to_erase_a_live_session(client_a_admin, session_a, audio_a):
    client_a = client_a_admin
    session_a.status = SessionStatus.LIVE
    session_a.save()
    response = client_a.delete(f"/api/v1/sessions/{session_a.id}/")
    assert response.status_code == 409 and error_code(response) == "session_live"
    assert default_storage.exists(storage_keys.audio_wav_key(session_a))


def test_it_serves_final_segments_as_json_and_audits_the_read(client_a, session_a, segments_a, key_a):
    response = client_a.get(f"/api/v1/sessions/{session_a.id}/transcript/", HTTP_X_REQUEST_ID="req-transcript-1")
    assert response.status_code == 200
    body = response.json()
    assert [s["segment_id"] for s in body["segments"]] == ["s1", "s2"]
    assert body["segments"][0] == {
        "segment_id": "s1",
        "revision": 0,
        "start_ms": 0,
        "end_ms": 1500,
        "text": "Good morning, how are you feeling?",
        "speaker": "clinician",
        "confidence": 0.93,
        # The first label heard is guessed to be the clinician (nobody set the roles).
        "speaker_role": "clinician",
        "needs_review": False,
        "reviewed_by": "",
        "reviewed_at": None,
    }
    event = AuditEvent.objects.get(action="transcript.read", object_id=str(session_a.id))
    assert event.actor_api_key is not None and event.actor_api_key.role == "clinician"
    assert event.request_id == "req-transcript-1" and event.client_ip == "127.0.0.1"
    assert event.details == {"format": "json", "segments": 2}


@pytest.mark.parametrize(
    ("fmt", "content_type", "expected"),
    [
        (
            "txt",
            "text/plain",
            "Clinician (clinician): Good morning, how are you feeling?\npatient: A little <better> & rested.\n",
        ),
        ("vtt", "text/vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n<v Clinician (clinician)>Good morning"),
        ("srt", "application/x-subrip", "1\n00:00:00,000 --> 00:00:01,500\nClinician (clinician): Good morning"),
    ],
)
def test_it_serves_the_transcript_in_text_formats(client_a, session_a, segments_a, fmt, content_type, expected):
    response = client_a.get(f"/api/v1/sessions/{session_a.id}/transcript/?format={fmt}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    text = response.content.decode()
    assert text.startswith(expected)
    assert "interim words" not in text
    assert AuditEvent.objects.filter(action="transcript.read", details__format=fmt).count() == 1


def test_it_refuses_an_unknown_transcript_format(client_a, session_a):
    response = client_a.get(f"/api/v1/sessions/{session_a.id}/transcript/?format=pdf")
    assert response.status_code == 400 and error_code(response) == "invalid"


def test_it_serves_the_audio_whole_and_audits_it(client_a, session_a, audio_a):
    response = client_a.get(f"/api/v1/sessions/{session_a.id}/audio/", HTTP_ACCEPT="audio/wav")
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav" and response["Accept-Ranges"] == "bytes"
    assert streamed_body(response) == audio_a
    event = AuditEvent.objects.get(action="audio.read", object_id=str(session_a.id))
    assert event.details == {"start": 0, "end": len(audio_a) - 1, "bytes": len(audio_a), "size": len(audio_a)}


@pytest.mark.parametrize(
    ("header", "span"),
    [("bytes=0-99", (0, 99)), ("bytes=100-", (100, None)), ("bytes=-50", (-50, None)), ("bytes=10-999999", (10, None))],
)
def test_it_honours_byte_ranges(client_a, session_a, audio_a, header, span):
    size = len(audio_a)
    start = span[0] if span[0] >= 0 else size + span[0]
    end = span[1] if span[1] is not None else size - 1
    response = client_a.get(f"/api/v1/sessions/{session_a.id}/audio/", HTTP_RANGE=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert response["Content-Length"] == str(end - start + 1)
    assert streamed_body(response) == audio_a[start : end + 1]
    assert AuditEvent.objects.get(action="audio.read").details["start"] == start


def test_it_answers_416_to_a_range_past_the_end(client_a, session_a, audio_a):
    response = client_a.get(f"/api/v1/sessions/{session_a.id}/audio/", HTTP_RANGE=f"bytes={len(audio_a)}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(audio_a)}"
    assert error_code(response) == "range_not_satisfiable"
    assert not AuditEvent.objects.filter(action="audio.read").exists()


def test_it_answers_audio_not_available_without_a_recording(client_a, session_a, tmp_media):
    response = client_a.get(f"/api/v1/sessions/{session_a.id}/audio/")
    assert response.status_code == 404 and error_code(response) == "audio_not_available"


@pytest.mark.parametrize("fmt", ["json", "txt", "vtt", "srt"])
def test_it_names_every_transcript_download_after_the_session(client_a, session_a, segments_a, fmt):
    suffix = "" if fmt == "json" else f"?format={fmt}"
    response = client_a.get(f"/api/v1/sessions/{session_a.id}/transcript/{suffix}")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'inline; filename="{session_a.id}.{fmt}"'
