"""Writing audit rows. Every read and change of audio or transcripts and
every tenant or quota change calls ``audit_record``."""

from typing import Any

from clinics.models import AuditEvent, Clinic


class AuditAction:
    SESSION_CREATE = "session.create"
    SESSION_READ = "session.read"
    SESSION_END = "session.end"
    SESSION_FAIL = "session.fail"
    SESSION_ERASE = "session.erase"
    CONSENT_RECORD = "consent.record"
    CONSENT_WITHDRAW = "consent.withdraw"
    STREAM_TOKEN_ISSUE = "stream_token.issue"
    STREAM_START = "stream.start"
    STREAM_STOP = "stream.stop"
    TRANSCRIPT_READ = "transcript.read"
    TRANSCRIPT_WRITE = "transcript.write"
    TRANSCRIPT_CORRECT = "transcript.correct"
    TRANSCRIPT_CONFIRM = "transcript.confirm"
    SPEAKER_ROLES_SET = "session.speaker_roles"
    NOTE_GENERATE = "note.generate"
    NOTE_WRITE = "note.write"
    NOTE_READ = "note.read"
    NOTE_EDIT = "note.edit"
    NOTE_SIGN = "note.sign"
    AUDIO_READ = "audio.read"
    AUDIO_WRITE = "audio.write"
    LIVE_VIEW = "transcript.live_view"
    CLINIC_CREATE = "clinic.create"
    CLINIC_UPDATE = "clinic.update"
    CLINIC_SUSPEND = "clinic.suspend"
    CLINIC_REACTIVATE = "clinic.reactivate"
    QUOTA_UPDATE = "quota.update"
    API_KEY_CREATE = "api_key.create"
    API_KEY_REVOKE = "api_key.revoke"
    MEMBER_ADD = "member.add"
    MEMBER_UPDATE = "member.update"
    MEMBER_REMOVE = "member.remove"
    CLINIC_EXPORT = "clinic.export"
    RETENTION_PURGE = "retention.purge"
    LOGIN_FAILED = "auth.login_failed"


def audit_record(
    *,
    clinic: Clinic,
    action: str,
    object_type: str,
    object_id: object,
    actor: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """``actor`` is a ``clinics.access.Principal`` or None (system)."""
    event = audit_event(
        clinic=clinic, action=action, object_type=object_type, object_id=object_id, actor=actor, details=details
    )
    event.save(force_insert=True)
    return event


def audit_event(
    *,
    clinic: Clinic,
    action: str,
    object_type: str,
    object_id: object,
    actor: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """The unsaved row ``audit_record`` writes: for a hot path that inserts
    it inside a statement of its own (``audit_insert_values``)."""
    user = getattr(actor, "user", None)
    api_key = getattr(actor, "api_key", None)
    label = getattr(actor, "label", "system") if actor is not None else "system"
    if actor is not None and getattr(actor, "extra", {}).get("system"):
        label = f"system:{actor.extra['system']}"
    return AuditEvent(
        clinic=clinic,
        actor_user=user if user is not None and getattr(user, "pk", None) else None,
        actor_api_key=api_key,
        actor_label=label,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=details or {},
        client_ip=getattr(actor, "client_ip", None),
        request_id=getattr(actor, "request_id", "") or "",
    )


def audit_insert_values(event: AuditEvent, connection: Any) -> tuple[list[str], list[Any]]:
    """The quoted columns and database values of an unsaved audit row, as
    the ORM's INSERT would send them (auto_now_add, JSON adaptation)."""
    columns: list[str] = []
    values: list[Any] = []
    for f in AuditEvent._meta.concrete_fields:
        if f.primary_key:
            continue
        columns.append(connection.ops.quote_name(f.column))
        values.append(f.get_db_prep_save(f.pre_save(event, True), connection))
    return columns, values
