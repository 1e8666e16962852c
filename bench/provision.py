"""The Django side of the benchmark: a clinic, sessions and stream tokens,
created straight through the services against the database the servers
use, and a seeded 60-minute transcript.

Why not N REST calls: creating 1,000 sessions over the API would measure
the REST path while the WebSocket servers warm up, and add minutes to each
capacity step. The services are what the REST views call
(``session_create``, ``stream_token_issue``), so the rows are the same;
only the HTTP layer is skipped. The REST path is measured on its own (the
transcript retrieval).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from typing import Any


def django_setup(env: dict[str, str]) -> None:
    """Configure this process like the servers (same database, same
    SECRET_KEY so tokens verify) and set Django up. Idempotent."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    os.environ.update(env)
    django.setup()


def ensure_database(database_url: str) -> None:
    """Create the benchmark's PostgreSQL database if missing (SQLite
    creates itself), then migrate."""
    if database_url.startswith(("postgres://", "postgresql://")):
        import psycopg

        base, _, name = database_url.rpartition("/")
        name = name.split("?")[0]
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    _drop_unfinished_note_jobs()


def _drop_unfinished_note_jobs() -> None:
    """A run's last trial ends sessions, whose note drafts (notes/jobs.py)
    are queued after its servers stopped: the next run's first server would
    write them all during its trial. A benchmark's database is its own."""
    from notes.models import ClinicalNote, NoteStatus

    ClinicalNote.objects.filter(status__in=[NoteStatus.QUEUED, NoteStatus.GENERATING]).delete()


@dataclass
class BenchClinic:
    clinic: Any
    principal: Any
    api_key_raw: str


def bench_clinic(label: str) -> BenchClinic:
    """A fresh clinic per trial, so its Redis keys and rows are its own and
    can be counted and removed. Its quotas don't limit the benchmark."""
    from clinics.access import principal_for_api_key
    from clinics.services import api_key_create, clinic_create, quota_update

    slug = f"bench-{label}-{secrets.token_hex(3)}"[:64]
    clinic = clinic_create(name=f"Benchmark {label}", slug=slug, default_language="en-US")
    quota_update(clinic=clinic, max_concurrent_sessions=100_000, audio_minutes_per_month=10**9)
    clinic.refresh_from_db()
    key, raw = api_key_create(clinic=clinic, role="admin", name="benchmark")
    return BenchClinic(clinic=clinic, principal=principal_for_api_key(key), api_key_raw=raw)


@dataclass
class BenchSession:
    id: str
    producer_token: str
    viewer_token: str | None


def sessions_with_tokens(bc: BenchClinic, n: int, *, viewer_tokens: bool) -> list[BenchSession]:
    """``n`` new sessions, each with a producer token (and a viewer token:
    tokens are single-use)."""
    from clinics.principals import stream_token_issue
    from sessions.services import session_create

    out = []
    for _ in range(n):
        # With the patient's consent, as a clinic that requires it records it.
        session = session_create(principal=bc.principal, sample_rate=16000, language="en-US", consent_method="verbal")
        prod = stream_token_issue(principal=bc.principal, session=session).token
        view = stream_token_issue(principal=bc.principal, session=session).token if viewer_tokens else None
        out.append(BenchSession(id=str(session.pk), producer_token=prod, viewer_token=view))
    return out


def seed_long_transcript(bc: BenchClinic, *, segments: int = 1000, minutes: int = 60) -> str:
    """An ended session with ``segments`` finals spread over ``minutes``:
    the shape of a real one-hour consultation (≈ 3.6 s per segment,
    ≈ 12 words each). Written with bulk_create: seeding is not measured."""
    from django.utils import timezone

    from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
    from sessions.services import session_create

    session = session_create(principal=bc.principal, sample_rate=16000, language="en-US")
    span = minutes * 60_000 // segments
    words = "the patient reports a mild headache since monday with no fever or nausea".split()  # noqa: SIM905
    rows = [
        TranscriptSegment(
            clinic=bc.clinic,
            session=session,
            segment_id=f"seg-{i}",
            revision=3,
            start_ms=i * span,
            end_ms=(i + 1) * span - 40,
            text=" ".join(words[(i + j) % len(words)] for j in range(12)),
            speaker=f"spk_{i % 2}",
            confidence=0.91,
            is_final=True,
        )
        for i in range(segments)
    ]
    TranscriptSegment.objects.bulk_create(rows, batch_size=500)
    ConsultationSession.objects.filter(pk=session.pk).update(
        status=SessionStatus.ENDED, ended_at=timezone.now(), audio_duration_ms=minutes * 60_000
    )
    return str(session.pk)


def redis_keys_bytes(redis_url: str, patterns: list[str]) -> tuple[int, int]:
    """(number of keys, sum of MEMORY USAGE) of the keys matching any of
    ``patterns`` in the benchmark's Redis database. Counting our own keys
    rather than INFO's used_memory keeps other users of the same Redis
    server out of the figure."""
    import redis

    client = redis.Redis.from_url(redis_url)
    seen: set[bytes] = set()
    total = 0
    for pattern in patterns:
        for key in client.scan_iter(match=pattern, count=1000):
            if key in seen:
                continue
            seen.add(key)
            total += client.memory_usage(key, samples=0) or 0
    client.close()
    return len(seen), total


def redis_delete(redis_url: str, patterns: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    client.close()


def time_transcript_fetch(base_url: str, session_id: str, api_key: str, *, runs: int = 5) -> dict[str, Any]:
    """GET the transcript (JSON) ``runs`` times after one warm-up request;
    wall time per request as the client sees it."""
    import urllib.request

    url = f"{base_url}/api/v1/sessions/{session_id}/transcript/?format=json"
    headers = {"Authorization": f"Api-Key {api_key}", "Host": "127.0.0.1"}
    req = urllib.request.Request(url, headers=headers)
    times, size, status = [], 0, None
    for i in range(runs + 1):
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read()
            status = resp.status
        elapsed = time.perf_counter() - t0
        size = len(body)
        if i:
            times.append(elapsed)
    times.sort()
    return {
        "status": status,
        "bytes": size,
        "median_ms": round(times[len(times) // 2] * 1000, 1),
        "max_ms": round(times[-1] * 1000, 1),
        "runs": runs,
    }
