"""S3 storage with each clinic's objects encrypted under the clinic's KMS key.

Everything a clinic owns is stored under ``{clinic_id}/...`` (see
``sessions.storage_keys``). For a key under a clinic that has a
``kms_key_id`` this storage adds ``ServerSideEncryption=aws:kms`` and
``SSEKMSKeyId=<the clinic's key>`` to the upload, so erasing a clinic's
key (crypto-shredding) or scoping a key policy to a clinic works per
tenant. Other objects get the bucket's default encryption.

The key id is looked up once per clinic per ``KMS_CACHE_SECONDS`` (uploads
happen every flush second of every live session; a changed key applies to
new objects within that time). Uploads run on worker threads, never on the
event loop, so the lookup is a plain ORM read.
"""

from __future__ import annotations

import threading
import time
import uuid

from storages.backends.s3 import S3Storage

KMS_CACHE_SECONDS = 60.0

_cache: dict[str, tuple[str, float]] = {}
_lock = threading.Lock()


def clinic_kms_key_id(clinic_id: str) -> str:
    """The clinic's KMS key id ("" when it has none or ``clinic_id`` is not
    a clinic id)."""
    try:
        uuid.UUID(clinic_id)
    except ValueError:
        return ""
    now = time.monotonic()
    with _lock:
        cached = _cache.get(clinic_id)
    if cached and cached[1] > now:
        return cached[0]
    from clinics.models import Clinic

    key_id = Clinic.objects.filter(pk=clinic_id).values_list("kms_key_id", flat=True).first() or ""
    with _lock:
        _cache[clinic_id] = (key_id, now + KMS_CACHE_SECONDS)
    return key_id


def clear_kms_cache() -> None:
    with _lock:
        _cache.clear()


class ClinicKmsS3Storage(S3Storage):
    def get_object_parameters(self, name: str) -> dict:
        params = super().get_object_parameters(name)
        key_id = clinic_kms_key_id(name.lstrip("/").split("/", 1)[0])
        if key_id:
            params["ServerSideEncryption"] = "aws:kms"
            params["SSEKMSKeyId"] = key_id
        return params
