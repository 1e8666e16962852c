"""The decoder side of the local engine: runs in a worker process started by
``transcription.engines.local`` and talks to it over a socket (pickled
request lists in, event tuples out). No Django, no asyncio here.

One worker holds one pocketsphinx ``Decoder`` (the model loads once per
process) and serves one stream at a time; a "start" request resets it for
the next stream.
"""

from __future__ import annotations

import contextlib
import signal
import warnings
from multiprocessing.connection import Connection
from typing import Any

MODEL_SAMPLE_RATE = 16000  # the en-US acoustic model's rate; other rates are resampled
MAX_UTTERANCE_MS = 20_000
_FILLERS = ("<s>", "</s>", "<sil>", "[")


class Recognizer:
    """One stream's recognition state inside a worker process. Returns
    events as tuples (see ``_event_tuple``) on the session clock."""

    def __init__(self, decoder: Any, *, sample_rate: int, start_offset_ms: int) -> None:
        from pocketsphinx import Endpointer

        self.decoder = decoder
        self.endpointer = Endpointer(sample_rate=MODEL_SAMPLE_RATE)
        self.frame_bytes: int = self.endpointer.frame_bytes
        self.frame_ms = self.endpointer.frame_length * 1000.0
        self.sample_rate = sample_rate
        self.offset_ms = start_offset_ms
        self.rest = b""  # less than one endpointer frame, kept for the next batch
        self.rate_state: Any = None
        self.in_utt = False
        self.utt_start_ms = 0.0
        self.cursor_ms = 0.0  # end of the last speech frame given to the decoder (stream clock)
        self.last_end_ms = 0.0
        self.revision = 0
        self.partial_text = ""

    def audio(self, pcm: bytes) -> list[tuple]:
        if self.sample_rate != MODEL_SAMPLE_RATE:
            pcm = self._resample(pcm)
        data = self.rest + pcm
        usable = len(data) - len(data) % self.frame_bytes
        self.rest = data[usable:]
        events: list[tuple] = []
        ep = self.endpointer
        for i in range(0, usable, self.frame_bytes):
            was_in_speech = ep.in_speech
            speech = ep.process(data[i : i + self.frame_bytes])
            if speech is None:
                continue
            if not was_in_speech:
                self.cursor_ms = ep.speech_start * 1000.0
            if not self.in_utt:
                self._start_utt()
            self.decoder.process_raw(speech)
            self.cursor_ms += self.frame_ms
            if not ep.in_speech:
                events.extend(self._end_utt(ep.speech_end * 1000.0))
            elif self.cursor_ms - self.utt_start_ms >= MAX_UTTERANCE_MS:
                # Speech without a pause: cut it, as partial and final costs grow with length.
                events.extend(self._end_utt(self.cursor_ms))
        if self.in_utt:
            events.extend(self._partial())
        return events

    def finalize(self) -> list[tuple]:
        """End the current utterance now; speech that goes on starts a new one."""
        return self._end_utt(self.cursor_ms) if self.in_utt else []

    def end(self) -> list[tuple]:
        ep = self.endpointer
        if ep.in_speech:
            speech = ep.end_stream(self.rest)
            self.rest = b""
            if speech:
                if not self.in_utt:
                    self._start_utt()
                self.decoder.process_raw(speech)
                self.cursor_ms += len(speech) / 2 / MODEL_SAMPLE_RATE * 1000.0
        return self.finalize()

    def close(self) -> None:
        if self.in_utt:
            self.decoder.end_utt()
            self.in_utt = False

    # --- helpers ---

    def _resample(self, pcm: bytes) -> bytes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop  # C, stateful across chunks; deprecated but present in 3.11/3.12
        out, self.rate_state = audioop.ratecv(pcm, 2, 1, self.sample_rate, MODEL_SAMPLE_RATE, self.rate_state)
        return out

    def _start_utt(self) -> None:
        self.decoder.start_utt()
        self.in_utt = True
        self.utt_start_ms = max(self.cursor_ms, self.last_end_ms)
        self.revision = 0
        self.partial_text = ""

    def _partial(self) -> list[tuple]:
        hyp = self.decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if not text or text == self.partial_text:
            return []
        self.partial_text = text
        event = self._event_tuple(False, self.cursor_ms, text, None)
        self.revision += 1
        return [event]

    def _end_utt(self, end_ms: float) -> list[tuple]:
        self.decoder.end_utt()
        self.in_utt = False
        end_ms = max(end_ms, self.utt_start_ms)
        self.last_end_ms = end_ms
        hyp = self.decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if not text and not self.partial_text:
            return []  # noise that never showed as text: nothing to retire
        # An empty final still retires the partials a client is showing.
        return [self._event_tuple(True, end_ms, text, self._confidence() if text else None)]

    def _confidence(self) -> float | None:
        # Mean word posterior; fillers and silences carry no information.
        probs = [s.prob for s in self.decoder.seg() if not s.word.startswith(_FILLERS)]
        return round(min(1.0, sum(probs) / len(probs)), 3) if probs else None

    def _event_tuple(self, is_final: bool, end_ms: float, text: str, confidence: float | None) -> tuple:
        start = self.offset_ms + round(self.utt_start_ms)
        end = self.offset_ms + round(end_ms)
        return (f"l-{start}", self.revision, is_final, start, max(start, end), text, confidence)


def worker_main(fd: int) -> None:  # pragma: no cover - runs in the child process
    """A decoder process: load the model once, then serve requests until the
    socket closes (the server process exited or died, even by SIGKILL)."""
    from pocketsphinx import Decoder

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    conn = Connection(fd)
    decoder = Decoder(loglevel="FATAL")
    # The cepstral mean adapts to the speaker and carries over between
    # utterances; a new stream starts from the model's, as a fresh decoder would.
    initial_cmn = decoder.get_cmn(False)
    recognizer: Recognizer | None = None
    conn.send(("ready",))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: list[tuple] = []
            for op, arg in request:
                if op == "start":
                    if recognizer is not None:
                        recognizer.close()
                    decoder.set_cmn(initial_cmn)
                    recognizer = Recognizer(decoder, sample_rate=arg[0], start_offset_ms=arg[1])
                elif recognizer is None:
                    raise RuntimeError("no stream started")
                elif op == "audio":
                    reply.extend(recognizer.audio(arg))
                elif op == "finalize":
                    reply.extend(recognizer.finalize())
                elif op == "end":
                    reply.extend(recognizer.end())
        except Exception as exc:  # reported to the stream, which raises EngineError
            recognizer = None
            with contextlib.suppress(Exception):
                decoder.end_utt()
            reply_msg: tuple = ("error", type(exc).__name__)
        else:
            reply_msg = ("ok", reply)
        try:
            conn.send(reply_msg)
        except OSError:  # the server process is gone
            return
