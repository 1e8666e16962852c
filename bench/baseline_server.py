"""The raw baseline: a plain ``websockets`` server with the platform's frame
and reply pattern and nothing else (no Django, no Channels, no storage, no
Redis).

Per connection: a Begin message, then for every binary frame one
Transcript partial whose text is the byte offset reached (what
``FAKE_ENGINE_MODE=echo`` produces), built with ``json.dumps`` like a
real server would; an Ack with ``audio_bytes_durable`` every 10 frames
(once a second at 100 ms frames). The platform's capacity is reported as a
ratio of this server's, measured in the same run on the same core.

    python -m bench.baseline_server --port 0   # prints "LISTENING <port>"
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import uuid

from websockets.asyncio.server import ServerConnection, serve


async def handler(ws: ServerConnection) -> None:
    session_id = str(uuid.uuid4())
    await ws.send(
        json.dumps(
            {"type": "Begin", "session_id": session_id, "protocol": 1, "sample_rate": 16000, "resume_from_byte": 0}
        )
    )
    offset = 0
    frames = 0
    async for message in ws:
        if isinstance(message, str):
            continue  # KeepAlive and other control messages: nothing to answer
        offset += len(message)
        frames += 1
        await ws.send(
            json.dumps(
                {
                    "type": "Transcript",
                    "segment_id": "s0",
                    "revision": frames,
                    "is_final": False,
                    "start_ms": 0,
                    "end_ms": offset // 32,
                    "text": str(offset),
                    "speaker": "",
                    "confidence": None,
                }
            )
        )
        if frames % 10 == 0:
            await ws.send(json.dumps({"type": "Ack", "audio_bytes_durable": offset}))


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**20) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"LISTENING {bound}", flush=True)
        gc.collect()
        gc.freeze()
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args.port))
    else:
        asyncio.run(main(args.port))
