"""The MCP tools and resources through the SDK's client, in process (the
key from the environment, as on stdio): what they return, the audit rows,
the off-switch, key roles, the rate limit, paging bounds, schema checks."""

import json

import pytest
from mcp.shared.exceptions import MCPError

from agents import reads
from clinics.access import Principal
from clinics.audit import AuditAction
from clinics.models import AuditEvent, McpKeyRoles, Role
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from tests.agents.conftest import CLIENT_NAME, inprocess_client
from voiceai.db import db_async

pytestmark = pytest.mark.django_db(transaction=True)


def _data(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


@db_async
def _reads(session) -> list[tuple[dict, str]]:
    """The session's transcript.read audit rows: details, and the key's name."""
    rows = AuditEvent.objects.filter(action=AuditAction.TRANSCRIPT_READ, object_id=str(session.pk)).order_by("id")
    return [(row.details, row.actor_api_key.name if row.actor_api_key else "") for row in rows]


@db_async
def _set(clinic, **fields) -> None:
    for name, value in fields.items():
        setattr(clinic, name, value)
    clinic.save(update_fields=list(fields))


@db_async
def _draft_note(session) -> None:
    """The extractive draft, written as the note worker would."""
    from notes.jobs import note_jobs_run_due
    from notes.services import note_generate

    note_generate(principal=Principal(clinic=session.clinic, role=Role.ADMIN), session=session)
    note_jobs_run_due()


@db_async
def _note_reads(session) -> list[dict]:
    rows = AuditEvent.objects.filter(action=AuditAction.NOTE_READ).order_by("id")
    return [{"format": row.details.get("format")} for row in rows if row.details.get("session_id") == str(session.pk)]


@db_async
def _ended_session_with_a_line(clinic) -> ConsultationSession:
    session = ConsultationSession.objects.create(
        clinic=clinic, language="en-US", engine="fake", status=SessionStatus.ENDED
    )
    TranscriptSegment.objects.create(
        clinic=clinic,
        session=session,
        segment_id="b1",
        start_ms=0,
        end_ms=1000,
        text="My knee hurts.",
        speaker="patient",
    )
    return session


@db_async
def _all_reads() -> int:
    return AuditEvent.objects.filter(action=AuditAction.TRANSCRIPT_READ).count()


async def test_it_finds_japanese_and_english_words_with_the_segment_and_time(consultations):
    async with inprocess_client(consultations.key_a_admin) as client:
        ja = _data(await client.call_tool("search_consultations", {"text": "頭痛"}))
        en = _data(await client.call_tool("search_consultations", {"text": "migraine"}))
    assert [(h["session_id"], h["segment_id"], h["start_ms"]) for h in ja["hits"]] == [
        (str(consultations.ja.pk), "j2", 2500)
    ]
    assert ja["hits"][0]["speaker"] == "patient"
    assert [h["segment_id"] for h in en["hits"]] == ["e2"]  # the corrected (latest) text is searched


async def test_it_lists_consultations_by_date_reference_and_status_without_text(consultations):
    async with inprocess_client(consultations.key_a_admin) as client:
        by_ref = _data(await client.call_tool("search_consultations", {"external_ref": "ja-ref-1"}))
        ended = _data(await client.call_tool("search_consultations", {"status": "ended"}))
        future = _data(await client.call_tool("search_consultations", {"created_after": "2999-01-01T00:00:00Z"}))
    assert [c["session_id"] for c in by_ref["consultations"]] == [str(consultations.ja.pk)]
    assert {c["session_id"] for c in ended["consultations"]} == {str(consultations.ja.pk), str(consultations.en.pk)}
    assert future["consultations"] == []
    assert "text" not in json.dumps(by_ref)  # a listing carries no transcript text


async def test_it_reads_a_transcript_with_speakers_times_and_revisions_and_audits_it(consultations):
    async with inprocess_client(consultations.key_a_admin) as client:
        plain = _data(await client.call_tool("get_transcript", {"session_id": str(consultations.en.pk)}))
        full = _data(
            await client.call_tool(
                "get_transcript", {"session_id": str(consultations.en.pk), "include_revisions": True}
            )
        )
    assert [(s["segment_id"], s["speaker"], s["start_ms"], s["end_ms"]) for s in plain["segments"]] == [
        ("e1", "clinician", 0, 2000),
        ("e2", "patient", 2500, 4500),
    ]
    assert plain["segments"][1]["text"] == "I have had a migraine headache since last Tuesday."
    assert "revisions" not in plain["segments"][1]
    corrected = full["segments"][1]
    assert corrected["original_text"] == "I have had a headache since last Tuesday."
    assert [r["text_after"] for r in corrected["revisions"]] == [corrected["text"]]
    rows = await _reads(consultations.en)
    assert len(rows) == 2
    assert rows[0] == ({"format": "json", "segments": 2, "via": "mcp", "client": CLIENT_NAME}, "mcp-a-admin")


async def test_it_audits_every_consultation_a_search_shows(consultations):
    async with inprocess_client(consultations.key_a_admin) as client:
        _data(await client.call_tool("search_consultations", {"text": "today"}))
    rows = await _reads(consultations.en)
    assert [(d["format"], d["via"], d["client"], d["segments"]) for d, _ in rows] == [("search", "mcp", CLIENT_NAME, 1)]
    assert await _reads(consultations.ja) == []  # no hit there, no read


async def test_it_reads_the_transcript_resource_and_audits_it(consultations):
    async with inprocess_client(consultations.key_a_admin) as client:
        result = await client.read_resource(f"consultation://{consultations.ja.pk}/transcript")
    document = json.loads(result.contents[0].text)
    assert [s["text"] for s in document["segments"]][1] == "先週の火曜日から頭痛がひどくて、夜も眠れません。"
    assert len(await _reads(consultations.ja)) == 1


async def test_it_answers_that_no_note_exists_rather_than_inventing_one(consultations):
    async with inprocess_client(consultations.key_a_admin) as client:
        note = _data(await client.call_tool("get_note", {"session_id": str(consultations.ja.pk)}))
        resource = await client.read_resource(f"consultation://{consultations.ja.pk}/note")
    assert note["note"] is None
    assert "No note for this consultation yet" in note["message"]
    assert json.loads(resource.contents[0].text)["note"] is None


async def test_it_reads_the_note_draft_with_its_evidence_says_it_is_unsigned_and_audits_it(consultations):
    await _draft_note(consultations.en)
    async with inprocess_client(consultations.key_a_admin) as client:
        result = _data(await client.call_tool("get_note", {"session_id": str(consultations.en.pk)}))
        resource = json.loads(
            (await client.read_resource(f"consultation://{consultations.en.pk}/note")).contents[0].text
        )
    note = result["note"]
    assert note["status"] == "draft"
    assert "no clinician has signed" in result["message"]
    evidence = {e["segment_id"] for section in note["sections"] for s in section["sentences"] for e in s["evidence"]}
    assert evidence and evidence <= {"e1", "e2"}  # drawn from this consultation's own segments
    assert resource["note"]["version"] == note["version"]
    assert await _note_reads(consultations.en) == [{"format": "mcp"}, {"format": "mcp"}]


async def test_it_answers_not_found_for_another_clinics_note(consultations, clinic_b):
    other = await _ended_session_with_a_line(clinic_b)
    await _draft_note(other)
    async with inprocess_client(consultations.key_a_admin) as client:
        result = await client.call_tool("get_note", {"session_id": str(other.pk)})
    assert result.is_error
    assert await _note_reads(other) == []


async def test_it_lists_what_is_live_now(consultations):
    async with inprocess_client(consultations.key_a_admin) as client:
        live = _data(await client.call_tool("list_live_sessions", {}))
    assert [c["session_id"] for c in live["consultations"]] == [str(consultations.live.pk)]


async def test_it_refuses_every_call_while_the_clinic_has_mcp_switched_off(consultations):
    await _set(consultations.ja.clinic, mcp_enabled=False)
    async with inprocess_client(consultations.key_a_admin) as client:
        with pytest.raises(MCPError) as tool_error:
            await client.call_tool("search_consultations", {"text": "頭痛"})
        with pytest.raises(MCPError) as resource_error:
            await client.read_resource(f"consultation://{consultations.ja.pk}/transcript")
    for error in (tool_error.value, resource_error.value):
        assert error.error.data["code"] == "mcp_disabled"
        assert "switched off" in error.error.message
    assert await _reads(consultations.ja) == []


async def test_it_lets_clinician_keys_in_only_when_the_clinic_allows_them(consultations):
    async with inprocess_client(consultations.key_a_clinician) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("list_live_sessions", {})
    assert refused.value.error.data["code"] == "mcp_role_not_allowed"
    await _set(consultations.ja.clinic, mcp_key_roles=McpKeyRoles.ADMIN_CLINICIAN)
    async with inprocess_client(consultations.key_a_clinician) as client:
        assert _data(await client.call_tool("list_live_sessions", {}))["consultations"]


@pytest.mark.parametrize(
    ("raw_key", "code"), [("", "not_authenticated"), ("vai_nope_" + "x" * 40, "authentication_failed")]
)
async def test_it_refuses_a_missing_or_unknown_key(consultations, raw_key, code):
    async with inprocess_client(raw_key) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("list_live_sessions", {})
        with pytest.raises(MCPError):
            await client.read_resource(f"consultation://{consultations.ja.pk}/transcript")
    assert refused.value.error.data["code"] == code
    assert "VOICEAI_API_KEY" in refused.value.error.message
    assert await _all_reads() == 0


async def test_it_rate_limits_each_key(consultations, settings):
    settings.MCP_CALLS_PER_MINUTE = 3
    async with inprocess_client(consultations.key_a_admin) as client:
        for _ in range(3):
            _data(await client.call_tool("list_live_sessions", {}))
        with pytest.raises(MCPError) as limited:
            await client.call_tool("list_live_sessions", {})
    assert limited.value.error.data["code"] == "rate_limited"
    assert limited.value.error.data["retry_after"] >= 1
    async with inprocess_client(consultations.key_b) as other_key:  # another key has its own budget
        _data(await other_key.call_tool("list_live_sessions", {}))


async def test_it_pages_search_results_and_caps_the_page(consultations):
    async with inprocess_client(consultations.key_a_admin) as client:
        first = _data(await client.call_tool("search_consultations", {"limit": 2}))
        rest = _data(await client.call_tool("search_consultations", {"limit": 2, "offset": first["next_offset"]}))
        too_big = await client.call_tool("search_consultations", {"limit": reads.MAX_PAGE + 1})
    assert len(first["consultations"]) == 2 and first["next_offset"] == 2
    assert len(rest["consultations"]) == 1 and rest["next_offset"] is None
    assert too_big.is_error


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("get_transcript", {"session_id": "not-a-uuid"}),
        ("get_transcript", {}),
        ("get_transcript", {"session_id": "00000000-0000-0000-0000-000000000000", "limit": 10_000}),
        ("search_consultations", {"status": "archived"}),
        ("search_consultations", {"text": "x" * 201}),
        ("search_consultations", {"created_after": "last tuesday"}),
        ("list_live_sessions", {"offset": -1}),
    ],
)
async def test_it_rejects_arguments_the_schema_does_not_allow(consultations, tool, arguments):
    async with inprocess_client(consultations.key_a_admin) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    text = result.content[0].text
    assert "Traceback" not in text
    assert await _all_reads() == 0


async def test_it_answers_a_bad_query_with_a_clear_tool_error(consultations):
    async with inprocess_client(consultations.key_a_admin) as client:
        result = await client.call_tool("search_consultations", {"text": '""'})
    assert result.is_error
    assert "invalid_query" in result.content[0].text


async def test_it_refuses_the_next_call_once_the_key_is_revoked(consultations):
    @db_async
    def revoke() -> None:
        from clinics.models import ApiKey
        from clinics.services import api_key_revoke

        api_key_revoke(api_key=ApiKey.objects.get(name="mcp-a-admin"))

    async with inprocess_client(consultations.key_a_admin) as client:
        _data(await client.call_tool("list_live_sessions", {}))
        await revoke()
        with pytest.raises(MCPError) as refused:
            await client.call_tool("list_live_sessions", {})
    assert refused.value.error.data["code"] == "authentication_failed"
