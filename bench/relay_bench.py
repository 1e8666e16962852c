"""Cross-process event delivery for watched sessions (issue 10, item 2):
channels-redis' core layer, its pub/sub layer and the session relay
(transcription/relay.py), batched and unbatched, on this machine.

Each mechanism runs in two processes: a publisher pinned to core 0 that
publishes for SESSIONS sessions at RATE events per second each (one task
per session, as engines deliver results), and a subscriber pinned to core 1
with one subscriber per session. Measured over a common wall-clock window:
publisher CPU per event, subscriber CPU per event, publish → receive latency
(p50/p99), events lost, and Redis' own CPU per event (the server is shared:
treat it as a rough figure).

    python -m bench.relay_bench                       # all mechanisms, ~1.5 min
    python -m bench.relay_bench --sessions 100 --seconds 5 --mechanisms relay core

REDIS_URL (or BENCH_REDIS_URL) picks the server; keys and channels carry a
per-run prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import uuid

MECHANISMS = ("null", "core", "pubsub", "relay", "relay-unbatched", "relay-xread")
from transcription.relay import _PUBLISH as _PUBLISH_SCRIPT  # noqa: E402

TEXT = "the patient reports a mild headache since tuesday morning and no fever " * 2


def _event(session: int, n: int, measured: bool) -> dict:
    # The shape and size of a coalesced partial on the wire.
    return {
        "type": "Transcript",
        "is_final": n % 5 == 0,
        "segment_id": f"seg-{session}-{n}",
        "start_ms": n * 200,
        "end_ms": n * 200 + 180,
        "text": TEXT,
        "n": n,
        "m": measured,
        "t": time.time(),
    }


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/7"


def _channel_layer(mechanism: str, prefix: str):
    url = _redis_url()
    if mechanism == "core":
        from channels_redis.core import RedisChannelLayer

        # The project's settings (voiceai/settings.py).
        return RedisChannelLayer(
            hosts=[{"address": url, "max_connections": 1000}], prefix=prefix, capacity=1000, expiry=30
        )
    from channels_redis.pubsub import RedisPubSubChannelLayer

    return RedisPubSubChannelLayer(hosts=[url], prefix=prefix)


def _relay():
    from transcription.relay import RedisRelay

    return RedisRelay(_redis_url(), maxlen=1000, idle_seconds=600, queue_size=1000)


async def _until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


# --- subscriber ---------------------------------------------------------------------


async def subscriber(args: argparse.Namespace) -> dict:
    latencies: list[float] = []
    received = {"all": 0, "window": 0, "errors": 0, "gaps": 0}
    last_n: dict[int, int] = {}
    lost = 0

    def record(session: int, event: dict) -> None:
        nonlocal lost
        now = time.time()
        received["all"] += 1
        previous = last_n.get(session, -1)
        if event["n"] != previous + 1:
            lost += event["n"] - previous - 1
        last_n[session] = max(previous, event["n"])
        if event["m"]:
            received["window"] += 1
            latencies.append(now - event["t"])

    tasks = []
    closers = []
    if args.mechanism == "null":
        pass  # the harness alone: what every other row's figures include
    elif args.mechanism in ("core", "pubsub"):
        layer = _channel_layer(args.mechanism, args.prefix)

        async def consume(session: int, channel: str) -> None:
            while True:
                try:
                    message = await layer.receive(channel)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    received["errors"] += 1
                    continue
                record(session, message["event"])

        for session in range(args.sessions):
            channel = await layer.new_channel()
            await layer.group_add(f"s{session}", channel)
            tasks.append(asyncio.ensure_future(consume(session, channel)))
        closers.append(layer.flush if args.mechanism == "pubsub" else layer.close_pools)
    elif args.mechanism == "relay-xread":
        # The alternative reader: one XREAD BLOCK over every watched stream
        # instead of pub/sub wake-ups (the publisher is the batched relay).
        import redis.asyncio as redis_asyncio

        from transcription.relay import relay_events_key

        client = redis_asyncio.Redis.from_url(_redis_url(), decode_responses=True, socket_timeout=None)
        positions = {relay_events_key(args.prefix, s): "0-0" for s in range(args.sessions)}
        session_of = {relay_events_key(args.prefix, s): s for s in range(args.sessions)}

        async def xread_loop() -> None:
            while True:
                try:
                    replies = await client.xread(positions, block=1000, count=100)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    received["errors"] += 1
                    continue
                for key, entries in replies:
                    for entry_id, fields in entries:
                        positions[key] = entry_id
                        record(session_of[key], json.loads(fields["e"]))

        tasks.append(asyncio.ensure_future(xread_loop()))
        closers.append(client.aclose)
    else:
        relay = _relay()

        async def consume_relay(sub, session: int) -> None:
            from transcription.relay import RelayGap

            try:
                async for item in sub:
                    record(session, item.event)
            except RelayGap:
                received["gaps"] += 1

        for session in range(args.sessions):
            sub = await relay.subscribe(args.prefix, session)
            tasks.append(asyncio.ensure_future(consume_relay(sub, session)))
        closers.append(relay.aclose)

    print("ready", flush=True)
    # The measured window arrives on stdin once the publisher is starting.
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    args.start, args.end = (float(value) for value in line.split())
    await _until(args.start)
    cpu0 = time.process_time()
    await _until(args.end)
    cpu = time.process_time() - cpu0
    await asyncio.sleep(args.drain)
    for task in tasks:
        task.cancel()
    for close in closers:
        with contextlib.suppress(Exception):
            await close()
    latencies.sort()
    return {
        "cpu_s": cpu,
        "received": received,
        "lost": lost,
        "latencies": [latencies[int(q * (len(latencies) - 1))] for q in (0.5, 0.99)] if latencies else None,
    }


# --- publisher ----------------------------------------------------------------------


async def publisher(args: argparse.Namespace) -> dict:
    published = {"all": 0, "window": 0, "errors": 0}
    relay = None
    interval = 1.0 / args.rate
    if args.mechanism == "null":

        async def send(session: int, event: dict) -> None:
            pass

        async def close() -> None:
            pass

    elif args.mechanism in ("core", "pubsub"):
        layer = _channel_layer(args.mechanism, args.prefix)

        async def send(session: int, event: dict) -> None:
            await layer.group_send(f"s{session}", {"type": "transcript", "event": event})

        close = layer.flush if args.mechanism == "pubsub" else layer.close_pools
    else:
        import redis.asyncio as redis_asyncio

        from transcription.relay import relay_events_key, relay_meta_key

        relay = _relay()
        # Unbatched: one round trip per event from each session's task, on a
        # blocking pool like the live-state store's (a plain pool raises past
        # 100 concurrent commands).
        pool = redis_asyncio.BlockingConnectionPool.from_url(_redis_url(), max_connections=64, timeout=10)
        client = redis_asyncio.Redis(connection_pool=pool)
        script = client.register_script(_PUBLISH_SCRIPT)

        async def close() -> None:
            await relay.aclose()
            await client.aclose()

        async def send(session: int, event: dict) -> None:
            if args.mechanism in ("relay", "relay-xread"):
                relay.publish_nowait(args.prefix, session, event)
            else:
                # One round trip per event: what the relay's batching saves.
                await script(
                    keys=[relay_meta_key(args.prefix, session), relay_events_key(args.prefix, session)],
                    args=[json.dumps(event, separators=(",", ":")), 1000, 600_000],
                )

    async def session_loop(session: int) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        n = 0
        while time.time() < args.end:
            measured = args.start <= time.time() < args.end
            try:
                await send(session, _event(session, n, measured))
                published["all"] += 1
                published["window"] += measured
            except Exception:
                published["errors"] += 1
            n += 1
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))

    cpu_box: dict[str, float] = {}

    async def meter() -> None:
        await _until(args.start)
        cpu_box["start"] = time.process_time()
        await _until(args.end)
        cpu_box["cpu"] = time.process_time() - cpu_box["start"]

    await asyncio.gather(meter(), *(session_loop(s) for s in range(args.sessions)))
    await asyncio.sleep(0.5)  # the last batch
    batches = relay.batches_sent if relay is not None else None
    with contextlib.suppress(Exception):
        await close()
    return {"cpu_s": cpu_box["cpu"], "published": published, "batches": batches}


# --- the run ------------------------------------------------------------------------


def _redis_cpu() -> float:
    import redis

    client = redis.Redis.from_url(_redis_url())
    try:
        info = client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    finally:
        client.close()


def _cleanup(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(_redis_url())
    try:
        keys = list(client.scan_iter(match=f"clinic:{prefix}:*", count=1000))
        keys += list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def run_mechanism(mechanism: str, opts: argparse.Namespace) -> dict:
    prefix = f"relaybench{uuid.uuid4().hex[:8]}"
    common = ["--mechanism", mechanism, "--prefix", prefix, "--sessions", str(opts.sessions)]
    common += ["--rate", str(opts.rate), "--drain", str(opts.drain)]
    sub = subprocess.Popen(
        ["taskset", "-c", str(opts.sub_core), sys.executable, "-m", "bench.relay_bench", "--role", "sub", *common],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sub.stdout is not None
        line = sub.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"{mechanism}: subscriber did not start")
        start = time.time() + 1.0 + opts.warmup
        end = start + opts.seconds
        window = ["--start", str(start), "--end", str(end)]
        assert sub.stdin is not None
        sub.stdin.write(f"{start} {end}\n")
        sub.stdin.flush()
        redis_cpu0 = _redis_cpu()
        pub = subprocess.run(
            [
                *("taskset", "-c", str(opts.pub_core), sys.executable, "-m", "bench.relay_bench", "--role", "pub"),
                *common,
                *window,
            ],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
            timeout=opts.warmup + opts.seconds + 60,
        )
        redis_cpu = _redis_cpu() - redis_cpu0
        out, _ = sub.communicate(timeout=opts.drain + 60)
    finally:
        if sub.poll() is None:
            sub.kill()
        _cleanup(prefix)
    pub_result = json.loads(pub.stdout.strip().splitlines()[-1])
    sub_result = json.loads(out.strip().splitlines()[-1])
    events = max(1, pub_result["published"]["window"])
    return {
        "mechanism": mechanism,
        "events_per_s": round(pub_result["published"]["window"] / opts.seconds),
        "pub_cpu_us_per_event": round(pub_result["cpu_s"] / events * 1e6, 1),
        "sub_cpu_us_per_event": round(sub_result["cpu_s"] / sub_result["received"]["window"] * 1e6, 1)
        if sub_result["received"]["window"]
        else None,
        "redis_cpu_us_per_event": round(redis_cpu / max(1, pub_result["published"]["all"]) * 1e6, 1),
        "p50_ms": round(sub_result["latencies"][0] * 1000, 1) if sub_result["latencies"] else None,
        "p99_ms": round(sub_result["latencies"][1] * 1000, 1) if sub_result["latencies"] else None,
        "published": pub_result["published"]["all"],
        "received": sub_result["received"]["all"],
        "lost": sub_result["lost"],
        "errors": pub_result["published"]["errors"] + sub_result["received"]["errors"],
        "gaps": sub_result["received"]["gaps"],
        "batches": pub_result["batches"],
    }


def _table(rows: list[dict], opts: argparse.Namespace) -> str:
    head = (
        f"{opts.sessions} sessions x {opts.rate:g} events/s, one subscriber per session; "
        f"publisher on core {opts.pub_core}, subscriber on core {opts.sub_core}; {opts.seconds:g} s measured\n\n"
        "| mechanism | events/s | publisher CPU/event | subscriber CPU/event | Redis CPU/event "
        "| p50 | p99 | lost | errors |\n|---|---|---|---|---|---|---|---|---|\n"
    )

    def show(value: float | None, unit: str) -> str:
        return "—" if value is None else f"{value} {unit}"

    lines = [
        f"| {r['mechanism']} | {r['events_per_s']} | {show(r['pub_cpu_us_per_event'], 'µs')} "
        f"| {show(r['sub_cpu_us_per_event'], 'µs')} | {show(r['redis_cpu_us_per_event'], 'µs')} "
        f"| {show(r['p50_ms'], 'ms')} | {show(r['p99_ms'], 'ms')} | {r['lost']} | {r['errors']} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("run", "pub", "sub"), default="run")
    parser.add_argument("--mechanisms", nargs="+", choices=MECHANISMS, default=list(MECHANISMS))
    parser.add_argument("--sessions", type=int, default=250)
    parser.add_argument("--rate", type=float, default=6.0, help="events per second per session")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--pub-core", type=int, default=0)
    parser.add_argument("--sub-core", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    # Internal: the child processes.
    parser.add_argument("--mechanism", choices=MECHANISMS)
    parser.add_argument("--prefix")
    parser.add_argument("--start", type=float)
    parser.add_argument("--end", type=float)
    opts = parser.parse_args(argv)

    if opts.role == "pub":
        _use_uvloop()
        print(json.dumps(asyncio.run(publisher(opts))), flush=True)
        return 0
    if opts.role == "sub":
        _use_uvloop()

        print(json.dumps(asyncio.run(subscriber(opts))), flush=True)
        return 0

    rows = []
    for mechanism in opts.mechanisms:
        row = run_mechanism(mechanism, opts)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(_table(rows, opts))
    if opts.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
