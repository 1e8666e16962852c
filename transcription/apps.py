from django.apps import AppConfig


def relay_session_ended(sender: object, *, clinic_id: object, session_id: object, **kwargs: object) -> None:
    """A session ended anywhere reaches its producer (seal and close) and its
    viewers (End) through the session relay."""
    from sessions.events import SESSION_ENDED
    from transcription.relay import control_log, publish_sync

    publish_sync(clinic_id, control_log(session_id), {"type": SESSION_ENDED})
    publish_sync(clinic_id, session_id, {"type": SESSION_ENDED})


class TranscriptionConfig(AppConfig):
    name = "transcription"

    def ready(self) -> None:
        from sessions.events import session_ended
        from sessions.live import producer_check_register, streams_count_register
        from transcription import live_state

        # Looked up per call, so a test may replace live_state.producer_attached.
        producer_check_register(lambda **kw: live_state.producer_attached(**kw))
        session_ended.connect(relay_session_ended, dispatch_uid="transcription.relay_session_ended")
        streams_count_register(lambda **kw: live_state.streams_in_use_now(**kw))
        from sessions.engine_support import engine_languages_register
        from transcription.engines import engine_languages

        engine_languages_register(engine_languages)
