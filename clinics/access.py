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
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from clinics.models import ApiKey, AuditEvent, Clinic, ClinicQuota, McpKeyRoles, Membership, Role, UsedStreamToken
from notes.models import ClinicalNote, NoteEngineCall
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


def access_session_id(session_id: object) -> uuid.UUID:
    """A session id as its primary key; a malformed one is NotFound, like a missing session."""
    return _parse_uuid(session_id)


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


# --- clinical notes -------------------------------------------------------------


def notes_visible_to(principal: Principal, session: ConsultationSession | None = None) -> QuerySet[ClinicalNote]:
    """The clinic's notes (every version), or one session's."""
    qs = ClinicalNote.objects.filter(clinic=principal.clinic)
    if session is not None:
        if session.clinic_id != principal.clinic.pk:
            raise NotFound("Session not found.")
        qs = qs.filter(session=session)
    return qs


def access_note(
    principal: Principal, session: ConsultationSession, version: int | None = None, *, for_update: bool = False
) -> ClinicalNote:
    """The session's note at ``version``, or its latest version (None)."""
    qs = notes_visible_to(principal, session)
    if for_update:
        qs = qs.select_for_update()
    if version is not None:
        qs = qs.filter(version=_parse_int(version))
    note = next(iter(qs.order_by("-version")[:1]), None)
    if note is None:
        raise NotFound("This session has no note.", code="note_not_found")
    return note


def note_engine_calls_visible_to(principal: Principal) -> QuerySet[NoteEngineCall]:
    return NoteEngineCall.objects.filter(clinic=principal.clinic)


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


# --- a stream token's spend at a socket's connect -------------------------------------


@dataclass(frozen=True)
class TokenSpend:
    """What one statement found for an API key's stream token: the key with
    its clinic and quota, the session (None: not in the key's clinic) and
    whether the token's ``jti`` was recorded now (False: already used, or
    nothing to spend it on)."""

    api_key: ApiKey | None
    session: ConsultationSession | None
    spent: bool


class _RowReader:
    """Builds model instances from the columns of a hand-written statement,
    with the same database converters the ORM applies (compiled once)."""

    def __init__(self, model: type[Any], alias: str, connection: Any) -> None:
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.select = ", ".join(f'{alias}."{f.column}"' for f in self.fields)
        self.converters = []
        for i, f in enumerate(self.fields):
            col = f.get_col(alias)
            for conv in connection.ops.get_db_converters(col) + col.get_db_converters(connection):
                self.converters.append((i, conv, col))

    def read(self, values: list[Any], connection: Any) -> Any:
        for i, conv, col in self.converters:
            values[i] = conv(values[i], col, connection)
        return self.model.from_db(connection.alias, self.attnames, values)


_SPEND_SQL: dict[str, tuple[str, tuple[_RowReader, ...]]] = {}


def _spend_statement(connection: Any) -> tuple[str, tuple[_RowReader, ...]]:
    cached = _SPEND_SQL.get(connection.alias)
    if cached is not None:
        return cached
    key, clinic, quota, session = readers = (
        _RowReader(ApiKey, "k", connection),
        _RowReader(Clinic, "c", connection),
        _RowReader(ClinicQuota, "q", connection),
        _RowReader(ConsultationSession, "s", connection),
    )
    # One round trip: the key (unrevoked, of the token's clinic), its clinic
    # and quota, the session only within that clinic, and the jti recorded
    # only when all of them were found and the clinic is active. ON CONFLICT
    # instead of a failed INSERT: no savepoint inside a transaction.
    sql = (
        f"WITH r AS (SELECT {key.select}, {clinic.select}, {quota.select}, {session.select}, "  # noqa: S608 (names from model metadata; values are parameters)
        f'c."is_active" AS r_active, s."id" AS r_session '
        f'FROM "{ApiKey._meta.db_table}" k '
        f'JOIN "{Clinic._meta.db_table}" c ON c."id" = k."clinic_id" '
        f'LEFT JOIN "{ClinicQuota._meta.db_table}" q ON q."clinic_id" = k."clinic_id" '
        f'LEFT JOIN "{ConsultationSession._meta.db_table}" s ON s."id" = %s AND s."clinic_id" = k."clinic_id" '
        f'WHERE k."id" = %s AND k."revoked_at" IS NULL AND k."clinic_id" = %s), '
        f'spent AS (INSERT INTO "{UsedStreamToken._meta.db_table}" ("jti", "clinic_id", "used_at") '
        f"SELECT %s, %s, %s FROM r WHERE r.r_active AND r.r_session IS NOT NULL "
        f'ON CONFLICT ("jti") DO NOTHING RETURNING 1) '
        f"SELECT r.*, EXISTS (SELECT 1 FROM spent) FROM r"
    )
    _SPEND_SQL[connection.alias] = (sql, readers)
    return sql, readers


def stream_token_spend(*, key_id: int, clinic_id: uuid.UUID, session_id: object, jti: str) -> TokenSpend:
    """An API key's stream token spent at a socket's connect, in one
    statement (the connect storm of a deploy runs this hundreds of times at
    once: the ORM's three queries cost more CPU than the whole rest of the
    connect's database work). Tenancy as everywhere here: the session is
    looked up only within the key's clinic, which must be the token's."""
    session_pk = _parse_uuid(session_id)
    connection = transaction.get_connection()
    sql, (key_r, clinic_r, quota_r, session_r) = _spend_statement(connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [session_pk, key_id, clinic_id, jti, clinic_id, timezone.now()])
        row = cursor.fetchone()
    if row is None:
        return TokenSpend(api_key=None, session=None, spent=False)
    values = list(row)
    n_key, n_clinic, n_quota = len(key_r.fields), len(clinic_r.fields), len(quota_r.fields)
    n_session = len(session_r.fields)
    at = 0
    api_key = key_r.read(values[at : at + n_key], connection)
    at += n_key
    clinic = clinic_r.read(values[at : at + n_clinic], connection)
    at += n_clinic
    quota_values = values[at : at + n_quota]
    at += n_quota
    session_values = values[at : at + n_session]
    # No quota row: the reverse one-to-one answers "none" without a query.
    clinic._state.fields_cache["quota"] = (
        quota_r.read(quota_values, connection) if quota_values[0] is not None else None
    )
    if quota_values[0] is not None:
        clinic.quota._state.fields_cache["clinic"] = clinic
    api_key._state.fields_cache["clinic"] = clinic
    session = None
    if session_values[0] is not None:
        session = session_r.read(session_values, connection)
        session._state.fields_cache["clinic"] = clinic
    return TokenSpend(api_key=api_key, session=session, spent=bool(values[-1]))
