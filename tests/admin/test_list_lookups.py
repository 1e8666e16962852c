"""Admin list pages take only their declared filters from the query string:
no free-form lookups on transcript text (an unaudited oracle), and no input
that turns into a 500."""

import pytest
from django.urls import reverse

from clinics.models import AuditEvent

SEGMENTS = "admin:consultations_transcriptsegment_changelist"
SESSIONS = "admin:consultations_consultationsession_changelist"
AUDIT = "admin:clinics_auditevent_changelist"


@pytest.mark.parametrize(
    ("page", "query"),
    [
        (SEGMENTS, {"text__icontains": "hello"}),
        (SEGMENTS, {"text__iregex": "^h"}),
        (SEGMENTS, {"text": "hello from clinic-a"}),
        (SESSIONS, {"segments__text__icontains": "hello"}),
        (SESSIONS, {"external_ref__startswith": "ref"}),
    ],
)
def test_it_refuses_free_form_lookups_on_text(client_admin_a, rows_a, page, query):
    response = client_admin_a.get(reverse(page), query)
    assert response.status_code == 400
    assert not AuditEvent.objects.filter(action="transcript.read").exists()


@pytest.mark.parametrize(
    ("page", "query"),
    [
        (SESSIONS, {"created_at__year": "9999"}),
        (SESSIONS, {"created_at__year": "0"}),
        (SESSIONS, {"created_at__year": "2026", "created_at__month": "13"}),
        (SESSIONS, {"external_ref": "a\x00b"}),
        (SESSIONS, {"q": "a\x00b"}),
        (SEGMENTS, {"text__contains": "\x00"}),
        (AUDIT, {"client_ip": "zzz"}),
        (AUDIT, {"created_at__year": "99999999999999999999"}),
        (SESSIONS, {"status__exact": "\x00"}),
    ],
)
def test_it_answers_bad_list_queries_without_a_500(client_admin_a, rows_a, page, query):
    response = client_admin_a.get(reverse(page), query)
    assert response.status_code in (302, 400)  # 302: Django's "?e=1" for a value its filter can't use


@pytest.mark.parametrize(
    ("page", "query"),
    [
        (SESSIONS, {"status__exact": "created"}),
        (SESSIONS, {"created_at__year": "2026", "created_at__month": "12"}),
        (SEGMENTS, {"is_final__exact": "1"}),
        (AUDIT, {"action__exact": "test.event"}),
        (SESSIONS, {"q": "ref-clinic-a"}),
    ],
)
def test_it_keeps_the_declared_filters(client_admin_a, rows_a, page, query):
    response = client_admin_a.get(reverse(page), query)
    assert response.status_code == 200


def test_it_keeps_the_clinic_filter_for_platform_staff(client_platform, rows_a, rows_b):
    response = client_platform.get(reverse(SESSIONS), {"clinic__id__exact": str(rows_b.clinic.pk)})
    assert response.status_code == 200
    assert [s.pk for s in response.context["cl"].result_list] == [rows_b.session.pk]


@pytest.mark.parametrize("view", ["change", "history", "delete"])
def test_it_answers_a_platform_user_page_alike_for_existing_and_missing_ids(client_admin_a, platform_user, view):
    existing = client_admin_a.get(reverse(f"admin:auth_user_{view}", args=[platform_user.pk]))
    missing = client_admin_a.get(reverse(f"admin:auth_user_{view}", args=[987654321]))
    assert (existing.status_code, existing.get("Location")) == (missing.status_code, missing.get("Location"))
