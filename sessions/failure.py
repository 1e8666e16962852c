"""Marking a session failed: the speech engine gave up (non-retryable
error, or retries exhausted) on a live stream or a batch job."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from clinics.access import Principal, access_session
from clinics.audit import AuditAction, audit_record
from sessions.models import ConsultationSession, SessionStatus

_OPEN = (SessionStatus.CREATED, SessionStatus.LIVE)


@transaction.atomic
def session_fail(*, principal: Principal, session_id: Any, reason: str) -> ConsultationSession:
    """Marks an open session failed with a short machine reason (an error
    code, never vendor text with data in it). Its stored audio and finals
    stay. Idempotent: an ended or failed session is left as it is."""
    session = access_session(principal, session_id, for_update=True)
    if session.status not in _OPEN:
        return session
    before = session.status
    session.status = SessionStatus.FAILED
    session.failure_reason = reason[:200]
    session.ended_at = timezone.now()
    session.save(update_fields=["status", "failure_reason", "ended_at"])
    audit_record(
        clinic=principal.clinic,
        action=AuditAction.SESSION_FAIL,
        object_type="session",
        object_id=session.pk,
        actor=principal,
        details={"from": before, "reason": session.failure_reason},
    )
    return session
