"""A session's events that other layers act on, owned here so the services
that send them and the sockets that act on them agree.

``sessions`` sends them once the change is committed; the realtime layer
(transcription) relays them to the session's live sockets through the
session relay. A signal keeps the dependency one way (transcription →
sessions): sessions never imports how sockets are told.
"""

from django.dispatch import Signal

# Published after a session was ended (REST, admin, console, reaper) or
# sealed by its producer: every socket of the session closes.
SESSION_ENDED = "session.ended"

# Sent after commit with clinic_id and session_id when a session was ended.
session_ended = Signal()

# Sent after commit with clinic_id and session_id when a session's
# transcript is complete or may have gained its last finals: the session was
# ended, sealed by its producer, or its batch job finished. Possibly more
# than once per session; receivers are idempotent (``notes`` drafts a note).
transcript_completed = Signal()
