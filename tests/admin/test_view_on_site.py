"""The admin's view-on-site shortcut used to tell one clinic's admin which
session ids exist in another clinic (found in review): foreign, missing and
malformed ids must answer alike."""

import re
import uuid

import pytest
from django.contrib.contenttypes.models import ContentType

from sessions.models import ConsultationSession


@pytest.mark.django_db
def test_it_answers_the_admin_view_on_site_shortcut_alike_for_foreign_missing_and_malformed_ids(
    client, clinic_a, clinic_b, user_b
):
    foreign = ConsultationSession.objects.create(clinic=clinic_a, language="en-US", engine="fake")
    user_b.is_staff = True
    user_b.save(update_fields=["is_staff"])
    client.force_login(user_b)
    content_type = ContentType.objects.get_for_model(ConsultationSession)
    answers = set()
    for object_id in (foreign.pk, uuid.uuid4(), "1", "not-a-uuid"):
        response = client.get(f"/admin/r/{content_type.pk}/{object_id}/")
        assert response.status_code == 404
        # The page differs only by the path it echoes and the per-request CSRF mask.
        page = response.content.decode().replace(f"/{object_id}/", "/ID/")
        answers.add(re.sub(r'(csrf-token" content|csrfmiddlewaretoken" value)="[^"]+"', "", page))
    assert len(answers) == 1
