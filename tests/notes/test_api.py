"""The notes REST API end to end on the extractive engine: generate, read
(JSON, text, FHIR), edit with preconditions, sign; every path 404 for
another clinic."""


def _url(session, tail: str = "") -> str:
    return f"/api/v1/sessions/{session.pk}/note/{tail}"


def test_it_generates_a_draft_in_the_background_and_serves_it_with_evidence(client_a, en_session, run_jobs):
    response = client_a.post(_url(en_session, "generate/"), {}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and response.json()["version"] == 1
    assert run_jobs() == 1
    body = client_a.get(_url(en_session)).json()
    assert body["status"] == "draft" and body["progress"] == 100 and body["engine"] == "extractive"
    assert [s["key"] for s in body["sections"]] == ["subjective", "objective", "assessment", "plan"]
    plan = body["sections"][3]["sentences"]
    assert plan[0]["text"] == "Let's do an ECG today and follow up in two weeks."
    assert plan[0]["evidence"] == [{"segment_id": "seg-6", "start_ms": 24000, "end_ms": 27500}]
    assert (plan[0]["start_ms"], plan[0]["end_ms"]) == (24000, 27500)
    assert "no text was written by a model" in body["notice"]
