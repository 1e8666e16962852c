"""The management commands behind the README's setup: create_clinic,
create_api_key (raw key once, on the last line, stored hashed) and the
idempotent seed_demo."""

import hashlib
import io
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse

from clinics.models import ApiKey, AuditEvent, Clinic, ClinicQuota, Membership, Role
from clinics.services import api_key_authenticate


def _run(*args: str, **options) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue().rstrip("\n").splitlines()


def test_it_creates_a_clinic_with_its_quota(db):
    lines = _run("create_clinic", "--name", "Sakura Clinic", "--slug", "sakura", "--language", "en-US")
    clinic = Clinic.objects.get(slug="sakura")
    assert (clinic.name, clinic.default_language) == ("Sakura Clinic", "en-US")
    assert ClinicQuota.objects.filter(clinic=clinic).exists()
    assert str(clinic.pk) in lines[-1]
    assert AuditEvent.objects.filter(clinic=clinic, action="clinic.create").exists()


def test_it_refuses_a_taken_slug_with_a_clear_error(clinic_a):
    with pytest.raises(CommandError, match="slug"):
        _run("create_clinic", "--name", "Again", "--slug", clinic_a.slug)
    assert Clinic.objects.filter(slug=clinic_a.slug).count() == 1


def test_it_prints_the_raw_key_alone_on_the_last_line_and_stores_its_hash(clinic_a):
    lines = _run("create_api_key", "--clinic", clinic_a.slug, "--role", "clinician", "--name", "ehr")
    raw = lines[-1]
    assert raw.startswith("vai_") and " " not in raw
    assert all(raw not in line for line in lines[:-1])
    key = ApiKey.objects.get(clinic=clinic_a, name="ehr")
    assert key.role == Role.CLINICIAN
    assert key.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in (key.prefix, key.hashed_key, key.name)
    assert api_key_authenticate(raw) == key


def test_it_refuses_an_unknown_clinic_or_role(db):
    with pytest.raises(CommandError, match="No clinic"):
        _run("create_api_key", "--clinic", "nope", "--role", "admin")
    with pytest.raises(CommandError):
        _run("create_api_key", "--clinic", "nope", "--role", "superhero")
    assert not ApiKey.objects.exists()


def _demo_counts() -> tuple[int, ...]:
    return (
        Clinic.objects.filter(slug="demo").count(),
        get_user_model().objects.filter(username__in=["demo-admin", "demo-clinician", "platform"]).count(),
        Membership.objects.filter(clinic__slug="demo").count(),
        ApiKey.objects.filter(clinic__slug="demo").count(),
    )


def test_it_seeds_the_demo_idempotently(db, tmp_path):
    key_file = tmp_path / "demo-api-key.txt"
    first = _run("seed_demo", "--force", "--key-file", str(key_file))
    assert _demo_counts() == (1, 3, 2, 1)
    second = _run("seed_demo", "--force", "--key-file", str(key_file))
    assert _demo_counts() == (1, 3, 2, 1)

    raw = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert api_key_authenticate(raw) is not None
    for output in (first, second):
        text = "\n".join(output)
        assert raw in text
        assert "/admin/" in text and "/api/v1/docs/" in text
        assert "demo-admin / demo-admin-pass" in text and "local use only" in text

    clinic = Clinic.objects.get(slug="demo")
    assert (clinic.name, clinic.default_language, clinic.transcription_engine) == ("Demo Clinic", "en-US", "")
    roles = dict(Membership.objects.filter(clinic=clinic).values_list("user__username", "role"))
    assert roles == {"demo-admin": Role.ADMIN, "demo-clinician": Role.CLINICIAN}
    assert get_user_model().objects.get(username="platform").is_superuser


def test_it_does_not_mint_a_second_demo_key_when_the_key_file_is_gone(db, tmp_path):
    key_file = tmp_path / "key.txt"
    _run("seed_demo", "--force", "--key-file", str(key_file))
    raw = key_file.read_text().strip()
    key_file.unlink()
    text = "\n".join(_run("seed_demo", "--force", "--key-file", str(key_file)))
    assert raw not in text and "not stored" in text
    assert ApiKey.objects.filter(clinic__slug="demo").count() == 1


def test_it_refuses_to_seed_published_passwords_without_debug(db, settings, tmp_path):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        _run("seed_demo", "--key-file", str(tmp_path / "k"))
    assert _demo_counts() == (0, 0, 0, 0)


def test_it_lets_the_demo_admin_into_the_admin_for_the_demo_clinic_only(client, clinic_b, tmp_path):
    _run("seed_demo", "--force", "--key-file", str(tmp_path / "k"))
    # Through the login page: django-axes refuses an authenticate() without a request.
    signed_in = client.post(reverse("admin:login"), {"username": "demo-admin", "password": "demo-admin-pass"})
    assert signed_in.status_code == 302
    response = client.get(reverse("admin:clinics_clinic_changelist"))
    assert [c.slug for c in response.context["cl"].result_list] == ["demo"]


def test_it_creates_a_clinicians_login_that_signs_in_to_the_console(clinic_a, client, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase 42\n"))
    lines = _run("add_member", "--clinic", clinic_a.slug, "--username", "dr-sato", "--role", "clinician")
    assert "dr-sato" in lines[-1] and "a long passphrase" not in "\n".join(lines)
    user = get_user_model().objects.get(username="dr-sato")
    assert Membership.objects.get(user=user).clinic == clinic_a
    assert not user.is_staff
    assert AuditEvent.objects.filter(clinic=clinic_a, action="member.add").exists()
    signed_in = client.post("/accounts/login/", {"username": "dr-sato", "password": "a long passphrase 42"})
    assert signed_in.status_code == 302
    assert client.get("/").status_code == 200


def test_it_enrols_an_existing_user_as_clinic_admin_with_admin_access(clinic_a, clinic_b, user_b):
    lines = _run("add_member", "--clinic", clinic_a.slug, "--username", user_b.username, "--role", "admin")
    assert "Enrolled existing user" in lines[-1]
    user_b.refresh_from_db()
    assert user_b.is_staff
    assert Membership.objects.get(user=user_b, clinic=clinic_a).role == Role.ADMIN


def test_it_refuses_a_weak_password_or_an_unknown_clinic_and_creates_nothing(clinic_a, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("password\n"))
    with pytest.raises(CommandError, match="Password refused"):
        _run("add_member", "--clinic", clinic_a.slug, "--username", "dr-weak", "--role", "clinician")
    with pytest.raises(CommandError, match="No clinic"):
        _run("add_member", "--clinic", "nope", "--username", "dr-x", "--role", "clinician")
    assert not get_user_model().objects.filter(username__in=["dr-weak", "dr-x"]).exists()


def test_it_says_in_the_banner_that_the_offline_engine_is_english_only(db, settings, tmp_path):
    settings.TRANSCRIPTION_ENGINE = "local"
    text = "\n".join(_run("seed_demo", "--force", "--key-file", str(tmp_path / "k")))
    assert "ENGLISH ONLY" in text and "Japanese needs the aws engine" in text
