"""Member add in Django admin: a clinic admin only creates new logins and
can't pull in another clinic's user; platform staff may enrol anyone."""

from django.urls import reverse

from clinics.models import Membership, Role


def test_it_never_enrols_another_clinics_user_for_a_clinic_admin(client_admin_a, rows_a, rows_b):
    theirs = rows_b.membership.user
    response = client_admin_a.post(
        reverse("admin:clinics_membership_add"),
        {
            "clinic": str(rows_a.clinic.pk),
            "user": str(theirs.pk),  # not a field of the clinic admin's form: ignored
            "username": theirs.get_username(),
            "password": "long-enough-pass-42",
            "role": Role.ADMIN,
        },
    )
    assert response.status_code == 200  # the form again, with an error
    assert not Membership.objects.filter(clinic=rows_a.clinic, user=theirs).exists()


def test_it_lets_platform_staff_enrol_another_clinics_user_in_admin(client_platform, rows_a, rows_b):
    theirs = rows_b.membership.user
    response = client_platform.post(
        reverse("admin:clinics_membership_add"),
        {"clinic": str(rows_a.clinic.pk), "user": str(theirs.pk), "role": Role.CLINICIAN},
    )
    assert response.status_code == 302
    assert Membership.objects.filter(clinic=rows_a.clinic, user=theirs, role=Role.CLINICIAN).exists()
