"""Regressions found in the review: inputs that produced a 500 or a 1011
instead of the documented error, and an admin path that told one clinic's
admin which ids exist in another clinic."""

import json
import re
import uuid

import pytest
from django.contrib.contenttypes.models import ContentType

from sessions.models import ConsultationSession
from tests.transcription.helpers import adb, atoken_for, communicator, expect_close, make_session, receive_until

# Control messages the JSON parser or the type check used to crash on:
# an unhashable "type" (TypeError) and nesting deeper than the recursion
# limit, all inside the 4096-character limit.
CRASHING_CONTROL_MESSAGES = [
    json.dumps({"type": []}),
    json.dumps({"type": {"KeepAlive": 1}}),
    "[" * 2000 + "]" * 2000,
    '{"type": ' + "[" * 1500 + "]" * 1500 + "}",
]


@pytest.fixture
def _media(tmp_media, settings):
    settings.AUDIO_FLUSH_SECONDS = 0.2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("text", CRASHING_CONTROL_MESSAGES, ids=["list-type", "dict-type", "deep-list", "deep-type"])
@pytest.mark.parametrize("kind", ["stream", "live"])
async def test_it_closes_malformed_control_messages_with_4400_not_1011(_media, principal_clinician_a, kind, text):
    session = await adb(make_session)(principal_clinician_a)
    comm = communicator(session.pk, kind, token=await atoken_for(principal_clinician_a, session))
    await comm.connect()
    await receive_until(comm, "Begin")
    await comm.send_to(text_data=text)
    code, messages = await expect_close(comm)
    assert code == 4400
    assert messages[-1]["type"] == "Error" and messages[-1]["code"] in {"bad_json", "unknown_type"}
    await comm.disconnect()


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
