"""The load of ``make soak`` (``bench.loadgen`` mode ``soak``): a clinic day
compressed into an hour, on the load generator's own core.

``producers`` slots. A share of them (``long_share``) keeps one session for
the whole run — the long consultation whose per-stream state must not grow
— and the others churn: each session lasts a random ``session_minutes``
span, ends with ``CloseStream`` (the server seals it: WAV, transcript,
Metadata) and the slot creates the next one. Sessions are created the way a
clinic's client creates them, over REST with the clinic's API key
(``POST /api/v1/sessions/``, ``POST .../stream-token/``), so REST requests,
database connections and per-session server state come and go all run long.
A share of sessions (``viewer_share``) also has a viewer on ``/live``.

The frames, sockets and message parsing are ``bench.loadgen``'s
(``Stream``, ``bench.wsclient``); what differs is the bookkeeping: a run of
an hour at 300 streams sends ~10 million frames, so instead of a list entry
per frame each stream keeps only the send times of the frames whose reply
is still awaited, and latencies go into the current window, emitted and
dropped every ``interval`` seconds as one ``SAMPLE {json}`` line.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bench.loadgen import (
    _FINAL,
    _K_TEXT,
    _T_END,
    _T_ERROR,
    _T_TRANSCRIPT,
    AUDIO_FRAME,
    CLOSE_STREAM_FRAME,
    FRAME_BYTES,
    FRAME_MS,
    Stream,
    Totals,
    _int_after,
    _str_after,
    _summary_ms,
)
from bench.wsclient import HandshakeRejected, ws_connect

# A reply not back after this long counts as missing (and stops being awaited).
MISSING_AFTER_S = 5.0


@dataclass
class Window:
    """What happened since the last SAMPLE line."""

    producer: list[float] = field(default_factory=list)
    viewer: list[float] = field(default_factory=list)
    send_late_max: float = 0.0
    missing: int = 0
    viewer_missing: int = 0


@dataclass
class Counts:
    """Cumulative over the run."""

    sessions_started: int = 0
    sessions_ended: int = 0  # Metadata received: the server sealed it
    sessions_failed: int = 0
    viewers_started: int = 0
    viewers_ended: int = 0  # the viewer got End
    rest_errors: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    finals: int = 0
    unanswered_at_close: int = 0


class SoakStream(Stream):
    """A ``Stream`` whose memory does not grow with the stream's length."""

    __slots__ = ("counts", "metadata", "pending", "view_pending", "window_ref")

    def __init__(self, spec: dict[str, Any], totals: Totals, window_ref: list[Window], counts: Counts) -> None:
        super().__init__(spec, totals)
        self.window_ref = window_ref  # [current window]: swapped by the sampler
        self.counts = counts
        self.pending: dict[int, float] = {}
        self.view_pending: dict[int, float] = {}
        self.metadata = False

    def _index(self, payload: bytes) -> int:
        offset = _int_after(payload, _K_TEXT)
        if offset is None:
            self.totals.unparsed += 1
            return -1
        return (offset - self.resume_from) // FRAME_BYTES - 1

    def on_producer_text(self, payload: bytes, now: float) -> None:
        if _T_TRANSCRIPT in payload:
            if _FINAL[0] in payload or _FINAL[1] in payload:
                self.counts.finals += 1
                return
            sent = self.pending.pop(self._index(payload), None)
            if sent is not None:
                self.window_ref[0].producer.append(time.perf_counter() - sent)
            return
        if b'"Metadata"' in payload:
            self.metadata = True
        super().on_producer_text(payload, now)

    def on_viewer_text(self, payload: bytes, now: float) -> None:
        if _T_TRANSCRIPT in payload:
            if _FINAL[0] in payload or _FINAL[1] in payload:
                return
            sent = self.view_pending.pop(self._index(payload), None)
            if sent is not None:
                self.window_ref[0].viewer.append(time.perf_counter() - sent)
        elif _T_END in payload:
            self.viewer_ended = True
        elif _T_ERROR in payload:
            self.totals.error("viewer-server:" + _str_after(payload, b'"code":'))

    def _tick(self) -> None:
        if self.stopped or self.conn is None or self.conn.closed:
            return
        now = time.perf_counter()
        self.conn.transport.write(AUDIO_FRAME)
        k = self.frames_sent
        self.pending[k] = now
        if self.viewer is not None and not self.viewer.closed:
            self.view_pending[k] = now
        window = self.window_ref[0]
        late = self.loop.time() - self.next_at
        if late > window.send_late_max:
            window.send_late_max = late
        self.frames_sent += 1
        self.counts.frames += 1
        self.next_at = self.start_at + self.frames_sent * (FRAME_MS / 1000)
        self.loop.call_at(self.next_at, self._tick)

    def expire(self, now: float) -> None:
        """Replies awaited longer than MISSING_AFTER_S count as missing."""
        window = self.window_ref[0]
        for awaited, attr in ((self.pending, "missing"), (self.view_pending, "viewer_missing")):
            old = [k for k, t in awaited.items() if now - t > MISSING_AFTER_S]
            for k in old:
                del awaited[k]
            setattr(window, attr, getattr(window, attr) + len(old))


def _post(port: int, path: str, api_key: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = json.dumps(body or {}).encode()
        headers = {"Authorization": f"Api-Key {api_key}", "Content-Type": "application/json", "Host": "127.0.0.1"}
        conn.request("POST", path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else {})
    finally:
        conn.close()


def create_session(port: int, api_key: str, *, viewer: bool) -> tuple[str, str, str | None]:
    """A new session (its answer carries the producer's stream token) and,
    for a viewer, one more token: tokens are single-use. Blocking: run it
    in a thread."""
    status, body = _post(
        port, "/api/v1/sessions/", api_key, {"sample_rate": 16000, "language": "en-US", "consent_method": "verbal"}
    )
    if status != 201:
        raise RuntimeError(f"create:{status}")
    sid, producer_token = str(body["id"]), body["stream_token"]
    viewer_token = None
    if viewer:
        status, body = _post(port, f"/api/v1/sessions/{sid}/stream-token/", api_key, None)
        if status != 200:
            raise RuntimeError(f"token:{status}")
        viewer_token = body["stream_token"]
    return sid, producer_token, viewer_token


async def _slot(
    index: int,
    spec: dict[str, Any],
    *,
    long_lived: bool,
    ends_at: float,
    start_delay: float,
    totals: Totals,
    window_ref: list[Window],
    counts: Counts,
    live: set[SoakStream],
    rng: random.Random,
) -> None:
    loop = asyncio.get_running_loop()
    port, api_key, origin = spec["port"], spec["api_key"], spec["origin"]
    lo, hi = spec["session_minutes"]
    viewer_share = float(spec["viewer_share"])
    await asyncio.sleep(start_delay)
    first = True
    while loop.time() < ends_at - 5:
        if long_lived:
            length = ends_at - loop.time()
        else:
            length = 60 * rng.uniform(lo, hi)
            if first:  # desynchronise the slots: the first session is cut anywhere
                length *= rng.random()
        first = False
        with_viewer = rng.random() < viewer_share
        try:
            sid, ptoken, vtoken = await loop.run_in_executor(
                None, lambda v=with_viewer: create_session(port, api_key, viewer=v)
            )
        except (RuntimeError, OSError, http.client.HTTPException, KeyError, ValueError) as exc:
            key = str(exc)[:40] or type(exc).__name__
            counts.rest_errors[key] = counts.rest_errors.get(key, 0) + 1
            await asyncio.sleep(1.0)
            continue
        stream = SoakStream({}, totals, window_ref, counts)
        counts.sessions_started += 1
        base = f"/ws/v1/sessions/{sid}"
        try:
            if vtoken is not None:
                stream.viewer = await ws_connect(
                    "127.0.0.1",
                    port,
                    f"{base}/live?token={quote(vtoken)}",
                    stream.on_viewer_text,
                    stream.on_viewer_close,
                    origin=origin,
                    timeout=60,
                )
                counts.viewers_started += 1
            stream.conn = await ws_connect(
                "127.0.0.1",
                port,
                f"{base}/stream?token={quote(ptoken)}",
                stream.on_producer_text,
                stream.on_close,
                origin=origin,
                timeout=60,
            )
        except HandshakeRejected as exc:
            totals.error(f"connect_rejected:{str(exc)[:40]}")
        except (TimeoutError, OSError) as exc:
            totals.error(f"connect_failed:{type(exc).__name__}")
        if stream.conn is None:
            counts.sessions_failed += 1
            if stream.viewer is not None:
                stream.viewer.close()
            await asyncio.sleep(1.0)
            continue
        deadline = loop.time() + 10
        while not stream.begun and not stream.conn.closed and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        live.add(stream)
        stream.start(loop.time())
        # Stream until the session's length is up (or the connection drops).
        until = min(ends_at, loop.time() + length)
        while loop.time() < until and not stream.conn.closed:  # noqa: ASYNC110
            await asyncio.sleep(min(1.0, max(0.0, until - loop.time())))
        # At the run's end every live session ends at once, 20 % of them an
        # hour long: their seals queue behind each other, so give them the
        # time a storm of seals takes rather than count them failed.
        await _end_session(stream, timeout=FINAL_END_TIMEOUT if loop.time() >= ends_at else 30.0)
        live.discard(stream)
        counts.unanswered_at_close += len(stream.pending)
        if stream.metadata:
            counts.sessions_ended += 1
        else:
            counts.sessions_failed += 1
        if stream.viewer is not None:
            counts.viewers_ended += 1 if stream.viewer_ended else 0
            stream.viewer.close()
        if stream.conn is not None:
            stream.conn.close()


FINAL_END_TIMEOUT = 300.0


async def _end_session(stream: SoakStream, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    """CloseStream, then wait for the producer's close and the viewer's End."""
    stream.stopped = True
    if stream.conn is not None and not stream.conn.closed:
        stream.conn.send_raw(CLOSE_STREAM_FRAME)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        producer_done = stream.conn is None or stream.conn.closed
        viewer_done = stream.viewer is None or stream.viewer.closed or stream.viewer_ended
        if producer_done and viewer_done:
            return
        await asyncio.sleep(0.1)


async def run_soak(spec: dict[str, Any], emit=print) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    totals = Totals()
    counts = Counts()
    window_ref = [Window()]
    live: set[SoakStream] = set()
    rng = random.Random(int(spec.get("seed", 16)))
    n = int(spec["producers"])
    minutes = float(spec["minutes"])
    interval = float(spec.get("interval", 30))
    ramp = float(spec.get("ramp_seconds", 30))
    n_long = round(n * float(spec["long_share"]))
    t0 = loop.time()
    ends_at = t0 + 60 * minutes
    slots = [
        asyncio.ensure_future(
            _slot(
                i,
                spec,
                long_lived=i < n_long,
                ends_at=ends_at,
                start_delay=ramp * i / max(1, n),
                totals=totals,
                window_ref=window_ref,
                counts=counts,
                live=live,
                rng=random.Random(rng.random()),
            )
        )
        for i in range(n)
    ]
    emit("PHASE measure_start", flush=True)
    ru_prev = resource.getrusage(resource.RUSAGE_SELF)
    next_at = t0 + interval
    while loop.time() < ends_at:
        await asyncio.sleep(max(0.0, min(next_at, ends_at) - loop.time()))
        now = time.perf_counter()
        for s in list(live):
            s.expire(now)
        window, window_ref[0] = window_ref[0], Window()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru.ru_utime + ru.ru_stime) - (ru_prev.ru_utime + ru_prev.ru_stime)
        ru_prev = ru
        sample = {
            "t": round(loop.time() - t0, 1),
            "live_producers": len(live),
            "live_viewers": sum(1 for s in live if s.viewer is not None and not s.viewer.closed),
            "producer": _summary_ms(window.producer),
            "viewer": _summary_ms(window.viewer),
            "missing": window.missing,
            "viewer_missing": window.viewer_missing,
            "send_late_max_ms": round(window.send_late_max * 1000, 1),
            "loadgen_cpu_pct": round(100 * cpu / interval, 1),
            "counts": {**counts.__dict__, "rest_errors": dict(counts.rest_errors)},
            "errors": dict(totals.errors),
            "warnings": dict(totals.warnings),
        }
        emit("SAMPLE " + json.dumps(sample), flush=True)
        next_at += interval
    emit("PHASE measure_end", flush=True)
    # The run is over: end the sessions still live (their ends are counted).
    await asyncio.gather(*slots, return_exceptions=True)
    return {
        "producers": n,
        "long_lived": n_long,
        "counts": {**counts.__dict__, "rest_errors": dict(counts.rest_errors)},
        "errors": dict(totals.errors),
        "warnings": dict(totals.warnings),
        "unparsed": totals.unparsed,
    }
