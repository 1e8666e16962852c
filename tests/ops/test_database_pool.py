"""A server process on PostgreSQL borrows from a bounded connection pool:
a burst of REST creates never answers 5xx and the process never holds more
PostgreSQL connections than the pool's maximum (the ASGI thread-per-request
leak of persistent connections, docs/deployment.md)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.servers import requires_shared_database

pytestmark = [pytest.mark.slow, requires_shared_database()]

POOL_MAX = 4


def _server_connections(pid: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [f"voiceai:{pid}"])
        return cursor.fetchone()[0]


def _create(base_url: str, raw_key: str) -> int:
    request = urllib.request.Request(
        f"{base_url}/api/v1/sessions/",
        data=json.dumps({"language": "en-US"}).encode(),
        headers={"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_it_answers_a_burst_of_creates_within_the_pool_bound(transactional_db, server_factory, api_key_a_clinician):
    server = server_factory(env={"DATABASE_POOL_MAX_SIZE": str(POOL_MAX), "DATABASE_POOL_MIN_SIZE": "1"})
    peak = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(_create, server.url, api_key_a_clinician) for _ in range(120)]
        while not all(f.done() for f in futures):
            peak = max(peak, _server_connections(server.proc.pid))
        statuses = [f.result() for f in futures]
    peak = max(peak, _server_connections(server.proc.pid))

    assert statuses.count(201) == len(statuses), sorted(set(statuses))
    # Connections are given back, not kept by the request threads.
    assert 1 <= peak <= POOL_MAX
    assert _server_connections(server.proc.pid) <= POOL_MAX
