"""The load generator: N producers streaming 100 ms PCM16 frames at real-time
pace, optional viewers on another server, frame -> Transcript latency.

Run as its own process (pinned to a core by the orchestrator):

    python -m bench.loadgen SPEC.json

SPEC (written by ``bench.run``)::

    {"warmup": 4, "duration": 10, "drain": 2, "connect_concurrency": 50,
     "origin": "http://127.0.0.1:8000",
     "streams": [{"host": "127.0.0.1", "port": 8000, "path": "/ws/...",
                  "viewer": {"host": ..., "port": ..., "path": ...} | null}]}

It prints ``PHASE connected``, ``PHASE measure_start``, ``PHASE measure_end``
as it goes (the orchestrator samples the server's CPU and memory at those
moments) and finally one line ``RESULT {json}``.

Cost per audio frame: one ``call_at`` callback, one ``transport.write`` of
a prebuilt masked frame, two list appends. Per server message: a substring
test, one ``find`` and an ``int()`` of a few digits — no JSON decode on
the hot path. The generator also measures itself (how late frames leave
against their schedule, its own CPU) so a saturated generator shows up in
the results instead of passing for a slow server.

Modes (``"mode"`` in SPEC):

- ``steady`` (default): connect everyone (``connect_concurrency`` at a
  time), then stream, warm up, measure a window. With ``"finals": true``
  it also records every final the producer and the viewer receive and ends
  each session with ``CloseStream`` (waiting for ``Metadata``, the close
  and the viewer's ``End``), then checks that every viewer got every final
  exactly once and in order (and the ``seq`` of viewer events for gaps,
  when the server sends one).
- ``storm``: every producer connects at once and starts streaming as soon
  as its ``Begin`` arrives (a drain's 1012 sends its survivors exactly
  that); ``duration`` seconds from the first connect attempt, latency per
  second of the run.
- ``connect_only``: connect every producer (``Begin`` received) without
  streaming, between ``PHASE measure_start`` and ``PHASE measure_end`` (the
  orchestrator turns the server's CPU delta into CPU per connect), then
  close.
- ``soak`` (``bench.soak``): ``producers`` slots for ``minutes``; each slot
  creates its session over REST (``POST /api/v1/sessions/`` and stream
  tokens, as a clinic's client does), streams, ends it with
  ``CloseStream`` and starts the next one; a share of slots keeps one
  session for the whole run and a share of sessions has a viewer. Nothing
  is kept per frame beyond the replies still awaited, so memory stays flat
  for hours; every ``interval`` seconds one ``SAMPLE {json}`` line gives
  that window's latency, live sessions and cumulative counts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.wsclient import OP_BINARY, OP_TEXT, HandshakeRejected, build_frame, ws_connect

SAMPLE_RATE = 16000
FRAME_MS = 100
FRAME_BYTES = SAMPLE_RATE * 2 * FRAME_MS // 1000  # 3,200 bytes of PCM16 mono
BYTES_PER_SECOND = SAMPLE_RATE * 2


def _pcm_payload() -> bytes:
    # Quiet deterministic noise rather than zeros: identical cost to the
    # server, but not trivially compressible should anything compress it.
    rnd = random.Random(6)
    return b"".join(rnd.randint(-300, 300).to_bytes(2, "little", signed=True) for _ in range(FRAME_BYTES // 2))


AUDIO_FRAME = build_frame(OP_BINARY, _pcm_payload())
KEEPALIVE_FRAME = build_frame(OP_TEXT, b'{"type":"KeepAlive"}')
CLOSE_STREAM_FRAME = build_frame(OP_TEXT, b'{"type":"CloseStream"}')

_T_TRANSCRIPT = b'"Transcript"'
_T_ACK = b'"Ack"'
_T_BEGIN = b'"Begin"'
_T_ERROR = b'"Error"'
_T_WARNING = b'"Warning"'
_T_METADATA = b'"Metadata"'
_T_END = b'"End"'
_FINAL = (b'"is_final":true', b'"is_final": true')
_K_SEQ = b'"seq":'
_K_SEGMENTS = b'"segments":'
_K_TEXT = b'"text":'
_K_DURABLE = b'"audio_bytes_durable":'
_K_RESUME = b'"resume_from_byte":'
_K_CODE = b'"code":'


def _int_after(payload: bytes, key: bytes) -> int | None:
    """The integer following ``key`` (optionally inside quotes), without
    decoding the JSON around it."""
    i = payload.find(key)
    if i < 0:
        return None
    i += len(key)
    n = len(payload)
    while i < n and payload[i] in b' "':
        i += 1
    j = i
    while j < n and 48 <= payload[j] <= 57:
        j += 1
    return int(payload[i:j]) if j > i else None


def _str_after(payload: bytes, key: bytes) -> str:
    i = payload.find(key)
    if i < 0:
        return "?"
    i = payload.find(b'"', i + len(key))
    j = payload.find(b'"', i + 1)
    return payload[i + 1 : j].decode("utf-8", "replace")[:60] if i >= 0 and j > i else "?"


@dataclass
class Totals:
    errors: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)
    unparsed: int = 0
    # Messages received by kind (producer side), for diagnosis.
    kinds: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("Begin", "Transcript", "Final", "Ack", "Metadata", "other"), 0)
    )

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class Stream:
    """One session: a producer connection and optionally a viewer."""

    __slots__ = (
        "acked",
        "begun",
        "begun_at",
        "conn",
        "frames_sent",
        "last_ack_at",
        "loop",
        "next_at",
        "prod_final_lat",
        "prod_finals",
        "prod_recv",
        "resume_from",
        "sched_lag",
        "sent",
        "spec",
        "start_at",
        "start_on_begin",
        "started",
        "stopped",
        "stored_finals",
        "totals",
        "view_final_lat",
        "view_finals",
        "view_seqs",
        "viewer",
        "viewer_ended",
        "viewer_recv",
    )

    def __init__(self, spec: dict[str, Any], totals: Totals) -> None:
        self.spec = spec
        self.totals = totals
        self.loop = asyncio.get_running_loop()
        self.conn = None
        self.viewer = None
        self.sent: list[float] = []  # perf_counter() at which frame k left
        self.prod_recv: list[float] = []  # when its Transcript reached the producer (0: not yet)
        self.viewer_recv: list[float] = []  # ... and the viewer
        self.sched_lag: list[float] = []  # how late frame k left against its schedule
        self.frames_sent = 0
        self.resume_from = 0
        self.acked = 0
        self.last_ack_at = 0.0
        self.begun = False
        self.stopped = False
        self.start_at = 0.0
        self.next_at = 0.0
        self.begun_at = 0.0
        self.start_on_begin = False  # storm: stream from Begin on
        self.started = False
        # Finals (their byte offsets, in arrival order) and frame -> final
        # latencies; the number of finals stored, from Metadata.
        self.prod_finals: list[int] = []
        self.view_finals: list[int] = []
        self.prod_final_lat: list[float] = []
        self.view_final_lat: list[float] = []
        self.stored_finals: int | None = None
        self.view_seqs: list[int] = []  # the viewer events' seq, when the server sends one
        self.viewer_ended = False

    # --- server messages -----------------------------------------------------

    def _frame_index(self, payload: bytes) -> int:
        offset = _int_after(payload, _K_TEXT)
        if offset is None:
            self.totals.unparsed += 1
            return -1
        k = (offset - self.resume_from) // FRAME_BYTES - 1
        return k if 0 <= k < self.frames_sent else -1

    def _final(self, payload: bytes, now: float, finals: list[int], latencies: list[float]) -> None:
        """Record a final by its offset; finals are not timed as frame
        replies (they wait for a flush), but frame -> final separately."""
        offset = _int_after(payload, _K_TEXT)
        if offset is None:
            self.totals.unparsed += 1
            return
        finals.append(offset)
        k = (offset - self.resume_from) // FRAME_BYTES - 1
        if 0 <= k < self.frames_sent:
            latencies.append(now - self.sent[k])

    def on_producer_text(self, payload: bytes, _now: float) -> None:
        now = time.perf_counter()
        kinds = self.totals.kinds
        if _T_TRANSCRIPT in payload:
            if _FINAL[0] in payload or _FINAL[1] in payload:
                kinds["Final"] += 1
                self._final(payload, now, self.prod_finals, self.prod_final_lat)
                return
            kinds["Transcript"] += 1
            k = self._frame_index(payload)
            if k >= 0 and not self.prod_recv[k]:
                self.prod_recv[k] = now
            return
        if _T_ACK in payload:
            kinds["Ack"] += 1
            durable = _int_after(payload, _K_DURABLE)
            if durable is not None:
                self.acked = durable
                self.last_ack_at = now
        elif _T_BEGIN in payload:
            kinds["Begin"] += 1
            self.resume_from = _int_after(payload, _K_RESUME) or 0
            self.acked = self.resume_from
            self.begun = True
            self.begun_at = now
            if self.start_on_begin and self.conn is not None:
                self.start(self.loop.time())
        elif _T_METADATA in payload:
            kinds["Metadata"] += 1
            self.stored_finals = _int_after(payload, _K_SEGMENTS)
        elif _T_ERROR in payload:
            kinds["other"] += 1
            self.totals.error("server:" + _str_after(payload, _K_CODE))
        elif _T_WARNING in payload:
            kinds["other"] += 1
            code = _str_after(payload, _K_CODE)
            self.totals.warnings[code] = self.totals.warnings.get(code, 0) + 1
        else:
            kinds["other"] += 1

    def on_viewer_text(self, payload: bytes, _now: float) -> None:
        seq = _int_after(payload, _K_SEQ)
        if seq is not None:
            self.view_seqs.append(seq)
        if _T_TRANSCRIPT in payload:
            now = time.perf_counter()
            if _FINAL[0] in payload or _FINAL[1] in payload:
                self._final(payload, now, self.view_finals, self.view_final_lat)
                return
            k = self._frame_index(payload)
            if k >= 0 and not self.viewer_recv[k]:
                self.viewer_recv[k] = now
        elif _T_END in payload:
            self.viewer_ended = True
        elif _T_ERROR in payload:
            self.totals.error("viewer-server:" + _str_after(payload, _K_CODE))

    def on_close(self, code: int | None) -> None:
        if not self.stopped:
            self.totals.error(f"producer_closed:{code}")

    def on_viewer_close(self, code: int | None) -> None:
        if not self.stopped:
            self.totals.error(f"viewer_closed:{code}")

    # --- sending ---------------------------------------------------------------

    def start(self, at: float) -> None:
        if self.started:
            return
        self.started = True
        self.start_at = self.next_at = at
        self.loop.call_at(at, self._tick)

    def _tick(self) -> None:
        if self.stopped or self.conn is None or self.conn.closed:
            return
        now = time.perf_counter()
        self.conn.transport.write(AUDIO_FRAME)
        self.sent.append(now)
        self.prod_recv.append(0.0)
        self.viewer_recv.append(0.0)
        self.sched_lag.append(self.loop.time() - self.next_at)
        self.frames_sent += 1
        # An absolute schedule: a late tick doesn't shift later frames.
        self.next_at = self.start_at + self.frames_sent * (FRAME_MS / 1000)
        self.loop.call_at(self.next_at, self._tick)


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def _summary_ms(values: list[float]) -> dict[str, float | int | None]:
    values.sort()
    return {
        "count": len(values),
        "p50_ms": None if not values else round(_pct(values, 0.50) * 1000, 2),
        "p99_ms": None if not values else round(_pct(values, 0.99) * 1000, 2),
        "max_ms": None if not values else round(values[-1] * 1000, 2),
    }


async def _connect_all(streams: list[Stream], spec: dict[str, Any], totals: Totals) -> None:
    sem = asyncio.Semaphore(int(spec.get("connect_concurrency", 50)))
    origin = spec.get("origin")
    timeout = float(spec.get("connect_timeout", 60))

    async def one(stream: Stream) -> None:
        async with sem:
            s = stream.spec
            try:
                if s.get("viewer"):
                    v = s["viewer"]
                    stream.viewer = await ws_connect(
                        v["host"],
                        v["port"],
                        v["path"],
                        stream.on_viewer_text,
                        stream.on_viewer_close,
                        origin=origin,
                        timeout=timeout,
                    )
                stream.conn = await ws_connect(
                    s["host"],
                    s["port"],
                    s["path"],
                    stream.on_producer_text,
                    stream.on_close,
                    origin=origin,
                    timeout=timeout,
                )
                # Begin may have come in the handshake's own read.
                if stream.start_on_begin and stream.begun:
                    stream.start(stream.loop.time())
            except HandshakeRejected as exc:
                totals.error(f"connect_rejected:{str(exc)[:40]}")
            except (TimeoutError, OSError) as exc:
                totals.error(f"connect_failed:{type(exc).__name__}")

    await asyncio.gather(*(one(s) for s in streams))


async def run(spec: dict[str, Any], emit=print) -> dict[str, Any]:
    mode = spec.get("mode", "steady")
    if mode == "soak":
        from bench.soak_load import run_soak

        return await run_soak(spec, emit)
    if mode == "storm":
        return await run_storm(spec, emit)
    if mode == "connect_only":
        return await run_connect_only(spec, emit)
    return await run_steady(spec, emit)


async def run_steady(spec: dict[str, Any], emit=print) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    totals = Totals()
    streams = [Stream(s, totals) for s in spec["streams"]]
    t_connect = time.perf_counter()
    await _connect_all(streams, spec, totals)
    connected = [s for s in streams if s.conn is not None]
    connect_seconds = time.perf_counter() - t_connect
    # Wait briefly for Begin so the first frames aren't timed against setup.
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and not all(s.begun or s.conn.closed for s in connected):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    emit("PHASE connected", flush=True)

    # Spread the streams evenly over one frame period, as independent
    # clients would be, rather than sending N frames in one burst.
    base = loop.time() + 0.05
    period = FRAME_MS / 1000
    for i, s in enumerate(connected):
        s.start(base + period * i / max(1, len(connected)))

    warmup, duration, drain = float(spec["warmup"]), float(spec["duration"]), float(spec.get("drain", 2))
    await asyncio.sleep(warmup)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    transcripts0 = totals.kinds["Transcript"]
    m_start = time.perf_counter()
    emit("PHASE measure_start", flush=True)
    lag_samples: list[float] = []
    ack_silence: list[float] = []
    while time.perf_counter() - m_start < duration:
        await asyncio.sleep(0.5)
        now = time.perf_counter()
        for s in connected:
            if s.begun and not s.conn.closed:
                lag_samples.append((s.resume_from + s.frames_sent * FRAME_BYTES - s.acked) / BYTES_PER_SECOND)
                if s.last_ack_at:
                    ack_silence.append(now - s.last_ack_at)
    m_end = time.perf_counter()
    transcripts_in_window = totals.kinds["Transcript"] - transcripts0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    emit("PHASE measure_end", flush=True)
    # Keep streaming through the drain: the window's last frames are then
    # followed by more audio, as mid-session, instead of by a pause (a
    # pause changes what the server does: coalesced partials, idle timers).
    await asyncio.sleep(drain)
    for s in connected:
        s.stopped = True
    finals = None
    if spec.get("finals"):
        await _close_streams(connected, float(spec.get("close_timeout", 30)))
        finals = finals_summary(connected)

    prod_lat: list[float] = []
    view_lat: list[float] = []
    relay: list[float] = []  # viewer arrival - producer arrival, same event
    sched: list[float] = []
    sent_in_window = missing = view_missing = 0
    for s in connected:
        has_viewer = s.viewer is not None
        for k, t in enumerate(s.sent):
            if t < m_start or t >= m_end:
                continue
            sent_in_window += 1
            sched.append(max(0.0, s.sched_lag[k]))
            r = s.prod_recv[k]
            if r:
                prod_lat.append(r - t)
            else:
                missing += 1
            if has_viewer:
                v = s.viewer_recv[k]
                if v:
                    view_lat.append(v - t)
                    if r:
                        relay.append(max(0.0, v - r))
                else:
                    view_missing += 1
    for s in streams:
        for c in (s.conn, s.viewer):
            if c is not None:
                c.close()
    await asyncio.sleep(0.2)

    lag_samples.sort()
    wall = m_end - m_start
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return {
        "streams": len(streams),
        "connected": len(connected),
        "viewers": sum(1 for s in streams if s.viewer is not None),
        "connect_seconds": round(connect_seconds, 2),
        "window_seconds": round(wall, 2),
        "frames_sent": sent_in_window,
        # Transcripts that arrived during the window, whenever their frame
        # left: the work the server did in the window (CPU cost per frame).
        "transcripts_in_window": transcripts_in_window,
        "producer": _summary_ms(prod_lat),
        "viewer": _summary_ms(view_lat),
        "viewer_after_producer": _summary_ms(relay),
        "missing_transcripts": missing,
        "viewer_missing": view_missing,
        "errors": totals.errors,
        "warnings": totals.warnings,
        "unparsed": totals.unparsed,
        "received": totals.kinds,
        "ack_lag_s": {
            "p99": round(_pct(lag_samples, 0.99), 2) if lag_samples else None,
            "max": round(lag_samples[-1], 2) if lag_samples else None,
            "samples": len(lag_samples),
        },
        "ack_silence_max_s": round(max(ack_silence), 2) if ack_silence else None,
        "loadgen": {
            "cpu_pct": round(100 * cpu / wall, 1) if wall else None,
            "send_late": _summary_ms(sched),
        },
        "finals": finals,
    }


async def _close_streams(streams: list[Stream], timeout: float) -> None:  # noqa: ASYNC109 - one bound for all
    """End every session with CloseStream and wait (up to ``timeout``) for
    the producers' close and the viewers' End: every final of the session
    is then stored and sent."""
    for s in streams:
        if s.conn is not None and not s.conn.closed:
            s.conn.send_raw(CLOSE_STREAM_FRAME)
    deadline = time.perf_counter() + timeout

    def settled(s: Stream) -> bool:
        producer_done = s.conn is None or s.conn.closed
        viewer_done = s.viewer is None or s.viewer.closed or s.viewer_ended
        return producer_done and viewer_done

    while time.perf_counter() < deadline and not all(settled(s) for s in streams):  # noqa: ASYNC110
        await asyncio.sleep(0.1)


def _seq_faults(seqs: list[int]) -> tuple[int, int]:
    """(events missing between consecutive seqs, seqs not above the one before)."""
    gaps = regressions = 0
    for a, b in itertools.pairwise(seqs):
        if b <= a:
            regressions += 1
        elif b > a + 1:
            gaps += b - a - 1
    return gaps, regressions


def finals_summary(streams: list[Stream]) -> dict[str, Any]:
    """Every final at every viewer exactly once and in order. The
    reference is what the producer received, checked in turn against the
    number of finals the server stored (``Metadata.segments``)."""
    out = dict.fromkeys(
        (
            "sessions",
            "stored",
            "producer",
            "viewer",
            "missing",
            "duplicate",
            "out_of_order",
            "unexpected",
            "viewers_with_faults",
            "viewers_without_end",
            "producers_without_metadata",
            "producers_short_of_stored",
            "seq_viewers",
            "seq_gaps",
            "seq_regressions",
        ),
        0,
    )
    prod_lat: list[float] = []
    view_lat: list[float] = []
    for s in streams:
        out["sessions"] += 1
        prod_lat += s.prod_final_lat
        if s.stored_finals is None:
            out["producers_without_metadata"] += 1
        else:
            out["stored"] += s.stored_finals
            if len(set(s.prod_finals)) != s.stored_finals:
                out["producers_short_of_stored"] += 1
        out["producer"] += len(s.prod_finals)
        if s.viewer is None:
            continue
        view_lat += s.view_final_lat
        expected = set(s.prod_finals)
        got = s.view_finals
        seen = set(got)
        missing = len(expected - seen)
        duplicate = len(got) - len(seen)
        out_of_order = sum(1 for a, b in itertools.pairwise(got) if b < a)
        unexpected = len(seen - expected)
        out["viewer"] += len(got)
        out["missing"] += missing
        out["duplicate"] += duplicate
        out["out_of_order"] += out_of_order
        out["unexpected"] += unexpected
        out["viewers_with_faults"] += 1 if (missing or duplicate or out_of_order or unexpected) else 0
        out["viewers_without_end"] += 0 if s.viewer_ended else 1
        if s.view_seqs:
            out["seq_viewers"] += 1
            gaps, regressions = _seq_faults(s.view_seqs)
            out["seq_gaps"] += gaps
            out["seq_regressions"] += regressions
    out["producer_latency"] = _summary_ms(prod_lat)
    out["viewer_latency"] = _summary_ms(view_lat)
    return out


async def _close_all(streams: list[Stream]) -> None:
    for s in streams:
        s.stopped = True
        for c in (s.conn, s.viewer):
            if c is not None:
                c.close()
    await asyncio.sleep(0.2)


async def run_connect_only(spec: dict[str, Any], emit=print) -> dict[str, Any]:
    """Connect every producer and wait for its Begin, streaming nothing."""
    totals = Totals()
    streams = [Stream(s, totals) for s in spec["streams"]]
    emit("PHASE measure_start", flush=True)
    t0 = time.perf_counter()
    await _connect_all(streams, spec, totals)
    deadline = time.perf_counter() + float(spec.get("begin_timeout", 30))
    connected = [s for s in streams if s.conn is not None]
    while time.perf_counter() < deadline and not all(s.begun or s.conn.closed for s in connected):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    begun = [s for s in connected if s.begun]
    all_begun = max((s.begun_at for s in begun), default=t0) - t0
    emit("PHASE measure_end", flush=True)
    await _close_all(streams)
    return {
        "streams": len(streams),
        "connected": len(connected),
        "begun": len(begun),
        "connect_concurrency": int(spec.get("connect_concurrency", 50)),
        "all_begun_s": round(all_begun, 3),
        "errors": totals.errors,
    }


def per_second(
    frames: list[tuple[float, float | None]], limit_ms: float, lags: list[tuple[float, float]] | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Frames as (send time since the first connect, latency or None if no
    reply came) -> one row per second of the run, and the first second
    from which p99 < ``limit_ms`` holds in every later second (None: it
    does not hold even in the last one). A frame without a reply counts as
    slower than any limit. ``lags``: the generator's own event-loop
    lateness as (time, seconds late): each row gets its second's worst, so a
    second the generator itself was held up in shows as such."""
    buckets: dict[int, list[float]] = {}
    for sent, latency in frames:
        buckets.setdefault(int(sent), []).append(float("inf") if latency is None else latency)
    worst_lag: dict[int, float] = {}
    for at, lag in lags or []:
        worst_lag[int(at)] = max(worst_lag.get(int(at), 0.0), lag)
    rows = []
    for second in sorted(buckets):
        values = sorted(buckets[second])
        p99 = _pct(values, 0.99)
        rows.append(
            {
                "second": second,
                "frames": len(values),
                "missing": sum(1 for v in values if v == float("inf")),
                "p50_ms": None if _pct(values, 0.5) == float("inf") else round(_pct(values, 0.5) * 1000, 1),
                "p99_ms": None if p99 == float("inf") else round(p99 * 1000, 1),
                "gen_lag_ms": round(worst_lag[second] * 1000, 1) if second in worst_lag else None,
            }
        )
    holds_from = None
    for row in reversed(rows):
        if row["p99_ms"] is None or row["p99_ms"] >= limit_ms:
            break
        holds_from = row["second"]
    return rows, holds_from


async def _watch_own_lag(t0: float, out: list[tuple[float, float]], interval: float = 0.02) -> None:
    """The generator's own event-loop lateness: replies read late by a busy
    generator would pass for a slow server."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        out.append((time.perf_counter() - t0, max(0.0, loop.time() - due)))


async def run_storm(spec: dict[str, Any], emit=print) -> dict[str, Any]:
    """Everyone connects at once and streams from its Begin on, for
    ``duration`` seconds from the first connect attempt."""
    totals = Totals()
    streams = [Stream(s, totals) for s in spec["streams"]]
    for s in streams:
        s.start_on_begin = True
    duration, drain = float(spec["duration"]), float(spec.get("drain", 2))
    limit_ms = float(spec.get("p99_limit_ms", 93.0))
    emit("PHASE measure_start", flush=True)
    t0 = time.perf_counter()
    # Wall-clock twin of t0: the server's log lines (gc_pause, ...) carry
    # wall-clock timestamps, and the report puts them in their second.
    started_at = time.time()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    lags: list[tuple[float, float]] = []
    watching = asyncio.ensure_future(_watch_own_lag(t0, lags))
    connecting = asyncio.ensure_future(_connect_all(streams, {**spec, "connect_concurrency": len(streams)}, totals))
    await asyncio.sleep(duration)
    for s in streams:
        s.stopped = True  # no new frames; replies to those sent still count
    t_end = time.perf_counter()
    await asyncio.sleep(drain)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    emit("PHASE measure_end", flush=True)
    watching.cancel()
    if not connecting.done():
        connecting.cancel()
    begun = [s for s in streams if s.begun]
    frames: list[tuple[float, float | None]] = []
    # Whole seconds only: a last fraction of a second would be a bucket of
    # a few frames whose p99 says nothing.
    cutoff = t0 + int(duration)
    for s in begun:
        for k, t in enumerate(s.sent):
            if t < cutoff:
                r = s.prod_recv[k]
                frames.append((t - t0, (r - t) if r else None))
    rows, holds_from = per_second(frames, limit_ms, lags)
    latencies = [lat for _, lat in frames if lat is not None]
    wall = t_end - t0 + drain
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    begun_at = sorted(s.begun_at - t0 for s in begun)
    result = {
        "streams": len(streams),
        "connected": sum(1 for s in streams if s.conn is not None),
        "begun": len(begun),
        "all_connected_s": round(begun_at[-1], 2) if len(begun) == len(streams) and begun_at else None,
        "half_connected_s": round(begun_at[len(begun_at) // 2], 2) if begun_at else None,
        "last_connected_s": round(begun_at[-1], 2) if begun_at else None,
        "started_at": started_at,
        "run_seconds": round(t_end - t0, 1),
        "frames_sent": len(frames),
        "missing_transcripts": sum(1 for _, lat in frames if lat is None),
        "producer": _summary_ms(latencies),
        "per_second": rows,
        "p99_holds_from_s": holds_from,
        "errors": totals.errors,
        "warnings": totals.warnings,
        "received": totals.kinds,
        "loadgen": {"cpu_pct": round(100 * cpu / wall, 1) if wall else None},
    }
    await _close_all(streams)
    return result


def main(argv: list[str]) -> None:
    with open(argv[1]) as f:
        spec = json.load(f)
    import gc

    from bench.procs import raise_fd_limit

    raise_fd_limit()
    # The generator's own heap is small; freezing it keeps collections short.
    gc.collect()
    gc.freeze()
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    print("RESULT " + json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
