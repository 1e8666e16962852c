"""A deeply nested JSON body (small, under the size limit) is a 400 in the
API's error shape on every JSON endpoint, not a 500 (found in review)."""

import pytest

from sessions.models import ConsultationSession

pytestmark = pytest.mark.django_db

NESTED = b'{"a":' * 5000 + b"1" + b"}" * 5000


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/v1/sessions/"), ("patch", "/api/v1/clinic/"), ("post", "/api/v1/clinic/api-keys/")],
)
def test_it_answers_a_deeply_nested_body_with_400_malformed_request(api_key_a_admin, api_client_for, method, path):
    client = api_client_for(api_key_a_admin)
    response = getattr(client, method)(path, NESTED, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert not ConsultationSession.objects.exists()
