"""Exports for EHRs: the signed note as plain text laid out for pasting
into a Japanese chart, as a FHIR R4 Composition, and the transcript as a
FHIR R4 DocumentReference — each parsed back with fhir.resources."""

import base64

import pytest
from fhir.resources.R4B.composition import Composition
from fhir.resources.R4B.documentreference import DocumentReference

from notes.services import note_generate, note_sign


@pytest.fixture
def signed_ja(ja_session, principal_clinician_a, run_jobs):
    note = note_generate(principal=principal_clinician_a, session=ja_session)
    run_jobs()
    note_sign(principal=principal_clinician_a, session=ja_session, version=note.version, revision=note.revision)
    return ja_session


def test_it_lays_out_a_japanese_note_for_pasting_into_an_ehr(client_a, signed_ja):
    response = client_a.get(f"/api/v1/sessions/{signed_ja.pk}/note/text/")
    assert response.status_code == 200 and response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == (
        "【主訴・現病歴】\n"
        "先週の火曜日から頭痛がひどくて、夜も眠れません。\n"
        "熱はありませんが、少し吐き気があります。\n"
        "\n"
        "【所見】\n"
        "血圧は130の80で、神経学的な異常はありません。\n"
        "\n"
        "【評価】\n"
        "緊張型頭痛の可能性が高いと思います。\n"
        "\n"
        "【計画】\n"
        "鎮痛薬を出しますので、一週間後にもう一度来てください。\n"
    )


def test_it_marks_an_unsigned_version_as_a_draft_in_text(client_a, drafted):
    text = client_a.get(f"/api/v1/sessions/{drafted.pk}/note/text/?version=1").content.decode()
    assert text.startswith("DRAFT (not signed)\n\n[Subjective]\n")
    assert "[Objective]\nYour blood pressure is 150 over 95 today.\n" in text


def test_it_exports_the_signed_note_as_a_valid_fhir_composition(client_a, signed_ja):
    response = client_a.get(f"/api/v1/sessions/{signed_ja.pk}/note/fhir/")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/fhir+json")
    resource = response.json()
    composition = Composition.model_validate(resource)  # raises if it is not a valid Composition
    assert composition.status == "final" and composition.language == "ja-JP"
    assert composition.type.coding[0].code == "11506-3"
    assert [s.title for s in composition.section] == ["主訴・現病歴", "所見", "評価", "計画"]
    assert [s.code.coding[0].code for s in composition.section] == ["61150-9", "61149-1", "51848-0", "18776-5"]
    assert "鎮痛薬を出しますので" in composition.section[3].text.div
    assert composition.attester[0].mode == "legal" and composition.attester[0].party.display.startswith("user:")
    assert composition.relatesTo[0].code == "transforms"
    assert composition.relatesTo[0].targetIdentifier.value == f"urn:uuid:{signed_ja.pk}"


def test_it_escapes_sentences_in_the_compositions_narrative(client_a, signed_ja, principal_clinician_a):
    from notes.services import note_edit

    note_edit(
        principal=principal_clinician_a,
        session=signed_ja,
        version=1,
        revision=0,
        sections={"plan": [{"text": "<script>alert(1)</script> & rest"}]},
    )
    note_sign(principal=principal_clinician_a, session=signed_ja, version=2, revision=0)
    resource = client_a.get(f"/api/v1/sessions/{signed_ja.pk}/note/fhir/").json()
    div = resource["section"][3]["text"]["div"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; rest" in div and "<script>" not in div
    assert resource["relatesTo"][1]["code"] == "replaces"


def test_it_exports_the_transcript_as_a_valid_fhir_document_reference(client_a, ja_session):
    response = client_a.get(f"/api/v1/sessions/{ja_session.pk}/transcript/fhir/")
    assert response.status_code == 200
    reference = DocumentReference.model_validate(response.json())
    assert reference.status == "current" and reference.docStatus == "final"
    assert reference.masterIdentifier.value == f"urn:uuid:{ja_session.pk}"
    assert reference.identifier[0].value == "visit-ja"
    attachment = reference.content[0].attachment
    assert attachment.contentType == "text/plain; charset=utf-8" and attachment.language == "ja-JP"
    text = base64.b64decode(response.json()["content"][0]["attachment"]["data"]).decode()
    assert attachment.data == text.encode()  # fhir.resources decoded the same base64
    assert "先週の火曜日から頭痛がひどくて" in text and "interim" not in text
    from clinics.models import AuditEvent

    assert AuditEvent.objects.filter(action="transcript.read", details__format="fhir").count() == 1
