"""Where a session's objects live in storage: ``{clinic_id}/{session_id}/``.

One place for the layout so the pipeline, erasure, export and the S3/KMS
policy all agree.
"""

from sessions.models import ConsultationSession


def session_prefix(session: ConsultationSession) -> str:
    return f"{session.clinic_id}/{session.id}/"


def audio_part_key(session: ConsultationSession, index: int) -> str:
    # Zero-padded so a lexical listing is in stream order.
    return f"{session_prefix(session)}parts/{index:08d}.pcm"


def audio_wav_key(session: ConsultationSession) -> str:
    return f"{session_prefix(session)}audio.wav"


def transcript_json_key(session: ConsultationSession) -> str:
    return f"{session_prefix(session)}transcript.json"
