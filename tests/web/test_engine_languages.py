"""The record page knows what the clinic's engine transcribes: a language it
can't do is disabled and explained in the clinician's language."""

import re

from tests.web.conftest import signed_in


def _option(page: str, code: str) -> str:
    match = re.search(rf'<option value="{code}"[^>]*>[^<]*</option>', page)
    assert match, code
    return match.group(0)


def test_it_disables_japanese_on_the_offline_engine_and_says_why_in_japanese(clinic_a, clinician_a):
    clinic_a.transcription_engine = "local"
    clinic_a.default_language = "ja-JP"
    clinic_a.save()
    page = signed_in(clinician_a).get("/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    japanese, english = _option(page, "ja-JP"), _option(page, "en-US")
    assert "disabled" in japanese and "selected" not in japanese
    assert "selected" in english and "disabled" not in english
    assert 'id="language-hint"' in page
    assert "AWS" in page and "オフラインのエンジンは英語のみ対応" in page


def test_it_offers_japanese_when_the_clinics_engine_transcribes_it(clinic_a, clinician_a):
    clinic_a.transcription_engine = "aws"
    clinic_a.default_language = "ja-JP"
    clinic_a.save()
    page = signed_in(clinician_a).get("/").content.decode()
    assert "selected" in _option(page, "ja-JP") and "disabled" not in _option(page, "ja-JP")
    assert 'id="language-hint"' not in page
