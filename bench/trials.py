"""One benchmark trial = fresh server(s) + N streams + the load generator
on its own core, with the servers' CPU, RSS and Redis state sampled while
the load runs. ``bench.run`` strings trials into the full benchmark; the
smoke test runs two tiny ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import procs, provision

# The capacity criterion of issue 6 (the design's per-chunk budget).
P99_LIMIT_MS = 93.0


@dataclass
class BenchContext:
    """Where the servers and the harness point: one database, one Redis
    database, one SECRET_KEY (so tokens issued here verify there)."""

    database_url: str
    redis_url: str
    secret_key: str
    work_dir: Path
    server_core: int | None = 0
    loadgen_core: int | None = 1
    warmup: float = 4.0
    duration: float = 10.0
    drain: float = 2.0
    channel_prefix: str = "voiceai-bench"
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "media").mkdir(exist_ok=True)
        (self.work_dir / "logs").mkdir(exist_ok=True)

    def server_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("DJANGO_SETTINGS_MODULE", "TEST_DATABASE_NAME", "PYTEST_CURRENT_TEST"):
            env.pop(name, None)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "voiceai.settings",
                "DEBUG": "0",
                "SECRET_KEY": self.secret_key,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "CHANNEL_LAYER_PREFIX": self.channel_prefix,
                "MEDIA_ROOT": str(self.work_dir / "media"),
                "TRANSCRIPTION_ENGINE": "fake",
                "FAKE_ENGINE_MODE": "echo",
                "FAKE_ENGINE_DELAY_MS": "0",
                # Connecting 1,000 streams can take longer than the default
                # 60 s token lifetime on a loaded machine.
                "STREAM_TOKEN_TTL_SECONDS": "900",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                # voiceai.ops.serve drains on SIGTERM; between trials there is
                # nothing to drain for.
                "DRAIN_SECONDS": "1",
            }
        )
        env.update(self.extra_env)
        return env


def run_loadgen(ctx: BenchContext, spec: dict[str, Any], on_phase=None, *, pin: bool = True) -> dict[str, Any]:
    """Run ``bench.loadgen`` pinned to the load generator's core; call
    ``on_phase(name)`` at each PHASE line; return its RESULT."""
    spec = {"warmup": ctx.warmup, "duration": ctx.duration, "drain": ctx.drain, **spec}
    fd, path = tempfile.mkstemp(prefix="loadgen-", suffix=".json", dir=ctx.work_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    argv = [procs.PY, "-m", "bench.loadgen", path]
    if pin and ctx.loadgen_core is not None:
        argv = ["taskset", "-c", str(ctx.loadgen_core), *argv]
    timeout = 120 + ctx.warmup + ctx.duration + ctx.drain + len(spec["streams"]) * 0.2
    proc = subprocess.Popen(argv, cwd=procs.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result: dict[str, Any] | None = None
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("PHASE ") and on_phase is not None:
                on_phase(line.split()[1])
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
            if time.monotonic() > deadline:
                break
        proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(path)
    if result is None:
        raise RuntimeError(f"load generator failed: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
    return result


def _core_ticks() -> dict[str, tuple[int, int]]:
    """Busy and total jiffies per core from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *vals = line.split()
                ticks = [int(v) for v in vals]
                idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
                out[name] = (sum(ticks) - idle, sum(ticks))
    return out


class _Sampler:
    """Samples the servers (and our Redis keys) at the load generator's
    phases: idle before the load, at the start and the end of the window."""

    def __init__(self, servers: list[procs.ServerProcess], redis_url: str | None, redis_patterns: list[str]) -> None:
        self.servers = servers
        self.redis_url = redis_url
        self.redis_patterns = redis_patterns
        self.idle_rss = [s.rss_bytes() for s in servers]
        self.idle_redis = self._redis()
        self.cpu0: list[float] = []
        self.cpu1: list[float] = []
        self.t0 = self.t1 = 0.0
        self.load_rss: list[int] = []
        self.load_redis: tuple[int, int] = (0, 0)
        self.loadavg = ""
        self.ticks0: dict[str, tuple[int, int]] = {}
        self.ticks1: dict[str, tuple[int, int]] = {}

    def _redis(self) -> tuple[int, int]:
        if not self.redis_url:
            return (0, 0)
        return provision.redis_keys_bytes(self.redis_url, self.redis_patterns)

    def __call__(self, phase: str) -> None:
        if phase == "measure_start":
            self.t0 = time.monotonic()
            self.ticks0 = _core_ticks()
            self.cpu0 = [s.cpu_seconds() for s in self.servers]
            self.load_rss = [s.rss_bytes() for s in self.servers]
            self.load_redis = self._redis()
        elif phase == "measure_end":
            self.t1 = time.monotonic()
            self.ticks1 = _core_ticks()
            self.cpu1 = [s.cpu_seconds() for s in self.servers]
            self.load_rss = [max(a, s.rss_bytes()) for a, s in zip(self.load_rss, self.servers, strict=True)]
            with open("/proc/loadavg") as f:
                self.loadavg = " ".join(f.read().split()[:3])

    def core_busy(self) -> dict[str, float]:
        """How busy each core was during the window, in percent — with the
        servers' own share this shows how much other work (the shared
        machine's other users) ran on the server's core."""
        out = {}
        for core, (busy1, total1) in self.ticks1.items():
            busy0, total0 = self.ticks0.get(core, (busy1, total1))
            out[core] = round(100 * (busy1 - busy0) / max(1, total1 - total0), 1)
        return out

    def server_stats(self, n_streams: list[int], frames_done: int | None = None) -> list[dict[str, Any]]:
        """Per server: CPU share of one core, RSS growth per stream, and —
        for the first server, given the Transcripts it delivered in the
        window — CPU milliseconds per frame. CPU per frame is the figure
        that survives a shared machine: a starved server does less work
        but not cheaper work, so it projects capacity where latency can't."""
        out = []
        wall = max(1e-6, self.t1 - self.t0)
        for i, server in enumerate(self.servers):
            n = max(1, n_streams[i])
            cpu = (self.cpu1[i] - self.cpu0[i]) if self.cpu1 else 0.0
            grow = self.load_rss[i] - self.idle_rss[i] if self.load_rss else 0
            out.append(
                {
                    "server": server.name,
                    "streams": n_streams[i],
                    "cpu_pct": round(100 * cpu / wall, 1),
                    "rss_idle_mb": round(self.idle_rss[i] / 2**20, 1),
                    "rss_load_mb": round(self.load_rss[i] / 2**20, 1) if self.load_rss else None,
                    "rss_per_stream_kb": round(grow / n / 1024, 1),
                }
            )
            if i == 0 and frames_done:
                per_frame_ms = 1000 * cpu / frames_done
                out[-1]["cpu_ms_per_frame"] = round(per_frame_ms, 4)
                # 10 frames/s per stream: streams one fully available core could carry.
                out[-1]["projected_streams_per_core"] = round(1000 / (per_frame_ms * 10)) if per_frame_ms else None
        return out


def _verdict(result: dict[str, Any], n: int) -> tuple[bool, str]:
    lg = result["loadgen"]
    p99 = lg["producer"]["p99_ms"]
    problems = []
    if lg["connected"] < n:
        problems.append(f"{n - lg['connected']} not connected")
    if lg["errors"]:
        problems.append(f"{sum(lg['errors'].values())} errors")
    if lg["missing_transcripts"]:
        problems.append(f"{lg['missing_transcripts']} frames without Transcript")
    if p99 is None or p99 >= P99_LIMIT_MS:
        problems.append(f"p99 {p99} ms")
    # Viewers may get coalesced partials (not one per frame), so frames
    # without a viewer event are reported, not failed; no event at all is.
    if result.get("viewers") and not lg["viewer"]["count"]:
        problems.append("no Transcript reached the viewers")
    return (not problems, "; ".join(problems) or "ok")


def trial_baseline(ctx: BenchContext, n: int) -> dict[str, Any]:
    """N streams against the plain ``websockets`` server on the server core."""
    server = procs.start_baseline(core=ctx.server_core, log_dir=ctx.work_dir / "logs")
    try:
        sampler = _Sampler([server], None, [])
        spec = {
            "origin": f"http://127.0.0.1:{server.port}",
            "streams": [{"host": "127.0.0.1", "port": server.port, "path": "/", "viewer": None} for _ in range(n)],
        }
        loadgen = run_loadgen(ctx, spec, sampler)
        result = {"trial": "baseline", "server": "websockets (plain)", "n": n, "loadgen": loadgen}
        result["servers"] = sampler.server_stats([n], loadgen.get("transcripts_in_window"))
        result["loadavg"] = sampler.loadavg
        result["core_busy"] = sampler.core_busy()
    finally:
        server.stop()
    result["pass"], result["why"] = _verdict(result, n)
    return result


def trial_platform(
    ctx: BenchContext,
    n: int,
    *,
    server_kind: str = "uvicorn",
    viewers: bool = False,
    two_process: bool = False,
    pin: bool = True,
    label: str = "platform",
    profile_seconds: float = 0.0,
    env: dict[str, str] | None = None,
    loadgen_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """N producer sessions against the project's ASGI app.

    - ``viewers``: a viewer per session, connected to a second server
      process (through the Redis channel layer);
    - ``two_process`` without viewers: producers split across two
      processes (the design's whole-load check);
    - ``pin``: server A on the server core, server B on the load
      generator's core (with ``two_process`` the load generator then
      floats); unpinned lets the OS place all of them;
    - ``env``: the servers' environment (default ``ctx.server_env()``);
    - ``loadgen_extra``: more of the load generator's SPEC (e.g. ``finals``).
    """
    bc = provision.bench_clinic(label)
    cid = str(bc.clinic.pk)
    sessions = provision.sessions_with_tokens(bc, n, viewer_tokens=viewers)
    env = env if env is not None else ctx.server_env()
    log_dir = ctx.work_dir / "logs"
    servers: list[procs.ServerProcess] = []
    profile: dict[str, Any] | None = None
    gc_stats = ctx.work_dir / f"gc-{label}-{n}-{server_kind}.json"
    try:
        servers.append(
            procs.start_asgi(
                server_kind,
                env={**env, "BENCH_GC_STATS": str(gc_stats)},
                core=ctx.server_core if pin else None,
                log_dir=log_dir,
            )
        )
        if viewers or two_process:
            core_b = ctx.loadgen_core if pin else None
            servers.append(procs.start_asgi(server_kind, env=env, core=core_b, log_dir=log_dir))
        a = servers[0]
        b = servers[-1]
        streams = []
        per_server = [0] * len(servers)
        for i, s in enumerate(sessions):
            target = a if (viewers or not two_process or i % 2 == 0) else b
            per_server[servers.index(target)] += 1
            stream: dict[str, Any] = {
                "host": "127.0.0.1",
                "port": target.port,
                "path": f"/ws/v1/sessions/{s.id}/stream?token={quote(s.producer_token)}",
                "viewer": None,
            }
            if viewers:
                stream["viewer"] = {
                    "host": "127.0.0.1",
                    "port": b.port,
                    "path": f"/ws/v1/sessions/{s.id}/live?token={quote(s.viewer_token or '')}",
                }
            streams.append(stream)
        patterns = [f"*{cid}*"]
        sampler = _Sampler(servers, ctx.redis_url, patterns)
        prof_holder: dict[str, Any] = {}

        def on_phase(phase: str) -> None:
            sampler(phase)
            if phase == "measure_start" and profile_seconds:
                prof_holder["proc"] = _start_profile(a, profile_seconds, ctx)

        spec = {"origin": f"http://127.0.0.1:{a.port}", "streams": streams, **(loadgen_extra or {})}
        # The design load: one server per core, everything else (load
        # generator, Redis, PostgreSQL) where the OS puts it.
        loadgen = run_loadgen(ctx, spec, on_phase, pin=pin and not two_process)
        if "proc" in prof_holder:
            profile = _finish_profile(prof_holder["proc"])
        result: dict[str, Any] = {
            "trial": label,
            "server": server_kind,
            "n": n,
            "viewers": viewers,
            "processes": len(servers),
            "pinned": pin,
            "loadgen": loadgen,
            "servers": sampler.server_stats(
                per_server if not viewers else [n, n],
                loadgen.get("transcripts_in_window") if len(servers) == 1 or viewers else None,
            ),
            "loadavg": sampler.loadavg,
            "core_busy": sampler.core_busy(),
            "redis": {
                "keys_idle": sampler.idle_redis[0],
                "keys_load": sampler.load_redis[0],
                "bytes_per_session": round((sampler.load_redis[1] - sampler.idle_redis[1]) / max(1, n)),
            },
        }
        if profile is not None:
            result["profile"] = profile
        for server in servers:
            if not server.alive():
                result.setdefault("crashed", []).append(server.log_tail())
    finally:
        for server in servers:
            server.stop()
        if ctx.redis_url:
            provision.redis_delete(ctx.redis_url, [f"*{cid}*"])
    if gc_stats.exists():  # the gc-probing server kinds write it once a second
        result["gc"] = json.loads(gc_stats.read_text())
    result["pass"], result["why"] = _verdict(result, n)
    if result.get("crashed"):
        result["pass"], result["why"] = False, "server crashed"
    return result


# --- profiling -----------------------------------------------------------------


def _start_profile(server: procs.ServerProcess, seconds: float, ctx: BenchContext) -> dict[str, Any]:
    """py-spy in non-blocking mode (it doesn't pause the server) on the
    server's Python process; collapsed stacks to a file."""
    py_spy = Path(procs.PY).parent / "py-spy"
    target = server.tree()[-1] if server.name in ("granian", "hypercorn") else server.pid
    out = ctx.work_dir / f"profile-{server.name}-{server.port}.txt"
    argv = [str(py_spy), "record", "--nonblocking", "-r", "200", "-d", str(int(seconds)), "-f", "raw", "-o", str(out)]
    argv += ["-p", str(target)]
    if ctx.loadgen_core is not None:
        argv = ["taskset", "-c", str(ctx.loadgen_core), *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return {"proc": proc, "out": out}


def _finish_profile(holder: dict[str, Any]) -> dict[str, Any]:
    proc = holder["proc"]
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out: Path = holder["out"]
    if not out.exists():
        return {"error": (proc.stderr.read() or "")[-500:]}
    from bench.profile_summary import summarise_collapsed

    return summarise_collapsed(out.read_text())
