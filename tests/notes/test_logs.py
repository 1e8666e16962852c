"""No PHI in logs from the note pipeline: the transcript's text, the
note's sentences and the integrator's external ref never reach a log line,
on success or failure, for either engine."""

import logging

import pytest

from notes.services import note_edit, note_generate, note_read, note_sign
from tests.bedrock_standin.server import Scenario
from tests.notes.conftest import EN_LINES


@pytest.fixture
def all_logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def _assert_no_phi(caplog, session) -> None:
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert caplog.records  # the pipeline did log: the check can fail
    for _, text in EN_LINES:
        for phrase in (text, text[:20]):
            assert phrase not in logged
    assert session.external_ref not in logged


def test_it_logs_no_transcript_or_note_text_on_the_extractive_path(
    all_logs, en_session, principal_clinician_a, run_jobs
):
    note = note_generate(principal=principal_clinician_a, session=en_session)
    run_jobs()
    note_read(principal=principal_clinician_a, session=en_session)
    note_edit(
        principal=principal_clinician_a,
        session=en_session,
        version=note.version,
        revision=note.revision,
        sections={"plan": [{"text": "Chest pain follow-up plan."}]},
    )
    note_sign(principal=principal_clinician_a, session=en_session, version=1, revision=note.revision + 1)
    _assert_no_phi(all_logs, en_session)
    assert "Chest pain follow-up plan" not in all_logs.text


@pytest.mark.parametrize("kind", ["success", "throttle", "malformed"])
def test_it_logs_no_transcript_or_model_text_on_the_bedrock_path(
    all_logs, converse_standin, en_session, principal_clinician_a, run_jobs, kind
):
    en_session.clinic.notes_bedrock_enabled = True
    en_session.clinic.save(update_fields=["notes_bedrock_enabled"])
    principal_clinician_a.clinic.notes_bedrock_enabled = True
    converse_standin.script.append(Scenario(kind))
    note_generate(principal=principal_clinician_a, session=en_session, engine="bedrock")
    run_jobs()
    _assert_no_phi(all_logs, en_session)
    assert "Here is your SOAP note" not in all_logs.text
    assert "Too many requests" not in all_logs.text
