"""Request body limits on the real server (voiceai.body_limits): decided
from the headers before Django spools the body, before authentication."""

import json
import socket

import pytest

from tests.servers import requires_shared_database

pytestmark = [requires_shared_database(), pytest.mark.slow]


def _raw(server, head: str, body_chunks: list[bytes] = (), timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """Send a hand-made request, return (status, headers, body). Only the
    given body chunks are sent, whatever the headers promise."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed early: read its answer
        data = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data:
                head_part, _, rest = data.partition(b"\r\n\r\n")
                headers = _headers(head_part)
                if "content-length" in headers and len(rest) >= int(headers["content-length"]):
                    break
    head_part, _, rest = data.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ", 2)[1])
    return status, _headers(head_part), rest


def _headers(head: bytes) -> dict:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _chunked(*parts: bytes) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]


def test_it_refuses_a_huge_content_length_before_reading_or_authenticating(transactional_db, server_factory):
    server = server_factory()
    status, headers, body = _raw(
        server,
        "POST /api/v1/sessions/ HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        "Content-Length: 5000000000\n",
        [b"x" * 1024],
    )
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert headers["content-type"] == "application/json"


def test_it_refuses_a_large_body_to_the_health_probe(transactional_db, server_factory):
    server = server_factory()
    status, _, body = _raw(server, "POST /healthz HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 1400000000\n")
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"


def test_it_cuts_off_a_chunked_body_at_the_limit(transactional_db, server_factory):
    server = server_factory(env={"DATA_UPLOAD_MAX_MEMORY_SIZE": "65536"})
    status, _, body = _raw(
        server,
        "POST /api/v1/sessions/ HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        "Transfer-Encoding: chunked\n",
        _chunked(*([b" " * 16384] * 8)),
    )
    assert status == 413
    assert json.loads(body)["error"]["details"] == {"max_bytes": 65536}


def test_it_refuses_an_oversize_upload_by_its_content_length(transactional_db, server_factory, api_key_a_clinician):
    server = server_factory(env={"BATCH_UPLOAD_MAX_BYTES": "100000"})
    status, _, body = _raw(
        server,
        "POST /api/v1/transcriptions/ HTTP/1.1\nHost: 127.0.0.1\n"
        f"Authorization: Api-Key {api_key_a_clinician}\n"
        "Content-Type: multipart/form-data; boundary=x\nContent-Length: 900000000\n",
    )
    assert status == 413
    assert json.loads(body)["error"] == {
        "code": "upload_too_large",
        "message": "The upload is larger than BATCH_UPLOAD_MAX_BYTES.",
        "details": {"max_bytes": 100000},
    }


def test_it_asks_for_a_length_on_chunked_uploads(transactional_db, server_factory, api_key_a_clinician):
    server = server_factory()
    status, _, body = _raw(
        server,
        "POST /api/v1/transcriptions/ HTTP/1.1\nHost: 127.0.0.1\n"
        f"Authorization: Api-Key {api_key_a_clinician}\n"
        "Content-Type: multipart/form-data; boundary=x\nTransfer-Encoding: chunked\n",
        _chunked(b"--x\r\n"),
    )
    assert status == 411
    assert json.loads(body)["error"]["code"] == "length_required"


def test_it_parses_a_chunked_json_body(transactional_db, server_factory, api_key_a_clinician):
    server = server_factory()
    payload = json.dumps({"language": "ja-JP", "sample_rate": 8000, "external_ref": "chunked-1"}).encode()
    status, _, body = _raw(
        server,
        "POST /api/v1/sessions/ HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        f"Authorization: Api-Key {api_key_a_clinician}\nTransfer-Encoding: chunked\n",
        _chunked(payload[:10], payload[10:]),
    )
    assert status == 201, body
    created = json.loads(body)
    assert (created["language"], created["sample_rate"], created["external_ref"]) == ("ja-JP", 8000, "chunked-1")
