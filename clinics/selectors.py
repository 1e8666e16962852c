"""Reads about tenants for platform staff and clinic admins. Clinic-owned
rows (keys, members, sessions) come through ``clinics.access``."""

import uuid

from django.db.models import QuerySet

from clinics.models import Clinic, ClinicQuota
from voiceai.errors import NotFound


def clinic_list(*, is_active: bool | None = None) -> QuerySet[Clinic]:
    """All tenants — for platform staff only (the caller checks)."""
    qs = Clinic.objects.select_related("quota").order_by("name", "id")
    if is_active is not None:
        qs = qs.filter(is_active=is_active)
    return qs


def clinic_get(*, clinic_id: object) -> Clinic:
    try:
        pk = clinic_id if isinstance(clinic_id, uuid.UUID) else uuid.UUID(str(clinic_id))
    except (ValueError, TypeError, AttributeError):
        raise NotFound("Clinic not found.") from None
    clinic = Clinic.objects.select_related("quota").filter(pk=pk).first()
    if clinic is None:
        raise NotFound("Clinic not found.")
    return clinic


def clinic_quota(*, clinic: Clinic) -> ClinicQuota:
    """The clinic's quota; a clinic made without one (by hand, in a shell)
    reads as the defaults, unsaved — a read never writes."""
    quota = ClinicQuota.objects.filter(clinic=clinic).first()
    return quota if quota is not None else ClinicQuota(clinic=clinic)
