"""Interface strings the console's JavaScript needs, translated by Django.

They are embedded in each page as JSON (``json_script``), so the modules need
no extra request and no JavaScript catalogue view; ``makemessages`` finds
them here like any other string.
"""

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

# Model choices are not marked for translation; the console shows these.
STATUS_LABELS = {
    "created": gettext_lazy("Not started"),
    "live": gettext_lazy("Live"),
    "ended": gettext_lazy("Ended"),
    "failed": gettext_lazy("Failed"),
}
# Speaker roles as the console shows them (exports use the session's own
# language instead: sessions.formats.ROLE_LABELS).
ROLE_LABELS = {
    "clinician": gettext_lazy("Clinician"),
    "patient": gettext_lazy("Patient"),
    "family": gettext_lazy("Family"),
    "other": gettext_lazy("Other"),
}
LANGUAGE_LABELS = {
    "ja-JP": gettext_lazy("Japanese"),
    "en-US": gettext_lazy("English"),
}


def js_catalog() -> dict[str, str]:
    """Key -> translated text; ``{name}`` placeholders are filled in JS."""
    return {
        "provisional": _("Provisional — may still change"),
        "copied": _("Copied to the clipboard."),
        "copy_failed": _("Could not copy. Select the text and copy it by hand."),
        "saved_note": _("The recording and its transcript are saved."),
        "state_idle": _("Not recording"),
        "state_starting": _("Starting…"),
        "state_connecting": _("Connecting…"),
        "state_live": _("Recording"),
        "state_reconnecting": _("Connection lost — reconnecting. Your audio is kept and will be sent."),
        "state_finishing": _("Saving…"),
        "state_closed": _("Saved"),
        "state_failed": _("Stopped because of an error"),
        "state_watching": _("Following live"),
        "state_ended": _("The consultation has ended"),
        "queued": _(
            "All transcription slots are busy. You are number {position} in the queue; "
            "your audio is recorded and will be transcribed."
        ),
        "warn_generic": _("Note from the server: {message}"),
        # Warning codes of the producer socket (transcription/stream.py, resilient.py).
        "warn_engine_restarted": _("The transcription service was restarted. No audio is lost."),
        "warn_engine_reconnecting": _("The transcription service had a problem and is reconnecting. No audio is lost."),
        "warn_storage_retry": _("Saving audio is delayed; it is kept and saving is retried."),
        "err_insecure_context": _(
            "The microphone can only be used over HTTPS or on this computer (localhost). Ask your administrator."
        ),
        "err_mic_denied": _("Microphone access was refused. Allow it in the browser's address bar and try again."),
        "err_no_device": _("No microphone was found. Connect one and try again."),
        "err_quota": _("Your clinic has reached its limit of recordings at the same time. Try again in a moment."),
        "err_minutes": _("Your clinic's audio minutes for this month are used up. Ask your clinic administrator."),
        "err_taken_over": _("This consultation is now being recorded on another screen. Recording here stopped."),
        "err_not_found": _("This consultation was not found."),
        "err_conflict": _("This consultation has already ended or is being recorded on another screen."),
        "err_protocol": _("The server refused the connection (protocol error)."),
        "err_token": _("Your sign-in could not be confirmed for the recording. Sign in again."),
        "err_gave_up": _("Could not reach the server for several minutes. Check the network and start again."),
        "err_resume_gap": _("The server could not continue this recording. Start a new one."),
        "err_network": _("The server cannot be reached. Check the network."),
        "err_suspended": _("This clinic is suspended. Contact the platform operator."),
        "err_language": _(
            "This clinic's speech engine cannot transcribe the chosen language (the offline engine recognises "
            "English only). Choose English, or ask a clinic administrator to switch the clinic to the AWS engine."
        ),
        "err_engine_refused": _(
            "The transcription service refused this recording, so it was ended. The audio stored so far is kept; "
            "start a new recording."
        ),
        "leave_confirm": _(
            "A recording is running. If you leave this page it pauses: the audio so far is kept, and you can "
            "resume it from the consultation's page within {minutes} minutes; after that it is ended and saved. "
            "Leave this page?"
        ),
        "err_consent": _("Record the patient's consent before recording this consultation."),
        "note_generating": _("Writing the draft…"),
        "evidence_shown_one": _("The transcript line this sentence is drawn from is marked."),
        "evidence_shown_many": _("The {n} transcript lines this sentence is drawn from are marked."),
        "evidence_missing": _("This sentence's evidence lines are not on the page."),
        "evidence_no_audio": _("The audio cannot be played here; the evidence lines are marked."),
        "err_generic": _("Something went wrong."),
        "err_generic_detail": _("Something went wrong: {detail}"),
    }
