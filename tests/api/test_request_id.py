"""The caller's X-Request-Id is kept only when it is entirely safe."""

from django.test import Client


def test_it_replaces_a_request_id_with_a_trailing_newline(db):
    client = Client()
    kept = client.get("/healthz", HTTP_X_REQUEST_ID="req-42")
    assert kept["X-Request-Id"] == "req-42"
    response = client.get("/healthz", HTTP_X_REQUEST_ID="req-42\n")
    assert response["X-Request-Id"] != "req-42\n"
    assert len(response["X-Request-Id"]) == 32 and response["X-Request-Id"].isalnum()
