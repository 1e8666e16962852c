"""Real-time factor and concurrency of the local (pocketsphinx) engine.

    taskset -c 0 .venv/bin/python -m bench.local_engine_rtf single tests/fixtures/audio/consult_en.wav
    taskset -c 0 .venv/bin/python -m bench.local_engine_rtf live tests/fixtures/audio/consult_en.wav N [ROUNDS]

``single``: one stream, audio handed over as fast as the decoder takes it;
prints the decoder process's CPU time per second of audio (RTF) and the
wall-clock RTF. ``live``: N streams at once, each paced at real time
(100 ms frames), ROUNDS repetitions of the file; a stream keeps up when its
"lag" (last frame sent → last final received) stays well under a second.
Pin with ``taskset`` (children inherit it) to measure per core.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import wave

FRAME = 3200  # 100 ms at 16 kHz


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stream(engine, pcm: bytes, *, paced: bool, rounds: int = 1, name: str = "s") -> dict:
    from transcription.engines.base import StreamConfig

    stream = await engine.open_stream(StreamConfig(session_id=name, clinic_id="bench", language="en-US"))
    pid = stream._decoder.process.pid
    cpu_before = _cpu_seconds(pid)
    finals = 0

    async def read() -> None:
        nonlocal finals
        async for event in stream.events():
            finals += event.is_final

    reader = asyncio.create_task(read())
    began = time.monotonic()
    sent = 0
    for _ in range(rounds):
        for offset in range(0, len(pcm), FRAME):
            if paced:
                delay = began + sent * 0.1 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            stream.send_audio(pcm[offset : offset + FRAME])
            sent += 1
    last_sent = time.monotonic()
    await stream.end()
    await reader
    done = time.monotonic()
    cpu = _cpu_seconds(pid) - cpu_before
    await stream.aclose()
    audio = len(pcm) * rounds / 32000
    return {"audio": audio, "cpu": cpu, "wall": done - began, "lag": done - last_sent, "finals": finals}


async def main(argv: list[str]) -> None:
    from transcription.engines.local import DecoderPool, LocalEngine

    mode, path = argv[0], argv[1]
    with wave.open(path, "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    if mode == "single":
        pool = DecoderPool(1)
        engine = LocalEngine(pool=pool)
        await _stream(engine, pcm[:32000], paced=False)  # warm-up: model load
        for _ in range(3):
            r = await _stream(engine, pcm, paced=False)
            print(
                f"audio {r['audio']:.1f} s  decoder cpu {r['cpu']:.2f} s  RTF(cpu) {r['cpu'] / r['audio']:.3f}  "
                f"wall {r['wall']:.2f} s  RTF(wall) {r['wall'] / r['audio']:.3f}  finals {r['finals']}"
            )
    else:
        n, rounds = int(argv[2]), int(argv[3]) if len(argv) > 3 else 2
        pool = DecoderPool(n)
        engine = LocalEngine(pool=pool)
        await asyncio.gather(*(_stream(engine, pcm[:32000], paced=False, name=f"w{i}") for i in range(n)))
        results = await asyncio.gather(
            *(_stream(engine, pcm, paced=True, rounds=rounds, name=f"s{i}") for i in range(n))
        )
        for r in results:
            print(
                f"N={n} audio {r['audio']:.1f} s  RTF(cpu) {r['cpu'] / r['audio']:.3f}  "
                f"lag after last frame {r['lag']:.2f} s  finals {r['finals']}"
            )
    pool.shutdown()


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceai.settings_test")
    import django

    django.setup()
    asyncio.run(main(sys.argv[1:]))
