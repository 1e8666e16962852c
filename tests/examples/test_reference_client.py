"""The reference client (``python -m examples.reference_client``) against a real
server process: upload, live output, resume after a dropped connection, and
the sha256 check of the stored audio.

Network faults are made by a small TCP proxy between client and server
(127.0.0.1 only): it cuts a connection mid-stream, or flips one audio byte
so the stored audio differs from the file.
"""

import asyncio
import contextlib
import hashlib
import re
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import pytest

from examples.reference_client import wav_sha256
from sessions.audio import wav_bytes
from sessions.models import ConsultationSession, TranscriptSegment
from tests.servers import REPO_ROOT, base_env, requires_shared_database, start_server

pytestmark = [pytest.mark.slow, requires_shared_database()]

AUDIO = Path(__file__).resolve().parent.parent / "fixtures" / "audio"
CONSULT = AUDIO / "consult_en.wav"  # 12.2 s, four sentences
HELLO = AUDIO / "hello_en.wav"  # 6.2 s: "the patient has a fever" · "my back hurts"
CLIENT_TIMEOUT = 60


def _pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


def _run_client(path: Path, url: str, api_key: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "examples.reference_client", str(path), "--url", url, "--api-key", api_key, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    )


def _session_id(stdout: str) -> str:
    match = re.search(r"^session ([0-9a-f-]{36}) ", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)


def _finals(stdout: str) -> list[str]:
    return re.findall(r"^\[\d\d:\d\d\.\d{3}-\d\d:\d\d\.\d{3}\] (.*)$", stdout, re.MULTILINE)


class FaultyProxy:
    """Forwards 127.0.0.1:<port> to the server in its own thread and loop.

    ``cut_after``: abort the first connection that has carried this many
    bytes of WebSocket frames upstream (a dropped network, as both ends see
    it). ``flip_at``: invert one byte of the first WebSocket connection's
    upstream frames at this offset (inside the first audio frame's payload).
    """

    def __init__(self, target_port: int, *, cut_after: int | None = None, flip_at: int | None = None) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.flip_at = flip_at
        self.cuts = 0
        self.flips = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "FaultyProxy":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        writers = (client_w, server_w)

        async def upstream() -> None:
            head = b""
            frames = -1  # bytes of WebSocket frames seen; -1 until the HTTP upgrade request has passed
            while data := await client_r.read(65536):
                if frames < 0:
                    head += data
                    if b"\r\n\r\n" in head and b"upgrade: websocket" in head.lower():
                        frames = len(head) - head.index(b"\r\n\r\n") - 4
                else:
                    start = frames
                    frames += len(data)
                    if self.flip_at is not None and not self.flips and start <= self.flip_at < frames:
                        data = bytearray(data)
                        data[self.flip_at - start] ^= 0xFF
                        data = bytes(data)
                        self.flips += 1
                    if self.cut_after is not None and not self.cuts and frames > self.cut_after:
                        self.cuts += 1
                        for writer in writers:
                            writer.transport.abort()
                        return
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                client_w.write(data)
                await client_w.drain()

        # When one side finishes, close both (no half-open connections).
        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        with contextlib.suppress(OSError, ConnectionError):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for writer in writers:
            writer.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture(scope="module")
def _module_fake_server(django_db_setup, django_db_blocker, tmp_path_factory):
    # One server for the module (start-up is seconds); each test still gets
    # its own committed rows through ``transactional_db``.
    with django_db_blocker.unblock():
        server = start_server(env=base_env(tmp_path_factory.mktemp("media"), TRANSCRIPTION_ENGINE="fake"))
    yield server
    server.kill()


@pytest.fixture
def fake_server(transactional_db, _module_fake_server):
    return _module_fake_server


def test_it_streams_a_file_and_verifies_the_stored_audio(fake_server, api_key_a_clinician):
    done = _run_client(CONSULT, fake_server.url, api_key_a_clinician, "--speed", "8", "--external-ref", "visit-42")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audio verified" in done.stdout
    session = ConsultationSession.objects.get(pk=_session_id(done.stdout))
    # The server's hash is of its canonical WAV; the client's own hash agrees with it.
    pcm = _pcm(CONSULT)
    assert session.audio_sha256 == wav_sha256(pcm, 16000)
    assert wav_sha256(pcm, 16000) == hashlib.sha256(wav_bytes(pcm, 16000)).hexdigest()
    assert session.external_ref == "visit-42"
    finals = _finals(done.stdout)
    stored = list(TranscriptSegment.objects.filter(session=session, is_final=True).order_by("start_ms"))
    assert finals and [s.text for s in stored] == finals


def test_it_resumes_after_a_dropped_connection_without_losing_audio(fake_server, api_key_a_clinician):
    pcm = _pcm(CONSULT)
    # Cut the producer socket after 42 frames (4.2 s of audio, 8-byte frame
    # headers) have gone up: the final of 2-4 s came at 4 s and most likely
    # still waits for the server's next flush (1 s), which then happens
    # after the drop; the client gets it on resume (finals_received).
    with FaultyProxy(fake_server.port, cut_after=42 * (3200 + 8)) as proxy:
        done = _run_client(CONSULT, proxy.url, api_key_a_clinician, "--speed", "4")
    assert proxy.cuts == 1
    assert done.returncode == 0, done.stdout + done.stderr
    assert "connection lost" in done.stdout
    resumed = [int(n) for n in re.findall(r"resumed at byte (\d+)", done.stdout)]
    assert len(resumed) == 1 and 0 < resumed[0] <= 42 * 3200
    assert "audio verified" in done.stdout
    session = ConsultationSession.objects.get(pk=_session_id(done.stdout))
    assert session.audio_bytes == len(pcm)
    assert session.audio_sha256 == wav_sha256(pcm, 16000)
    stored = TranscriptSegment.objects.filter(session=session, is_final=True).order_by("start_ms")
    ids = list(stored.values_list("segment_id", flat=True))
    assert ids and len(ids) == len(set(ids))  # no final stored twice
    # The finals the client received over both connections are exactly the
    # stored ones: none lost at the cut, none shown twice.
    assert _finals(done.stdout) == list(stored.values_list("text", flat=True))


def test_it_survives_a_killed_server_and_resumes_on_its_replacement(
    transactional_db, server_factory, api_key_a_clinician
):
    first = server_factory(env={"TRANSCRIPTION_ENGINE": "fake"})
    args = [str(CONSULT), "--url", first.url, "--api-key", api_key_a_clinician, "--speed", "3"]
    client = subprocess.Popen(
        [sys.executable, "-m", "examples.reference_client", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        while not lines or not lines[-1].startswith("["):  # run until the first final has arrived
            line = client.stdout.readline()
            assert line, "".join(lines) + client.stderr.read()
            lines.append(line)
        first.kill()  # SIGKILL mid-stream: no flush, no goodbye
        server_factory(env={"TRANSCRIPTION_ENGINE": "fake"}, port=first.port)  # a new process, same address
        out, err = client.communicate(timeout=CLIENT_TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
    stdout = "".join(lines) + out
    assert client.returncode == 0, stdout + err
    assert "connection lost" in stdout and "resumed at byte" in stdout
    assert "audio verified" in stdout
    session = ConsultationSession.objects.get(pk=_session_id(stdout))
    assert session.audio_sha256 == wav_sha256(_pcm(CONSULT), 16000)
    ids = list(TranscriptSegment.objects.filter(session=session, is_final=True).values_list("segment_id", flat=True))
    assert len(ids) == len(set(ids)) == len(_finals(stdout))


def test_it_exits_non_zero_when_the_stored_audio_differs(fake_server, api_key_a_clinician):
    # One byte inside the first audio frame's payload (8-byte frame header) is inverted on the way.
    with FaultyProxy(fake_server.port, flip_at=8 + 1000) as proxy:
        done = _run_client(HELLO, proxy.url, api_key_a_clinician, "--speed", "8")
    assert proxy.flips == 1
    assert done.returncode == 2, done.stdout + done.stderr
    assert "AUDIO MISMATCH" in done.stdout


def test_it_reports_a_bad_api_key_and_exits_non_zero(fake_server):
    done = _run_client(HELLO, fake_server.url, "vai_0000000000000000_not-a-key")
    assert done.returncode == 1
    assert "401" in done.stderr


@pytest.fixture(scope="module")
def _module_local_server(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        env = base_env(tmp_path_factory.mktemp("media"), TRANSCRIPTION_ENGINE="local", LOCAL_ENGINE_MAX_DECODERS="1")
        server = start_server(env=env)
    yield server
    server.kill()


@pytest.fixture
def local_server(transactional_db, _module_local_server):
    return _module_local_server


def test_it_stops_with_the_servers_reason_when_the_engine_cannot_do_the_language(local_server, api_key_a_clinician):
    # The local engine is English-only: the session is refused before any audio.
    done = _run_client(HELLO, local_server.url, api_key_a_clinician, "--speed", "8", "--language", "ja-JP")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "language_not_supported" in done.stderr
    assert "resuming" not in done.stdout


@pytest.fixture
def refusing_server(transactional_db, tmp_path):
    server = start_server(env=base_env(tmp_path / "media", TRANSCRIPTION_ENGINE="fake", FAKE_ENGINE_MODE="refuse"))
    yield server
    server.kill()


def test_it_stops_with_the_servers_reason_when_retrying_cannot_help(refusing_server, api_key_a_clinician):
    # The engine refuses mid-way for good: a non-retryable Error, no resume.
    done = _run_client(CONSULT, refusing_server.url, api_key_a_clinician, "--speed", "8")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "engine_refused" in done.stderr
    assert "resuming" not in done.stdout
    session_id = _session_id(done.stdout)
    for _ in range(40):  # failed right after the socket closed
        session = ConsultationSession.objects.get(pk=session_id)
        if session.status != "live":
            break
        time.sleep(0.25)
    assert (session.status, session.failure_reason) == ("failed", "engine_refused")


def test_it_recognises_the_spoken_words_through_the_whole_pipeline(local_server, api_key_a_clinician):
    done = _run_client(HELLO, local_server.url, api_key_a_clinician, "--speed", "2", "--language", "en-US")
    assert done.returncode == 0, done.stdout + done.stderr
    words = " ".join(_finals(done.stdout)).split()
    assert "patient" in words and "hurts" in words
