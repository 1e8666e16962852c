"""Names of a session's events on the channel layer, owned here so the
services that publish them and the sockets that listen agree.

Only transcript and control events travel through the channel layer, never
raw audio: channels-redis buffers a bounded number of messages per channel
and expires them.
"""

# Published after a session was ended (REST, admin, console, reaper) or
# sealed by its producer: every socket of the session closes.
SESSION_ENDED = "session.ended"


def session_group(clinic_id: object, session_id: object) -> str:
    # Group names allow letters, digits, hyphens, underscores and periods.
    return f"clinic.{clinic_id}.session.{session_id}"
