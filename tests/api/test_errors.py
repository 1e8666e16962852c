from django.test import Client


def test_it_answers_unknown_api_paths_in_the_error_shape(db):
    response = Client(raise_request_exception=False).get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "details": {}}}


def test_it_answers_server_errors_under_the_api_in_the_error_shape(client_a, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr("sessions.api.views.session_list", boom)
    client_a.raise_request_exception = False
    response = client_a.get("/api/v1/sessions/")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
