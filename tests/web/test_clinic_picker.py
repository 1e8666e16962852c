"""The clinic picker and header name each clinic with its slug: a clinic
admin can rename their clinic to look like another, but not change the slug."""

from clinics.services import clinic_update
from tests.web.conftest import signed_in


def test_it_tells_look_alike_clinics_apart_by_slug(two_clinic_user, clinic_a, clinic_c):
    clinic_update(clinic=clinic_c, name=clinic_a.name)  # the look-alike
    client = signed_in(two_clinic_user)
    page = client.get("/clinic/").content.decode()
    assert f"{clinic_a.name} ({clinic_a.slug})" in page
    assert f"{clinic_a.name} ({clinic_c.slug})" in page
    client.post("/clinic/", {"clinic": str(clinic_c.pk), "next": "/sessions/"})
    header = client.get("/sessions/").content.decode()
    assert f'<span class="clinic-slug">({clinic_c.slug})</span>' in header
