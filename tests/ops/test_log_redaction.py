import json
import logging

from voiceai.logging import JsonFormatter


def _render(message: str, *args: object) -> dict:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, message, args, None)
    return json.loads(JsonFormatter().format(record))


def test_it_redacts_query_strings_of_logged_urls():
    line = _render('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/ws/v1/sessions/abc/stream?token=secret.tok")
    assert "secret.tok" not in line["event"]
    assert "/ws/v1/sessions/abc/stream?[redacted]" in line["event"]


def test_it_leaves_lines_without_a_query_alone():
    assert _render("connection open")["event"] == "connection open"
