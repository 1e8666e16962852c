"""Issue 11: the admin audited REMOTE_ADDR, which uvicorn trusting every
proxy had set to X-Forwarded-For's first (client-chosen) entry, and a non-IP
there gave a 500 on a session page. The admin records the last trusted hop."""

import pytest
from django.urls import reverse

from clinics.models import AuditEvent

PROXY = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.mark.parametrize("forwarded", ["6.6.6.6, 10.0.0.7", "not-an-ip, 10.0.0.7"])
def test_it_audits_the_last_hop_for_a_transcript_read(client_admin_a, rows_a, settings, forwarded):
    settings.SECURE_PROXY_SSL_HEADER = PROXY
    page = client_admin_a.get(
        reverse("admin:consultations_consultationsession_change", args=[rows_a.session.pk]),
        REMOTE_ADDR=forwarded.split(",")[0].strip(),  # what uvicorn with "*" passed on
        HTTP_X_FORWARDED_FOR=forwarded,
        HTTP_X_FORWARDED_PROTO="https",
    )
    assert page.status_code == 200
    event = AuditEvent.objects.get(action="transcript.read", object_id=str(rows_a.session.pk))
    assert event.client_ip == "10.0.0.7"
