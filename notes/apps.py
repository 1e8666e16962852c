from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "notes"
    verbose_name = "Clinical notes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A session whose transcript is complete (ended, sealed, a batch job
        # finished) gets its note draft: sessions says so with a signal sent
        # after commit, so it never imports notes (the layers' direction).
        from notes.jobs import note_request_on_transcript_completed
        from sessions.events import transcript_completed

        transcript_completed.connect(note_request_on_transcript_completed, dispatch_uid="notes.request_on_completed")
