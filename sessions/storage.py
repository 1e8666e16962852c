"""Storage helpers that work the same on local files and S3.

``default_storage`` is FileSystemStorage in development and S3Storage
(django-storages) in production; both implement ``listdir``/``delete``, and
on S3 whole prefixes are removed with batched DeleteObjects calls.
"""

import contextlib
from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.core.exceptions import SuspiciousOperation
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from storages.utils import safe_join

from voiceai.logging import get_logger

log = get_logger(__name__)


def _check_prefix(prefix: str) -> None:
    # An empty or rooted prefix would erase every clinic's objects.
    if not prefix or not prefix.endswith("/") or prefix.startswith("/") or ".." in prefix.split("/"):
        raise ValueError("storage prefix must be a relative 'dir/.../' path")


def _s3_key(storage: Storage, name: str) -> str | None:
    """The bucket key of ``name`` on an S3 storage (under its ``location``,
    as S3Storage stores it), or None for other storages."""
    if getattr(storage, "bucket", None) is None or not hasattr(storage, "location"):
        return None
    try:
        return safe_join(storage.location, name)
    except ValueError:
        raise SuspiciousOperation(f"Attempted access to {name!r} denied.") from None


def _delete_tree(storage: Storage, path: str) -> int:
    try:
        dirs, files = storage.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    deleted = 0
    for name in files:
        storage.delete(f"{path}{name}")
        deleted += 1
    for name in dirs:
        deleted += _delete_tree(storage, f"{path}{name}/")
    if isinstance(storage, FileSystemStorage):
        # FileSystemStorage leaves the (now empty) directory behind.
        with contextlib.suppress(OSError):
            storage.delete(path.rstrip("/"))
    return deleted


def storage_delete_prefix(prefix: str, *, storage: Storage | None = None) -> int:
    """Delete every object under ``prefix`` (recursively); returns how many
    objects were deleted. Missing prefixes delete nothing."""
    _check_prefix(prefix)
    storage = storage or default_storage
    key_prefix = _s3_key(storage, prefix)
    if key_prefix is not None:
        # S3: one listing, deletes in batches of up to 1,000 keys.
        deleted = 0
        for response in storage.bucket.objects.filter(Prefix=key_prefix).delete():
            deleted += len(response.get("Deleted", []))
            if response.get("Errors"):
                log.error("storage_delete_errors", count=len(response["Errors"]))
                raise OSError("some storage objects could not be deleted")
        return deleted
    return _delete_tree(storage, prefix)


def storage_size(key: str, *, storage: Storage | None = None) -> int | None:
    """Size of the object, or None when it does not exist."""
    storage = storage or default_storage
    try:
        if not storage.exists(key):
            return None
        return storage.size(key)
    except FileNotFoundError:
        return None


def storage_iter_range(
    key: str, *, start: int, length: int, storage: Storage | None = None, chunk_size: int = 64 * 1024
) -> Iterator[bytes]:
    """Yield ``length`` bytes of the object from ``start``. On S3 this is a
    ranged GET, so a seek in a two-hour recording doesn't download it all."""
    storage = storage or default_storage
    if length <= 0:
        return
    s3_key = _s3_key(storage, key)
    if s3_key is not None:
        obj = storage.bucket.Object(s3_key)
        body = obj.get(Range=f"bytes={start}-{start + length - 1}")["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()
        return
    with storage.open(key, "rb") as handle:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            data = handle.read(min(chunk_size, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data


async def storage_aiter_range(
    key: str, *, start: int, length: int, storage: Storage | None = None, chunk_size: int = 256 * 1024
) -> AsyncIterator[bytes]:
    """``storage_iter_range`` for ASGI responses. Django buffers a whole
    sync iterator in memory before sending it under ASGI (a two-hour WAV is
    ~230 MB); this reads chunk by chunk in a worker thread instead."""
    chunks = storage_iter_range(key, start=start, length=length, storage=storage, chunk_size=chunk_size)
    read = sync_to_async(next, thread_sensitive=False)
    try:
        while True:
            chunk = await read(chunks, None)
            if chunk is None:
                break
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=False)()
