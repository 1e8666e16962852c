"""Writes on tenants: clinics, quotas, API keys and memberships.

Every function is keyword-only, runs in one transaction and writes an audit
row. ``actor`` is a ``clinics.access.Principal`` (someone acting for a
clinic), a ``PlatformActor`` (platform staff acting on tenants) or None
(a management command / system job).
"""

import hashlib
import hmac
import secrets
import zoneinfo
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from clinics.audit import AuditAction, audit_record
from clinics.models import ApiKey, Clinic, ClinicQuota, Language, McpKeyRoles, Membership, Role
from voiceai.errors import Conflict, InvalidInput, NotFound
from voiceai.logging import get_logger

log = get_logger(__name__)

API_KEY_PREFIX_LENGTH = 8
_API_KEY_SCHEME = "vai"
# last_used_at is informational; writing it on every call would turn every
# read into a write.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
# Hashing a dummy when the prefix is unknown keeps the unknown-prefix path as
# slow as the wrong-secret path.
_DUMMY_HASH = hashlib.sha256(b"voiceai-no-such-key").hexdigest()

CLINIC_UPDATABLE_FIELDS = frozenset(
    {
        "name",
        "default_language",
        "time_zone",
        "retention_days",
        "kms_key_id",
        "transcription_engine",
        "priority",
        "custom_vocabulary_name",
        "producer_grace_minutes",
        "consent_required",
        "mcp_enabled",
        "mcp_key_roles",
        "low_confidence_threshold",
        "notes_bedrock_enabled",
    }
)
QUOTA_FIELDS = frozenset({"max_concurrent_sessions", "max_session_seconds", "audio_minutes_per_month", "storage_bytes"})
_ENGINES = {"", "local", "fake", "aws"}


@dataclass(frozen=True)
class PlatformActor:
    """Platform staff acting on tenants (not for any one clinic). Carries
    what ``audit_record`` reads from an actor."""

    user: AbstractBaseUser
    client_ip: str | None = None
    request_id: str = ""
    api_key: None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return f"staff:{self.user.pk}"


@dataclass(frozen=True)
class AnonymousActor:
    """Someone not signed in (a failed sign-in): only where they came from."""

    client_ip: str | None = None
    request_id: str = ""
    user: None = None
    api_key: None = None
    label: str = "anonymous"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


# --- clinics -----------------------------------------------------------------


def _validate_clinic_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - CLINIC_UPDATABLE_FIELDS
    if unknown:
        raise InvalidInput(
            "Unknown clinic fields.", code="unknown_field", details={f: "Unknown field." for f in unknown}
        )
    errors: dict[str, str] = {}
    if "name" in fields and not (isinstance(fields["name"], str) and 0 < len(fields["name"].strip()) <= 200):
        errors["name"] = "Must be 1-200 characters."
    if "default_language" in fields and fields["default_language"] not in Language.values:
        errors["default_language"] = f"Must be one of {', '.join(Language.values)}."
    if "time_zone" in fields and not (
        isinstance(fields["time_zone"], str) and fields["time_zone"] in zoneinfo.available_timezones()
    ):
        errors["time_zone"] = "Must be an IANA time zone name, e.g. Asia/Tokyo."
    if "transcription_engine" in fields and fields["transcription_engine"] not in _ENGINES:
        errors["transcription_engine"] = "Must be local, fake, aws or empty."
    if "consent_required" in fields and not isinstance(fields["consent_required"], bool):
        errors["consent_required"] = "Must be true or false."
    if "mcp_enabled" in fields and not isinstance(fields["mcp_enabled"], bool):
        errors["mcp_enabled"] = "Must be true or false."
    if "notes_bedrock_enabled" in fields and not isinstance(fields["notes_bedrock_enabled"], bool):
        errors["notes_bedrock_enabled"] = "Must be true or false."
    if "mcp_key_roles" in fields and fields["mcp_key_roles"] not in McpKeyRoles.values:
        errors["mcp_key_roles"] = f"Must be one of {', '.join(McpKeyRoles.values)}."
    if "low_confidence_threshold" in fields:
        value = fields["low_confidence_threshold"]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            errors["low_confidence_threshold"] = "Must be a number from 0 to 1 (0 flags no final)."
    for int_field in ("retention_days", "priority"):
        if int_field in fields:
            value = fields[int_field]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 32767 * 1000:
                errors[int_field] = "Must be a non-negative integer."
    if "producer_grace_minutes" in fields:
        value = fields["producer_grace_minutes"]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 720:
            errors["producer_grace_minutes"] = "Must be an integer from 1 to 720 (minutes)."
    for str_field, limit in (("kms_key_id", 256), ("custom_vocabulary_name", 200)):
        if str_field in fields and not (isinstance(fields[str_field], str) and len(fields[str_field]) <= limit):
            errors[str_field] = f"Must be a string of at most {limit} characters."
    if errors:
        raise InvalidInput("The clinic has invalid fields.", details=errors)


@transaction.atomic
def clinic_create(*, name: str, slug: str, default_language: str = Language.JA_JP, actor: Any = None) -> Clinic:
    """A new tenant with its quota row (default limits)."""
    _validate_clinic_fields({"name": name, "default_language": default_language})
    if not slug or slugify(slug) != slug or len(slug) > 64:
        raise InvalidInput("The slug must be lowercase letters, digits and hyphens.", details={"slug": "Invalid."})
    if Clinic.objects.filter(slug=slug).exists():
        raise Conflict("A clinic with this slug exists.", code="slug_taken")
    try:
        with transaction.atomic():
            clinic = Clinic.objects.create(name=name.strip(), slug=slug, default_language=default_language)
    except IntegrityError:  # a concurrent create won the race
        raise Conflict("A clinic with this slug exists.", code="slug_taken") from None
    ClinicQuota.objects.create(clinic=clinic)
    audit_record(
        clinic=clinic, action=AuditAction.CLINIC_CREATE, object_type="clinic", object_id=clinic.pk, actor=actor
    )
    log.info("clinic_created", clinic_id=str(clinic.pk))
    return clinic


@transaction.atomic
def clinic_update(*, clinic: Clinic, actor: Any = None, **fields: Any) -> Clinic:
    """Change descriptive settings. Who may change which field is the
    caller's decision (clinic admins: name and default language only)."""
    _validate_clinic_fields(fields)
    clinic = Clinic.objects.select_for_update().get(pk=clinic.pk)
    changed = sorted(k for k, v in fields.items() if getattr(clinic, k) != v)
    for key in changed:
        value = fields[key]
        setattr(clinic, key, value.strip() if key == "name" else value)
    if changed:
        clinic.save(update_fields=changed)
        audit_record(
            clinic=clinic,
            action=AuditAction.CLINIC_UPDATE,
            object_type="clinic",
            object_id=clinic.pk,
            actor=actor,
            details={"fields": changed},
        )
    return clinic


def clinic_suspend(*, clinic: Clinic, actor: Any = None) -> Clinic:
    """Every key and user of the clinic gets 403 from now on (the access
    layer checks ``is_active`` on each request and socket connect)."""
    return _clinic_set_active(clinic=clinic, active=False, actor=actor)


def clinic_reactivate(*, clinic: Clinic, actor: Any = None) -> Clinic:
    return _clinic_set_active(clinic=clinic, active=True, actor=actor)


@transaction.atomic
def _clinic_set_active(*, clinic: Clinic, active: bool, actor: Any) -> Clinic:
    clinic = Clinic.objects.select_for_update().get(pk=clinic.pk)
    if clinic.is_active != active:  # idempotent: no audit row for a no-op
        clinic.is_active = active
        clinic.save(update_fields=["is_active"])
        action = AuditAction.CLINIC_REACTIVATE if active else AuditAction.CLINIC_SUSPEND
        audit_record(clinic=clinic, action=action, object_type="clinic", object_id=clinic.pk, actor=actor)
        log.info("clinic_reactivated" if active else "clinic_suspended", clinic_id=str(clinic.pk))
    return clinic


@transaction.atomic
def quota_update(*, clinic: Clinic, actor: Any = None, **limits: Any) -> ClinicQuota:
    unknown = set(limits) - QUOTA_FIELDS
    if unknown:
        raise InvalidInput(
            "Unknown quota fields.", code="unknown_field", details={f: "Unknown field." for f in unknown}
        )
    errors = {
        k: "Must be a non-negative integer."
        for k, v in limits.items()
        if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 2**62
    }
    if errors:
        raise InvalidInput("The quota has invalid fields.", details=errors)
    quota, _ = ClinicQuota.objects.select_for_update().get_or_create(clinic=clinic)
    changed = sorted(k for k, v in limits.items() if getattr(quota, k) != v)
    if changed:
        before = {k: getattr(quota, k) for k in changed}
        for key in changed:
            setattr(quota, key, limits[key])
        quota.save(update_fields=[*changed, "updated_at"])
        audit_record(
            clinic=clinic,
            action=AuditAction.QUOTA_UPDATE,
            object_type="clinic_quota",
            object_id=clinic.pk,
            actor=actor,
            details={"before": before, "after": {k: limits[k] for k in changed}},
        )
    return quota


# --- API keys ----------------------------------------------------------------


def _hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _new_prefix() -> str:
    # Lowercase hex: no underscore, so "vai_<prefix>_<secret>" splits cleanly.
    return secrets.token_hex(API_KEY_PREFIX_LENGTH // 2)


@transaction.atomic
def api_key_create(
    *, clinic: Clinic, role: str, name: str, created_by: AbstractBaseUser | None = None, actor: Any = None
) -> tuple[ApiKey, str]:
    """Returns the key row and the raw key. The raw key exists only in the
    return value: callers show it once and never log it."""
    if role not in Role.values:
        raise InvalidInput("Unknown role.", details={"role": f"Must be one of {', '.join(Role.values)}."})
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 100:
        raise InvalidInput("The key needs a name.", details={"name": "Must be 1-100 characters."})
    for _ in range(5):
        prefix = _new_prefix()
        raw = f"{_API_KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    clinic=clinic,
                    name=name.strip(),
                    role=role,
                    prefix=prefix,
                    hashed_key=_hash_key(raw),
                    created_by=created_by,
                )
            break
        except IntegrityError:  # prefix collision (1 in 4 billion): draw again
            continue
    else:  # pragma: no cover - five collisions in a row
        raise Conflict("Could not allocate a key prefix; try again.")
    audit_record(
        clinic=clinic,
        action=AuditAction.API_KEY_CREATE,
        object_type="api_key",
        object_id=key.pk,
        actor=actor,
        details={"prefix": prefix, "role": role},
    )
    log.info("api_key_created", clinic_id=str(clinic.pk), api_key_id=key.pk)
    return key, raw


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: Any = None) -> ApiKey:
    key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            clinic=key.clinic,
            action=AuditAction.API_KEY_REVOKE,
            object_type="api_key",
            object_id=key.pk,
            actor=actor,
            details={"prefix": key.prefix},
        )
    return key


def _split_raw_key(raw: str) -> tuple[str, str] | None:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != _API_KEY_SCHEME or len(parts[1]) != API_KEY_PREFIX_LENGTH or not parts[2]:
        return None
    return parts[1], parts[2]


def api_key_authenticate(raw: str) -> ApiKey | None:
    """The active key for ``raw`` (with its clinic loaded) or None.

    A suspended clinic's key is still returned: the access layer answers it
    with 403 ``clinic_suspended`` rather than a confusing 401.
    """
    if not isinstance(raw, str) or len(raw) > 200:
        return None
    split = _split_raw_key(raw)
    key = None
    if split is not None:
        key = ApiKey.objects.select_related("clinic").filter(prefix=split[0], revoked_at__isnull=True).first()
    expected = key.hashed_key if key is not None else _DUMMY_HASH
    if not hmac.compare_digest(_hash_key(raw), expected) or key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= _LAST_USED_RESOLUTION:
        # A conditional UPDATE, not save(): concurrent requests don't race on
        # the row and don't overwrite a revocation.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


# --- sign-in -------------------------------------------------------------------


def login_failure_audit(*, username: str, client_ip: str | None, request_id: str = "", path: str = "") -> int:
    """A wrong password for ``username``: one ``auth.login_failed`` row in
    each clinic the user belongs to, so its admins see attacks on their
    people. Unknown usernames have no clinic; django-axes keeps those (and
    these) in its own failure log for platform staff. Returns the rows written."""
    user_model = get_user_model()
    user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
    if user is None:
        return 0
    actor = AnonymousActor(client_ip=client_ip, request_id=request_id)
    clinic_ids = Membership.objects.filter(user=user).values_list("clinic_id", flat=True)
    written = 0
    for clinic in Clinic.objects.filter(pk__in=clinic_ids):
        audit_record(
            clinic=clinic,
            action=AuditAction.LOGIN_FAILED,
            object_type="user",
            object_id=user.pk,
            actor=actor,
            details={"path": path[:200]},
        )
        written += 1
    return written


# --- memberships ---------------------------------------------------------------


def _admin_count(clinic: Clinic) -> int:
    return Membership.objects.filter(clinic=clinic, role=Role.ADMIN).count()


def _may_enrol_anyone(actor: Any) -> bool:
    """Platform staff (a superuser, in the admin or over the API) and system
    jobs (no actor: commands, seeding) may add any user to any clinic."""
    if actor is None or isinstance(actor, PlatformActor):
        return True
    user = getattr(actor, "user", None)
    return bool(user is not None and user.is_active and user.is_superuser)


@transaction.atomic
def membership_add(*, clinic: Clinic, user: AbstractBaseUser, role: str, actor: Any = None) -> Membership:
    """Add ``user`` to ``clinic``.

    A clinic admin may enrol an existing user only if that user belongs to
    no other clinic: otherwise any clinic could pull another clinic's people
    in (and see their email), and a look-alike clinic name would then sit in
    their clinic picker. Such a user answers exactly like a missing one
    (404 ``user_not_found``), so usernames of other clinics can't be probed.
    """
    if role not in Role.values:
        raise InvalidInput("Unknown role.", details={"role": f"Must be one of {', '.join(Role.values)}."})
    if Membership.objects.filter(clinic=clinic, user=user).exists():
        raise Conflict("The user is already a member.", code="already_member")
    # Lock the user row: two clinics enrolling the same free user at once
    # must not both pass the check below.
    type(user)._default_manager.select_for_update().filter(pk=user.pk).first()
    if not _may_enrol_anyone(actor) and (
        user.is_superuser or Membership.objects.filter(user=user).exclude(clinic=clinic).exists()
    ):
        # Platform staff belong to no clinic, but no clinic may pull them in.
        raise NotFound("No such user.", code="user_not_found")
    try:
        with transaction.atomic():
            membership = Membership.objects.create(clinic=clinic, user=user, role=role)
    except IntegrityError:
        raise Conflict("The user is already a member.", code="already_member") from None
    audit_record(
        clinic=clinic,
        action=AuditAction.MEMBER_ADD,
        object_type="membership",
        object_id=membership.pk,
        actor=actor,
        details={"user_id": user.pk, "role": role},
    )
    return membership


def membership_enrol(*, clinic: Clinic, username: str, email: str = "", role: str, actor: Any = None) -> Membership:
    """Add an existing platform user to ``clinic`` by name (the REST API).

    A clinic admin must also give the user's email address: with the
    username alone, 201 against 404 told them which usernames of no clinic
    exist. Any mismatch answers exactly like a missing user. Platform staff
    and system jobs need the username only."""
    user_model = get_user_model()
    candidates = user_model._default_manager.filter(username=username, is_active=True)
    if not _may_enrol_anyone(actor):
        email = email.strip()
        candidates = candidates.filter(email__iexact=email) if email else candidates.none()
    user = candidates.first()
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    return membership_add(clinic=clinic, user=user, role=role, actor=actor)


@transaction.atomic
def membership_update(*, membership: Membership, role: str, actor: Any = None) -> Membership:
    if role not in Role.values:
        raise InvalidInput("Unknown role.", details={"role": f"Must be one of {', '.join(Role.values)}."})
    membership = Membership.objects.select_for_update().select_related("clinic").get(pk=membership.pk)
    if membership.role == role:
        return membership
    if membership.role == Role.ADMIN and _admin_count(membership.clinic) <= 1:
        raise Conflict("A clinic must keep at least one admin.", code="last_admin")
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        clinic=membership.clinic,
        action=AuditAction.MEMBER_UPDATE,
        object_type="membership",
        object_id=membership.pk,
        actor=actor,
        details={"user_id": membership.user_id, "before": before, "after": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Any = None) -> None:
    membership = Membership.objects.select_for_update().select_related("clinic").get(pk=membership.pk)
    if membership.role == Role.ADMIN and _admin_count(membership.clinic) <= 1:
        raise Conflict("A clinic must keep at least one admin.", code="last_admin")
    pk, user_id = membership.pk, membership.user_id
    membership.delete()
    audit_record(
        clinic=membership.clinic,
        action=AuditAction.MEMBER_REMOVE,
        object_type="membership",
        object_id=pk,
        actor=actor,
        details={"user_id": user_id},
    )
