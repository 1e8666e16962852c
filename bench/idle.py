"""Idle sockets, on the production launcher with its defaults (issue 10):
producers that only send KeepAlive and viewers that send nothing, for
longer than every Redis and socket timeout in play (10 minutes by default);
then each session is ended over REST. Reports how many viewers stayed
connected the whole time, and for each producer how long after the REST
answer it got ``Metadata`` and close 1000 (target: within 1 s, every time),
and for each viewer its ``End``.

    python -m bench.idle [--sessions 20] [--minutes 10]

Bounded: ``--sessions`` sessions, one process on 127.0.0.1, stops by itself.
It prints one JSON line (``RESULT {...}``) and a short verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench import procs, provision
from bench.crowds import production_env
from bench.run import DEFAULT_DB, DEFAULT_REDIS
from bench.trials import BenchContext

KEEPALIVE_SECONDS = 5.0


async def _producer(url: str, idle_until: float, ready: asyncio.Event, out: dict) -> None:
    async with connect(url, compression=None, max_size=None) as ws:
        while json.loads(await ws.recv())["type"] != "Begin":
            pass
        await ws.send(b"\x00" * 3200)  # a little audio, then silence
        ready.set()
        while (left := idle_until - time.monotonic()) > 0:
            await asyncio.sleep(min(KEEPALIVE_SECONDS, left))
            await ws.send(json.dumps({"type": "KeepAlive"}))
        out["idle_done"] = time.monotonic()
        async for message in ws:
            if isinstance(message, str) and json.loads(message)["type"] == "Metadata":
                out["metadata_at"] = time.monotonic()
        out["close_code"] = ws.close_code
        out["closed_at"] = time.monotonic()


async def _viewer(url: str, out: dict) -> None:
    async with connect(url, compression=None, max_size=None) as ws:
        async for message in ws:
            kind = json.loads(message)["type"]
            if kind == "End":
                out["end_at"] = time.monotonic()
        out["close_code"] = ws.close_code
        out["closed_at"] = time.monotonic()


def _end_session(base: str, session_id: str, api_key: str) -> float:
    request = urllib.request.Request(
        f"{base}/api/v1/sessions/{session_id}/end/", method="POST", headers={"Authorization": f"Api-Key {api_key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    return time.monotonic()


async def _run(base: str, ws_base: str, sessions: list, api_key: str, minutes: float) -> dict[str, Any]:
    idle_until = time.monotonic() + minutes * 60
    producers: list[dict] = [{} for _ in sessions]
    viewers: list[dict] = [{} for _ in sessions]
    tasks = []
    for s, p_out, v_out in zip(sessions, producers, viewers, strict=True):
        ready = asyncio.Event()
        tasks.append(
            asyncio.create_task(
                _producer(f"{ws_base}/ws/v1/sessions/{s.id}/stream?token={s.producer_token}", idle_until, ready, p_out)
            )
        )
        await ready.wait()
        viewer_url = f"{ws_base}/ws/v1/sessions/{s.id}/live?token={s.viewer_token}"
        tasks.append(asyncio.create_task(_viewer(viewer_url, v_out)))
    await asyncio.sleep(max(0.0, idle_until - time.monotonic()) + 1.0)
    connected_through = sum(1 for v in viewers if "closed_at" not in v)
    loop = asyncio.get_running_loop()
    for s, p_out in zip(sessions, producers, strict=True):
        p_out["ended_at"] = await loop.run_in_executor(None, _end_session, base, s.id, api_key)
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)
    failures = sorted({type(o).__name__ for o in outcomes if isinstance(o, BaseException)})
    delays = [p["closed_at"] - p["ended_at"] for p in producers if "closed_at" in p and "metadata_at" in p]
    return {
        "sessions": len(sessions),
        "client_failures": failures,
        "idle_minutes": minutes,
        "viewers_connected_throughout": connected_through,
        "producers_sealed_1000": sum(1 for p in producers if p.get("close_code") == 1000 and "metadata_at" in p),
        "viewers_ended_1000": sum(1 for v in viewers if v.get("close_code") == 1000 and "end_at" in v),
        "producer_close_after_end_s": {
            "max": round(max(delays), 3) if delays else None,
            "median": round(statistics.median(delays), 3) if delays else None,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    args = parser.parse_args(argv)
    ctx = BenchContext(
        database_url=args.database_url,
        redis_url=args.redis_url,
        secret_key=secrets.token_urlsafe(40),
        work_dir=Path(tempfile.mkdtemp(prefix="bench-idle-")),
        server_core=None,
        loadgen_core=None,
    )
    env = production_env(ctx)
    provision.ensure_database(ctx.database_url)
    provision.django_setup({**env, "DJANGO_SETTINGS_MODULE": "voiceai.settings"})
    provision.migrate()
    bc = provision.bench_clinic("idle")
    sessions = provision.sessions_with_tokens(bc, args.sessions, viewer_tokens=True)
    server = procs.start_asgi("serve", env=env, core=None, log_dir=ctx.work_dir / "logs")
    try:
        base, ws_base = f"http://127.0.0.1:{server.port}", f"ws://127.0.0.1:{server.port}"
        result = asyncio.run(_run(base, ws_base, sessions, bc.api_key_raw, args.minutes))
    finally:
        server.stop()
        provision.redis_delete(ctx.redis_url, [f"*{bc.clinic.pk}*"])
    n = args.sessions
    result["pass"] = (
        result["viewers_connected_throughout"] == n
        and result["producers_sealed_1000"] == n
        and result["viewers_ended_1000"] == n
        and (result["producer_close_after_end_s"]["max"] or 99) <= 1.0
    )
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
