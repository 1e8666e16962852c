"""Clinic A's consultations (Japanese and English finals, a correction,
one live session) with MCP on for both clinics, and MCP clients of the
SDK's own: in-process, over stdio (a ``python -m agents`` subprocess on the
test database) and over streamable HTTP (a live server from tests/servers.py).

Rows are committed (``transactional_db``): the worker threads of the
in-process server and the subprocesses only see committed rows."""

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation

from clinics.access import Principal
from clinics.models import Clinic, Role
from clinics.services import api_key_create
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from sessions.services import segment_correct
from tests.servers import REPO_ROOT, base_env, server_factory  # noqa: F401  (fixture for real-process tests)

CLIENT_NAME = "pytest-assistant"


@pytest.fixture(autouse=True)
def _close_thread_connections():
    """The tools run DB work on pool threads (db_async); with CONN_MAX_AGE=0
    each call closes its connection, so the test database can be dropped."""
    from django.db import connection

    connection.settings_dict["CONN_MAX_AGE"] = 0


@dataclass
class Consultations:
    ja: ConsultationSession
    en: ConsultationSession
    live: ConsultationSession
    key_a_admin: str
    key_a_clinician: str
    key_b: str


def _segment(session: ConsultationSession, segment_id: str, text: str, start_ms: int, speaker: str) -> None:
    TranscriptSegment.objects.create(
        clinic=session.clinic,
        session=session,
        segment_id=segment_id,
        start_ms=start_ms,
        end_ms=start_ms + 2000,
        text=text,
        speaker=speaker,
        is_final=True,
    )


@pytest.fixture
def consultations(transactional_db, clinic_a: Clinic, clinic_b: Clinic, admin_a, tmp_media) -> Consultations:
    for clinic in (clinic_a, clinic_b):
        clinic.mcp_enabled = True
        clinic.save(update_fields=["mcp_enabled"])
    ja = ConsultationSession.objects.create(
        clinic=clinic_a, language="ja-JP", engine="fake", external_ref="ja-ref-1", status=SessionStatus.ENDED
    )
    _segment(ja, "j1", "今日はどうされましたか。", 0, "clinician")
    _segment(ja, "j2", "先週の火曜日から頭痛がひどくて、夜も眠れません。", 2500, "patient")
    en = ConsultationSession.objects.create(
        clinic=clinic_a, language="en-US", engine="fake", external_ref="en-ref-1", status=SessionStatus.ENDED
    )
    _segment(en, "e1", "What brings you in today?", 0, "clinician")
    _segment(en, "e2", "I have had a headache since last Tuesday.", 2500, "patient")
    segment_correct(
        principal=Principal(clinic=clinic_a, role=Role.ADMIN, user=admin_a),
        session=en,
        segment_id="e2",
        text="I have had a migraine headache since last Tuesday.",
        revision=0,
    )
    live = ConsultationSession.objects.create(
        clinic=clinic_a, language="en-US", engine="fake", external_ref="live-ref", status=SessionStatus.LIVE
    )
    return Consultations(
        ja=ja,
        en=en,
        live=live,
        key_a_admin=api_key_create(clinic=clinic_a, role=Role.ADMIN, name="mcp-a-admin")[1],
        key_a_clinician=api_key_create(clinic=clinic_a, role=Role.CLINICIAN, name="mcp-a-clinician")[1],
        key_b=api_key_create(clinic=clinic_b, role=Role.ADMIN, name="mcp-b")[1],
    )


def _info() -> Implementation:
    return Implementation(name=CLIENT_NAME, version="1.0")


@contextlib.asynccontextmanager
async def http_client(base_url: str, raw_key: str, *, mode: str = "legacy") -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Api-Key {raw_key}"}, timeout=30) as http:
        transport = streamable_http_client(f"{base_url}/mcp", http_client=http)
        async with Client(transport, client_info=_info(), cache=None, mode=mode) as client:
            yield client


def stdio_params(raw_key: str, media_root: str) -> StdioServerParameters:
    env = base_env(media_root, VOICEAI_API_KEY=raw_key)
    for name in ("PATH", "HOME", "LANG"):
        if name in os.environ:
            env.setdefault(name, os.environ[name])
    python = REPO_ROOT / ".venv" / "bin" / "python"
    return StdioServerParameters(
        command=str(python) if python.exists() else sys.executable, args=["-m", "agents"], env=env, cwd=REPO_ROOT
    )


@contextlib.asynccontextmanager
async def stdio_client(raw_key: str, media_root: str) -> AsyncIterator[Client]:
    async with Client(stdio_params(raw_key, media_root), client_info=_info(), cache=None, mode="legacy") as client:
        yield client


@contextlib.asynccontextmanager
async def inprocess_client(raw_key: str) -> AsyncIterator[Client]:
    """The server in this process; it reads the key from the environment, as on stdio."""
    from agents.server import API_KEY_ENV, mcp_server

    previous = os.environ.get(API_KEY_ENV)
    os.environ[API_KEY_ENV] = raw_key
    try:
        async with Client(mcp_server, client_info=_info(), cache=None, mode="legacy") as client:
            yield client
    finally:
        if previous is None:
            os.environ.pop(API_KEY_ENV, None)
        else:
            os.environ[API_KEY_ENV] = previous
