"""The access layer: the only way to reach clinic-owned rows.

Every function takes the acting ``Principal`` and either returns objects of
the principal's own clinic or raises ``NotFound``. A missing object and
another clinic's object are indistinguishable to the caller (404), so ids
from other tenants can't be probed. Role checks live here too so views,
admin and consumers never decide tenancy themselves.
"""

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from clinics.models import ApiKey, AuditEvent, Clinic, ClinicQuota, McpKeyRoles, Membership, Role
from sessions.models import ConsultationSession, SegmentRevision, TranscriptSegment
from voiceai.errors import ClinicSuspended, Forbidden, NotFound


@dataclass(frozen=True)
class Principal:
    """Who acts, for which clinic, with which role — plus where the request
    came from so audit rows can say so."""

    clinic: Clinic
    role: str
    user: AbstractBaseUser | None = None
    api_key: ApiKey | None = None
    client_ip: str | None = None
    request_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"api-key:{self.api_key.prefix}"
        if self.user is not None:
            return f"user:{self.user.pk}"
        return "system"


def _parse_uuid(value: object) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise NotFound() from None


def _parse_int(value: object) -> int:
    try:
        return int(str(value))
    except (ValueError, TypeError):
        raise NotFound() from None


def ensure_clinic_active(clinic: Clinic) -> None:
    if not clinic.is_active:
        raise ClinicSuspended()


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Only clinic admins may do this.", code="admin_required")


def require_mcp_access(principal: Principal) -> None:
    """AI assistants (the MCP server, ``agents/``) act with an API key of a
    clinic that switched MCP on, and only with the key roles it allows."""
    clinic = principal.clinic
    if not clinic.mcp_enabled:
        raise Forbidden(
            "MCP access is switched off for this clinic. A clinic admin can turn it on "
            "(mcp_enabled in PATCH /api/v1/clinic/).",
            code="mcp_disabled",
        )
    if principal.api_key is None:
        raise Forbidden("MCP access needs a clinic API key.", code="api_key_required")
    allowed = principal.role == Role.ADMIN or (
        principal.role == Role.CLINICIAN and clinic.mcp_key_roles == McpKeyRoles.ADMIN_CLINICIAN
    )
    if not allowed:
        raise Forbidden(
            f"This clinic lets only {clinic.get_mcp_key_roles_display().lower()} use MCP; this key's role is "
            f"{principal.role}.",
            code="mcp_role_not_allowed",
        )


# --- principals ------------------------------------------------------------


def memberships_of(user: AbstractBaseUser) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("clinic").order_by("clinic__name")


def principal_for_user(
    user: AbstractBaseUser,
    *,
    clinic_id: object | None = None,
    client_ip: str | None = None,
    request_id: str = "",
) -> Principal:
    """The user's principal in ``clinic_id`` (or their only/first clinic).

    A clinic the user doesn't belong to answers NotFound, like a missing one.
    """
    memberships = memberships_of(user)
    if clinic_id not in (None, ""):
        membership = memberships.filter(clinic_id=_parse_uuid(clinic_id)).first()
    else:
        membership = memberships.first()
    if membership is None:
        raise NotFound("No clinic membership.", code="no_membership")
    ensure_clinic_active(membership.clinic)
    return Principal(
        clinic=membership.clinic,
        role=membership.role,
        user=user,
        client_ip=client_ip,
        request_id=request_id,
    )


def principal_for_api_key(api_key: ApiKey, *, client_ip: str | None = None, request_id: str = "") -> Principal:
    ensure_clinic_active(api_key.clinic)
    return Principal(
        clinic=api_key.clinic, role=api_key.role, api_key=api_key, client_ip=client_ip, request_id=request_id
    )


def system_principal(clinic: Clinic, *, label: str = "system") -> Principal:
    """For background work (purge, batch jobs) acting on one clinic."""
    return Principal(clinic=clinic, role=Role.ADMIN, extra={"system": label})


# --- sessions and transcripts -----------------------------------------------


def sessions_visible_to(principal: Principal) -> QuerySet[ConsultationSession]:
    return ConsultationSession.objects.filter(clinic=principal.clinic)


def access_session(principal: Principal, session_id: object, *, for_update: bool = False) -> ConsultationSession:
    qs = sessions_visible_to(principal)
    if for_update:
        qs = qs.select_for_update()
    # By primary key: no ordering to compile (every socket connect and REST
    # call on a session runs this; ``first()`` would add ORDER BY).
    session = next(iter(qs.filter(pk=_parse_uuid(session_id)).order_by()[:1]), None)
    if session is None:
        raise NotFound("Session not found.")
    return session


def segments_visible_to(principal: Principal, session: ConsultationSession) -> QuerySet[TranscriptSegment]:
    if session.clinic_id != principal.clinic.pk:
        raise NotFound("Session not found.")
    return TranscriptSegment.objects.filter(clinic=principal.clinic, session=session)


def access_final_segment(
    principal: Principal, session: ConsultationSession, segment_id: object, *, for_update: bool = False
) -> TranscriptSegment:
    """One final segment of the session, by its segment id."""
    qs = segments_visible_to(principal, session).filter(is_final=True, segment_id=str(segment_id)[:100])
    if for_update:
        qs = qs.select_for_update()
    segment = next(iter(qs.order_by()[:1]), None)
    if segment is None:
        raise NotFound("Segment not found.")
    return segment


def segment_revisions_visible_to(principal: Principal, session: ConsultationSession) -> QuerySet[SegmentRevision]:
    if session.clinic_id != principal.clinic.pk:
        raise NotFound("Session not found.")
    return SegmentRevision.objects.filter(clinic=principal.clinic, session=session)


def transcript_segments_visible_to(principal: Principal) -> QuerySet[TranscriptSegment]:
    """All of the clinic's segments (admin lists); reading their text is audited by the caller."""
    return TranscriptSegment.objects.filter(clinic=principal.clinic)


# --- clinic administration ---------------------------------------------------


def api_keys_visible_to(principal: Principal) -> QuerySet[ApiKey]:
    require_admin(principal)
    return ApiKey.objects.filter(clinic=principal.clinic)


def access_api_key(principal: Principal, key_id: object) -> ApiKey:
    key = api_keys_visible_to(principal).filter(pk=_parse_int(key_id)).first()
    if key is None:
        raise NotFound("API key not found.")
    return key


def memberships_visible_to(principal: Principal) -> QuerySet[Membership]:
    require_admin(principal)
    return Membership.objects.filter(clinic=principal.clinic).select_related("user")


def access_membership(principal: Principal, membership_id: object) -> Membership:
    membership = memberships_visible_to(principal).filter(pk=_parse_int(membership_id)).first()
    if membership is None:
        raise NotFound("Member not found.")
    return membership


def quotas_visible_to(principal: Principal) -> QuerySet[ClinicQuota]:
    """The clinic's own quota row; any member may read it, only staff change it."""
    return ClinicQuota.objects.filter(clinic=principal.clinic)


def audit_events_visible_to(principal: Principal) -> QuerySet[AuditEvent]:
    require_admin(principal)
    return AuditEvent.objects.filter(clinic=principal.clinic)
