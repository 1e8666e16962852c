"""The clinician's console: thin views over the access layer and the
sessions services/selectors. Recording itself runs in the browser
(static/console/record.js) against the REST API and the producer socket."""

from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from clinics.access import access_session, memberships_of, principal_for_user
from clinics.api.base import SESSION_CLINIC_KEY
from clinics.models import Language
from notes.formats import labels_for, sentence_entry
from notes.models import SECTION_KEYS, ClinicalNote, NoteStatus
from notes.selectors import note_latest
from notes.services import (
    NoteConflict,
    NoteGenerating,
    NoteNotEditable,
    note_edit,
    note_generate,
    note_read,
    note_retry,
    note_sign,
)
from sessions.engine_support import clinic_engine, clinic_engine_languages
from sessions.formats import needs_review, speaker_roles
from sessions.models import OPEN_STATUSES, ConsultationSession, SessionStatus
from sessions.search import InvalidSearchQuery, search_hit, search_query_parse, transcript_search
from sessions.selectors import audio_stored_ms, quota_with_usage, session_list, speakers_heard, transcript_history
from sessions.services import (
    RevisionConflict,
    StorageUnavailable,
    consent_record,
    consent_withdraw,
    segment_confirm,
    segment_correct,
    session_erase,
    speaker_roles_set,
    transcript_read,
    transcript_search_audit,
)
from sessions.web.forms import ClinicPickForm, ConsentForm, SessionFilterForm
from sessions.web.i18n import LANGUAGE_LABELS, ROLE_LABELS, js_catalog
from sessions.web.scope import console_principal, console_view
from voiceai.errors import Conflict, InvalidInput, NotFound

PAGE_SIZE = 25
TRANSCRIPT_FORMATS = ("txt", "vtt", "json", "srt")


def clock(ms: int | None) -> str:
    """mm:ss (h:mm:ss past an hour), as the transcript in the browser shows it."""
    total = max(0, int(ms or 0) // 1000)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def _lines(
    segments: list,
    corrected: frozenset[int] = frozenset(),
    roles: dict[str, str] | None = None,
    threshold: float | None = None,
) -> list[dict[str, object]]:
    roles = roles or {}
    return [
        {
            "segment_id": s.segment_id,
            "start_ms": s.start_ms,
            "end_ms": s.end_ms,
            "ts": clock(s.start_ms),
            "text": s.text,
            "revision": s.revision,
            "corrected": s.pk in corrected,
            "speaker": s.speaker,
            "role": ROLE_LABELS.get(roles.get(s.speaker, ""), ""),
            "needs_review": threshold is not None and needs_review(s, threshold),
            "confirmed": s.reviewed_at is not None and s.pk not in corrected,
        }
        for s in segments
    ]


def _base_context(request: HttpRequest, **extra: object) -> dict[str, object]:
    principal = console_principal(request)
    return {
        "principal": principal,
        "clinic": principal.clinic,
        "memberships": request.console_memberships,  # type: ignore[attr-defined]
        "js_strings": js_catalog(),
        **extra,
    }


@console_view()
def record(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    supported = clinic_engine_languages(principal.clinic)
    languages = [
        {"code": code, "label": LANGUAGE_LABELS.get(code, label), "supported": code in supported}
        for code, label in Language.choices
    ]
    default = principal.clinic.default_language
    if default not in supported and supported:
        default = supported[0]
    # "Resume recording" from a live consultation's page: continue that
    # session (its stored audio and finals first), not a new one.
    resume = None
    if request.GET.get("resume"):
        resume = access_session(principal, request.GET["resume"])
        if resume.status not in OPEN_STATUSES or resume.source == "batch":
            messages.info(request, _("That consultation has ended; it cannot be resumed."))
            return redirect("console:session_detail", session_id=resume.pk)
    return render(
        request,
        "console/record.html",
        _base_context(
            request,
            spoken_languages=languages,
            default_language=default,
            unsupported_languages=[lang["label"] for lang in languages if not lang["supported"]],
            engine=clinic_engine(principal.clinic),
            resume=resume,
            grace_minutes=principal.clinic.producer_grace_minutes,
        ),
    )


def _day_start(day: object) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))  # type: ignore[arg-type]


@console_view()
def session_index(request: HttpRequest) -> HttpResponse:
    """The consultations, or with ``q`` the transcript lines that match (the
    same search as REST and the MCP tools), each linking to its moment."""
    principal = console_principal(request)
    form = SessionFilterForm(request.GET or None)
    filters: dict[str, object] = {}
    search = None
    if form.is_valid():
        data = form.cleaned_data
        filters = {
            "status": data["status"] or None,
            "external_ref": data["external_ref"].strip() or None,
            "created_after": _day_start(data["date_from"]) if data["date_from"] else None,
            # "To" includes the whole day.
            "created_before": _day_start(data["date_to"]) + timedelta(days=1) if data["date_to"] else None,
        }
        if data["q"].strip():
            try:
                search = search_query_parse(data["q"])
            except InvalidSearchQuery:
                form.add_error(
                    "q", _("Enter words or “quoted phrases” to search for: at most 200 characters and 8 terms.")
                )
    query = request.GET.copy()
    query.pop("page", None)
    if search is not None:
        page = Paginator(transcript_search(principal=principal, query=search, **filters), PAGE_SIZE).get_page(
            request.GET.get("page")
        )
        segments = list(page.object_list)
        transcript_search_audit(principal=principal, segments=segments, via="console")
        hits = [{"hit": search_hit(s, search), "ts": clock(s.start_ms)} for s in segments]
        return render(
            request,
            "console/session_list.html",
            _base_context(request, form=form, page=page, hits=hits, searching=True, query=query.urlencode()),
        )
    page = Paginator(session_list(principal=principal, **filters), PAGE_SIZE).get_page(request.GET.get("page"))
    for session in page:
        session.duration_text = clock(session.audio_duration_ms)
    return render(
        request,
        "console/session_list.html",
        _base_context(request, form=form, page=page, query=query.urlencode()),
    )


def _note_sections(note: ClinicalNote, spans: dict[str, tuple[int, int]]) -> list[dict[str, object]]:
    """The note's sections as the panel shows them: labels in the
    consultation's language (the note is written for its chart), each
    sentence with its evidence ids and the span of audio they cover."""
    labels = labels_for(note.language)
    sections = []
    for key in SECTION_KEYS:
        sentences = []
        for sentence in (note.sections or {}).get(key, []):
            entry = sentence_entry(sentence, spans)
            ids = [e["segment_id"] for e in entry["evidence"]]
            sentences.append(
                {
                    **entry,
                    "evidence": ids,
                    "evidence_ids": " ".join(ids),
                    "from_ts": clock(entry["start_ms"]) if ids else "",
                    "to_ts": clock(entry["end_ms"]) if ids else "",
                }
            )
        sections.append({"key": key, "label": labels[key], "sentences": sentences})
    return sections


def _who(principal_label: str, request: HttpRequest) -> str:
    """An audit label as the page shows it: the reader's own name for
    themselves, the label (``user:<id>``, ``api-key:<prefix>``) otherwise,
    as the consent facts show it."""
    if principal_label and principal_label == console_principal(request).label:
        return request.user.get_username()
    return principal_label


def _note_context(request: HttpRequest, session: ConsultationSession) -> dict[str, object]:
    """The note panel: the version asked for (``?note=<version>``) or the
    latest, read through the audited service; nothing before a first draft."""
    principal = console_principal(request)
    latest = note_latest(principal=principal, session=session)
    if latest is None:
        return {"note": None}
    wanted = request.GET.get("note")
    view = note_read(principal=principal, session=session, version=wanted or None, fmt="console")
    note = view.note
    is_latest = note.version == latest.version
    return {
        "note": note,
        "note_is_latest": is_latest,
        "note_editable": is_latest and note.status == NoteStatus.DRAFT,
        "note_sections": _note_sections(note, view.spans),
        "note_versions": view.versions,
        "note_signed_by": _who(note.signed_by, request),
        "note_edited_by": _who(note.edited_by, request),
        "note_status_url": reverse("console:note_status", args=[session.pk]),
    }


@console_view()
def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    principal = console_principal(request)
    session = access_session(principal, session_id)
    note_context = _note_context(request, session)
    segments = transcript_read(principal=principal, session=session, fmt="console")
    is_open = session.status in OPEN_STATUSES
    speakers, roles_set = speakers_heard(principal=principal, session=session)
    lines = _lines(
        segments,
        frozenset(transcript_history(principal=principal, session=session)),
        roles=speaker_roles((s.label for s in speakers), session.speaker_roles),
        threshold=principal.clinic.low_confidence_threshold,
    )
    return render(
        request,
        "console/session_detail.html",
        _base_context(
            request,
            session=session,
            segments=lines,
            to_review=[line for line in lines if line["needs_review"]],
            speakers=speakers,
            speakers_guessed=not roles_set,
            role_choices=list(ROLE_LABELS.items()),
            # A live consultation shows what is stored so far, not 00:00.
            duration=clock(audio_stored_ms(session=session)),
            formats=TRANSCRIPT_FORMATS,
            has_audio=bool(session.audio_bytes or session.storage_key),
            is_open=is_open,
            can_resume=is_open and session.source != "batch",
            grace_minutes=principal.clinic.producer_grace_minutes,
            consent_form=ConsentForm(),
            **note_context,
        ),
    )


def _note_url(session: ConsultationSession) -> str:
    return f"{reverse('console:session_detail', args=[session.pk])}#note"


def _posted_int(request: HttpRequest, name: str) -> int:
    """A posted precondition; -1 (never a note's) when missing or not a number."""
    value = request.POST.get(name, "")
    return int(value) if value.isdigit() else -1


def _posted_sections(request: HttpRequest) -> dict[str, list[dict[str, str]]]:
    """The draft form's sentences in page order: ``<section>.<sentence id>``
    fields keep their sentence (and its evidence), ``<section>.new`` adds
    the clinician's own; an emptied sentence is dropped."""
    sections: dict[str, list[dict[str, str]]] = {key: [] for key in SECTION_KEYS}
    for name, values in request.POST.lists():
        section, _, sentence_id = name.partition(".")
        if section not in sections or not sentence_id:
            continue
        for value in values:
            if not value.strip():
                continue
            item = {"text": value}
            if sentence_id != "new":
                item["id"] = sentence_id
            sections[section].append(item)
    return sections


def _sections_changed(note: ClinicalNote | None, posted: dict[str, list[dict[str, str]]]) -> bool:
    if note is None:
        return False
    current = {
        key: [(s["id"], " ".join(s["text"].split())) for s in (note.sections or {}).get(key, [])]
        for key in SECTION_KEYS
    }
    wanted = {key: [(s.get("id"), " ".join(s["text"].split())) for s in items] for key, items in posted.items()}
    return current != wanted


def _note_conflict_message(request: HttpRequest) -> None:
    messages.error(
        request,
        _(
            "The note was changed meanwhile (on another screen or by a colleague). Check the latest version, "
            "then apply your change again."
        ),
    )


@console_view()
@require_http_methods(["POST"])
def note_edit_view(request: HttpRequest, session_id: str) -> HttpResponse:
    """Saves the clinician's edits of the draft, refused if the note moved
    on since the page was loaded (``version`` and ``revision``)."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    version = _posted_int(request, "version")
    try:
        note = note_edit(
            principal=principal,
            session=session,
            version=version,
            revision=_posted_int(request, "revision"),
            sections=_posted_sections(request),
        )
    except NoteConflict:
        _note_conflict_message(request)
    except (NoteGenerating, NoteNotEditable):
        messages.error(request, _("This version of the note cannot be edited now."))
    except InvalidInput:
        messages.error(request, _("A sentence is too long: at most 2000 characters."))
    else:
        if note.version != version:
            # Signed on another screen since this page was loaded: the signed
            # version stays as it is, the edits became the next version.
            messages.info(
                request,
                _(
                    "The note was signed meanwhile, so it was not changed: your edits are saved as a new draft "
                    "version %(version)s."
                )
                % {"version": note.version},
            )
        else:
            messages.success(request, _("The draft is saved."))
    return redirect(_note_url(session))


@console_view()
@require_http_methods(["POST"])
def note_sign_view(request: HttpRequest, session_id: str) -> HttpResponse:
    """Saves the draft as shown (when edited since it was loaded), then
    signs it: from then on that version never changes."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    version, revision = _posted_int(request, "version"), _posted_int(request, "revision")
    latest = note_latest(principal=principal, session=session)
    if latest is None:
        raise NotFound()
    if latest.status == NoteStatus.SIGNED and latest.version == version:
        # Signed on another screen meanwhile: edits here would make and sign
        # a new version nobody reviewed as such; nothing is written.
        messages.error(request, _("This version was signed meanwhile. Nothing was changed; check it below."))
        return redirect(_note_url(session))
    try:
        sections = _posted_sections(request)
        # Sign what the clinician sees: edits not saved yet are saved first
        # (an unchanged draft is signed as it is, no edit recorded).
        if _sections_changed(latest, sections):
            note = note_edit(
                principal=principal, session=session, version=version, revision=revision, sections=sections
            )
            version, revision = note.version, note.revision
        note_sign(principal=principal, session=session, version=version, revision=revision)
    except NoteConflict:
        _note_conflict_message(request)
    except (NoteGenerating, NoteNotEditable):
        messages.error(request, _("This version of the note cannot be signed now."))
    except InvalidInput:
        messages.error(request, _("A sentence is too long: at most 2000 characters."))
    else:
        messages.success(request, _("The note is signed. It can no longer be changed; a new version replaces it."))
    return redirect(_note_url(session))


@console_view()
@require_http_methods(["POST"])
def note_new_version(request: HttpRequest, session_id: str) -> HttpResponse:
    """Starts a new draft version from the signed latest one (same
    sentences and evidence); it replaces the signed one once signed."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    latest = note_latest(principal=principal, session=session)
    if latest is None:
        raise NotFound()
    unchanged = {
        key: [{"id": s["id"], "text": s["text"]} for s in (latest.sections or {}).get(key, [])] for key in SECTION_KEYS
    }
    try:
        note_edit(
            principal=principal,
            session=session,
            version=_posted_int(request, "version"),
            revision=_posted_int(request, "revision"),
            sections=unchanged,
        )
    except NoteConflict:
        _note_conflict_message(request)
    except (NoteGenerating, NoteNotEditable, InvalidInput):
        messages.error(request, _("A new version can only be started from the signed note."))
    else:
        messages.success(request, _("A new draft version is started; the signed version stays until it is signed."))
    return redirect(_note_url(session))


@console_view()
@require_http_methods(["POST"])
def note_retry_view(request: HttpRequest, session_id: str) -> HttpResponse:
    """Runs a failed draft's job again."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    try:
        note_retry(principal=principal, session=session)
    except Conflict:
        messages.info(request, _("The draft is no longer failed: it is being written or is ready."))
    else:
        messages.success(request, _("The draft is being written again."))
    return redirect(_note_url(session))


@console_view()
@require_http_methods(["POST"])
def note_generate_view(request: HttpRequest, session_id: str) -> HttpResponse:
    """Asks for a first draft of an ended consultation that has none."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    try:
        note_generate(principal=principal, session=session)
    except Conflict:
        messages.error(request, _("A note is drafted once the consultation has ended."))
    else:
        messages.success(request, _("The draft is being written."))
    return redirect(_note_url(session))


@console_view()
@require_http_methods(["GET"])
def note_status(request: HttpRequest, session_id: str) -> HttpResponse:
    """Where the latest note's job is, for the panel's polling: status and
    counters only, no text (so not a note read to audit)."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    note = note_latest(principal=principal, session=session)
    if note is None:
        raise NotFound()
    return JsonResponse(
        {
            "status": note.status,
            "progress": note.progress,
            "version": note.version,
            "revision": note.revision,
            "attempts": note.attempts,
        }
    )


@console_view()
@require_http_methods(["POST"])
def segment_correction(request: HttpRequest, session_id: str) -> HttpResponse:
    """A clinician's correction of one final from the consultation's page:
    a new revision (the original text is kept), refused if the line was
    corrected since the page was loaded."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    revision = request.POST.get("revision", "")
    try:
        segment_correct(
            principal=principal,
            session=session,
            segment_id=request.POST.get("segment_id", ""),
            text=request.POST.get("text", ""),
            revision=int(revision) if revision.isdigit() else -1,
        )
    except RevisionConflict:
        messages.error(
            request, _("Someone corrected this line meanwhile. Check the latest text, then correct it again.")
        )
    except InvalidInput:
        messages.error(request, _("A corrected line cannot be empty."))
    else:
        messages.success(request, _("The correction is saved; the original text is kept."))
    return redirect("console:session_detail", session_id=session.pk)


@console_view()
@require_http_methods(["POST"])
def segment_confirmation(request: HttpRequest, session_id: str) -> HttpResponse:
    """A clinician confirms a flagged line as heard (its review flag clears),
    refused if the line was corrected since the page was loaded."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    revision = request.POST.get("revision", "")
    try:
        segment_confirm(
            principal=principal,
            session=session,
            segment_id=request.POST.get("segment_id", ""),
            revision=int(revision) if revision.isdigit() else -1,
        )
    except RevisionConflict:
        messages.error(request, _("Someone corrected this line meanwhile. Check the latest text, then confirm it."))
    except InvalidInput:
        messages.error(request, _("Reload the page, then confirm the line again."))
    else:
        messages.success(request, _("The line is confirmed as checked."))
    return redirect(f"{reverse('console:session_detail', args=[session.pk])}#review")


@console_view()
@require_http_methods(["POST"])
def session_speakers(request: HttpRequest, session_id: str) -> HttpResponse:
    """Who each speaker label is, from the consultation's page: one select
    per label heard (``role-<label>``); an empty choice leaves it unknown.
    Any choice replaces the first guess."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    posted = {key.removeprefix("role-"): value for key, value in request.POST.items() if key.startswith("role-")}
    # The form lists the labels heard; a role set over REST for a label not
    # heard yet (a mapping chosen when starting) is kept.
    kept = {label: role for label, role in (session.speaker_roles or {}).items() if label not in posted}
    roles = kept | {label: role for label, role in posted.items() if role}
    try:
        speaker_roles_set(principal=principal, session=session, roles=roles)
    except InvalidInput:
        messages.error(request, _("Choose a role from the list for each speaker."))
    else:
        messages.success(request, _("The speakers' roles are saved; downloads show them."))
    return redirect(f"{reverse('console:session_detail', args=[session.pk])}#speakers")


@console_view()
@require_http_methods(["POST"])
def session_consent(request: HttpRequest, session_id: str) -> HttpResponse:
    """Records the patient's consent from the consultation's page."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    form = ConsentForm(request.POST)
    if form.is_valid():
        try:
            consent_record(
                principal=principal, session=session, method=form.cleaned_data["method"], note=form.cleaned_data["note"]
            )
        except Conflict:
            messages.info(request, _("The patient's consent was already recorded."))
        else:
            messages.success(request, _("The patient's consent is recorded."))
    else:
        messages.error(request, _("Choose how the patient agreed."))
    return redirect("console:session_detail", session_id=session.pk)


@console_view()
@require_http_methods(["GET", "POST"])
def session_consent_withdraw(request: HttpRequest, session_id: str) -> HttpResponse:
    """The patient withdraws consent: after a confirmation, the consultation
    is ended and erased (any member may relay the patient's decision)."""
    principal = console_principal(request)
    session = access_session(principal, session_id)
    error, status = "", 200
    if request.method == "POST":
        try:
            consent_withdraw(principal=principal, session=session)
        except Conflict:
            error, status = _("The recording connection is still finishing. Try again in a few seconds."), 409
        except StorageUnavailable:
            error, status = _("The audio storage cannot be reached, so nothing was deleted. Try again later."), 503
        else:
            messages.success(
                request, _("Consent withdrawn: the consultation, its audio and its transcript were deleted.")
            )
            return redirect("console:session_list")
    return render(
        request,
        "console/session_consent_withdraw.html",
        _base_context(request, session=session, error=error),
        status=status,
    )


@console_view()
def session_live(request: HttpRequest, session_id: str) -> HttpResponse:
    principal = console_principal(request)
    session = access_session(principal, session_id)
    follow = session.status in OPEN_STATUSES
    # An ended session has nothing live to follow: show what was stored.
    segments = [] if follow else transcript_read(principal=principal, session=session, fmt="console-live")
    return render(
        request,
        "console/session_live.html",
        _base_context(
            request,
            session=session,
            segments=_lines(segments),
            follow=follow,
            live_path=f"/ws/v1/sessions/{session.pk}/live",
        ),
    )


@console_view(admin=True)
@require_http_methods(["GET", "POST"])
def session_delete(request: HttpRequest, session_id: str) -> HttpResponse:
    principal = console_principal(request)
    session = access_session(principal, session_id)
    error, status = "", 200
    if request.method == "POST":
        try:
            session_erase(principal=principal, session=session)
        except Conflict:
            error, status = _("This consultation is still live. Stop the recording first, then delete it."), 409
        except StorageUnavailable:
            error, status = _("The audio storage cannot be reached, so nothing was deleted. Try again later."), 503
        else:
            messages.success(request, _("The consultation, its audio and its transcript were deleted."))
            return redirect("console:session_list")
    return render(
        request,
        "console/session_delete.html",
        _base_context(request, session=session, error=error),
        status=status,
    )


@console_view(admin=True)
def dashboard(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    usage = quota_with_usage(clinic=principal.clinic)
    bars = [
        _bar(_("Sessions at the same time"), usage["max_concurrent_sessions"], unit="count"),
        _bar(_("Audio minutes this month"), usage["audio_minutes_per_month"], unit="minutes"),
        _bar(_("Storage"), usage["storage_bytes"], unit="bytes"),
    ]
    live = session_list(principal=principal, status=SessionStatus.LIVE)[:100]
    return render(request, "console/dashboard.html", _base_context(request, bars=bars, live_sessions=live))


def _bar(label: str, usage: dict, *, unit: str) -> dict[str, object]:
    used = float(usage.get("used") or 0)
    limit = float(usage.get("limit") or 0)
    percent = min(100.0, used * 100.0 / limit) if limit else 0.0
    level = "full" if percent >= 100 else "high" if percent >= 80 else ""
    return {"label": label, "used": used, "limit": limit, "percent": round(percent, 1), "unit": unit, "level": level}


@require_http_methods(["GET", "POST"])
def clinic_pick(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect(f"{settings.LOGIN_URL}?next={request.path}")
    memberships = list(memberships_of(request.user))
    if not memberships:
        return render(request, "console/no_clinic.html", status=403)
    next_url = request.POST.get("next") or request.GET.get("next") or "/"
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, require_https=request.is_secure()):
        next_url = "/"
    form = ClinicPickForm(
        request.POST or None,
        memberships=memberships,
        initial={"clinic": request.session.get(SESSION_CLINIC_KEY)},
    )
    if request.method == "POST" and form.is_valid():
        try:
            principal = principal_for_user(request.user, clinic_id=form.cleaned_data["clinic"])
        except NotFound:
            form.add_error("clinic", _("Choose one of your clinics."))
        else:
            request.session[SESSION_CLINIC_KEY] = str(principal.clinic.pk)
            return redirect(next_url)
    return render(
        request,
        "console/clinic_pick.html",
        {"form": form, "memberships": memberships, "next": next_url, "js_strings": js_catalog()},
    )
