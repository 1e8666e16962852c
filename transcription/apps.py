from django.apps import AppConfig


class TranscriptionConfig(AppConfig):
    name = "transcription"

    def ready(self) -> None:
        from sessions.live import producer_check_register
        from transcription import live_state

        # Looked up per call, so a test may replace live_state.producer_attached.
        producer_check_register(lambda **kw: live_state.producer_attached(**kw))
