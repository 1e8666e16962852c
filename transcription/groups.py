"""Channel-layer group names and the few events sent through them.

Only transcript and control events travel through the channel layer, never
raw audio: channels-redis buffers a bounded number of messages per channel
and expires them.
"""


def session_group(clinic_id: object, session_id: object) -> str:
    # Group names allow letters, digits, hyphens, underscores and periods.
    return f"clinic.{clinic_id}.session.{session_id}"


def live_state_key(clinic_id: object, session_id: object) -> str:
    """Redis key of a session's live state (the design's key layout)."""
    return f"clinic:{clinic_id}:session:{session_id}"
