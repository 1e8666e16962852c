"""Japanese and English: from the browser's Accept-Language or the user's
choice (set_language), for the pages and for the strings the JavaScript
shows. The compiled catalogue must match the .po file it is built from."""

import gettext
import json
import re
from pathlib import Path

import pytest
from django.utils import translation

from sessions.web.i18n import js_catalog
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db
LOCALE = Path(__file__).resolve().parents[2] / "locale" / "ja" / "LC_MESSAGES"


def _embedded_strings(html: str) -> dict[str, str]:
    match = re.search(r'<script id="console-i18n" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page embeds no string catalogue"
    return json.loads(match.group(1))


def test_it_speaks_japanese_to_a_japanese_browser(clinician_a):
    html = signed_in(clinician_a).get("/", HTTP_ACCEPT_LANGUAGE="ja,en;q=0.5").content.decode()
    assert '<html lang="ja">' in html
    assert "録音開始" in html
    assert _embedded_strings(html)["state_live"] == "録音中"


def test_it_speaks_english_by_default(clinician_a):
    html = signed_in(clinician_a).get("/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert '<html lang="en">' in html
    assert "Start recording" in html
    assert _embedded_strings(html)["state_live"] == "Recording"


def test_it_keeps_the_language_the_user_chose_over_the_browsers(clinician_a):
    client = signed_in(clinician_a)
    response = client.post("/i18n/setlang/", {"language": "ja", "next": "/sessions/"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302
    html = client.get("/sessions/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "診察一覧" in html


def test_it_translates_every_javascript_string_into_japanese():
    with translation.override("en"):
        english = js_catalog()
    with translation.override("ja"):
        japanese = js_catalog()
    untranslated = [key for key in english if english[key] == japanese[key]]
    assert untranslated == []
    for key, text in english.items():  # placeholders survive translation
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", japanese[key])), key


def _po_entries(path: Path) -> dict[tuple[str | None, str], str]:
    """(msgctxt, msgid) -> msgstr of a .po file (no plurals are used)."""
    entries: dict[tuple[str | None, str], str] = {}
    current: dict[str, list[str]] = {}
    key = None
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        for field in ("msgctxt", "msgid", "msgstr"):
            if line.startswith(field + " "):
                if field == "msgctxt" or (field == "msgid" and "msgctxt" not in current):
                    current = {}  # a new entry starts
                current[field], key = [line[len(field) + 1 :]], field
                break
        else:
            if line.startswith('"') and key:
                current[key].append(line)
            elif not line.strip() and "msgstr" in current:
                ctxt = "".join(json.loads(p) for p in current["msgctxt"]) if "msgctxt" in current else None
                msgid = "".join(json.loads(p) for p in current["msgid"])
                entries[(ctxt, msgid)] = "".join(json.loads(p) for p in current["msgstr"])
                current, key = {}, None
    entries.pop((None, ""), None)
    return entries


def test_it_ships_a_compiled_catalogue_matching_the_po_file():
    entries = _po_entries(LOCALE / "django.po")
    assert len(entries) > 100
    assert [key for key, text in entries.items() if not text] == []
    with (LOCALE / "django.mo").open("rb") as fh:
        compiled = gettext.GNUTranslations(fh)
    stale = [
        (ctxt, msgid)
        for (ctxt, msgid), text in entries.items()
        if (compiled.pgettext(ctxt, msgid) if ctxt else compiled.gettext(msgid)) != text
    ]
    assert stale == [], "run: manage.py compilemessages -l ja"


def test_it_labels_the_spoken_language_apart_from_the_interface_language(session_a, clinician_a):
    html = signed_in(clinician_a).get(f"/sessions/{session_a.pk}/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "<dt>言語</dt><dd>英語</dd>" in html
    assert "表示言語" in html  # the interface language switcher's label
