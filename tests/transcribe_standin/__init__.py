"""A local Amazon Transcribe Streaming stand-in (HTTP/2 + TLS + event
stream) and its pytest fixtures. See ``server.py``."""

from tests.transcribe_standin.certs import make_self_signed_cert
from tests.transcribe_standin.server import RecordedRequest, Scenario, TranscribeStandin

__all__ = ["RecordedRequest", "Scenario", "TranscribeStandin", "make_self_signed_cert"]
