"""Small things a clinic notices: the error pages keep the console's
navigation, the favicon exists, the provisional-lines hint and the empty
note appear only where they mean something."""

import re

from sessions.models import ConsultationSession
from tests.web.conftest import signed_in


def test_it_keeps_the_navigation_on_the_403_page(clinician_a):
    response = signed_in(clinician_a).get("/dashboard/")
    assert response.status_code == 403
    page = response.content.decode()
    assert 'href="/sessions/"' in page and 'href="/"' in page
    assert "Clinic A" in page  # the header's clinic name


def test_it_keeps_the_navigation_on_the_404_page_for_another_clinics_session(clinician_a, clinic_b):
    other = ConsultationSession.objects.create(clinic=clinic_b, language="en-US", engine="fake")
    response = signed_in(clinician_a).get(f"/sessions/{other.pk}/")
    assert response.status_code == 404
    assert 'href="/sessions/"' in response.content.decode()


def test_it_answers_the_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("console/favicon.svg")


def test_it_shows_the_provisional_hint_only_where_lines_can_be_provisional(clinician_a, session_a):
    client = signed_in(clinician_a)
    assert 'id="provisional-hint"' in client.get("/").content.decode()
    assert 'id="provisional-hint"' not in client.get(f"/sessions/{session_a.pk}/").content.decode()
    assert 'id="provisional-hint"' not in client.get(f"/sessions/{session_a.pk}/live/").content.decode()


def test_it_puts_the_empty_transcript_note_inside_its_box_and_says_why_it_is_empty(clinician_a, clinic_a):
    ended = ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake", status="ended")
    page = signed_in(clinician_a).get(f"/sessions/{ended.pk}/").content.decode()
    box = re.search(r'<div class="transcript-box".*?</div>', page, re.S)
    assert box and 'id="transcript-empty"' in box.group(0)
    assert "nothing was recognised" in box.group(0)


def test_it_shows_a_live_consultations_stored_audio_and_offers_resume_and_end(clinician_a, clinic_a, tmp_media):
    from sessions.audio_store import part_write

    live = ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake", status="live")
    part_write(live, start=0, data=b"\0" * 32_000 * 8)  # 8 s stored, not sealed yet
    page = signed_in(clinician_a).get(f"/sessions/{live.pk}/").content.decode()
    assert "00:08" in page and "No audio stored yet" not in page
    assert f'href="/?resume={live.pk}"' in page
    assert 'id="end-consultation"' in page


def test_it_resumes_only_an_open_consultation_of_the_clinic(clinician_a, clinic_a, clinic_b, session_a):
    client = signed_in(clinician_a)
    live = ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake", status="live")
    assert f'data-resume-id="{live.pk}"' in client.get(f"/?resume={live.pk}").content.decode()
    ended = client.get(f"/?resume={session_a.pk}")
    assert ended.status_code == 302 and ended["Location"] == f"/sessions/{session_a.pk}/"
    other = ConsultationSession.objects.create(clinic=clinic_b, language="en-US", engine="fake", status="live")
    assert client.get(f"/?resume={other.pk}").status_code == 404
    assert client.get("/?resume=not-a-uuid").status_code == 404
