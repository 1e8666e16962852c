"""No API answer may be stored by a browser or proxy: they are one clinic's
data, and several carry stream tokens."""

import pytest

from tests.web.conftest import signed_in


def _no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


def test_it_marks_every_session_answer_no_store(client_a, session_a, segments_a):
    created = client_a.post("/api/v1/sessions/", {}, format="json")
    assert created.status_code == 201 and _no_store(created)
    for response in [
        client_a.get("/api/v1/sessions/"),
        client_a.get(f"/api/v1/sessions/{session_a.pk}/"),
        client_a.post(f"/api/v1/sessions/{session_a.pk}/stream-token/"),
        client_a.get(f"/api/v1/sessions/{session_a.pk}/transcript/"),
        client_a.get(f"/api/v1/sessions/{session_a.pk}/transcript/?format=vtt"),
        client_a.get("/api/v1/clinic/"),
    ]:
        assert _no_store(response), (response.request["PATH_INFO"], response.status_code)


@pytest.mark.parametrize("page", ["", "live/"])
def test_it_marks_the_console_session_pages_no_store(session_a, clinician_a, page):
    response = signed_in(clinician_a).get(f"/sessions/{session_a.pk}/{page}")
    assert response.status_code == 200
    assert _no_store(response)
