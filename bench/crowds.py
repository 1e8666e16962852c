"""The crowd trials of issue 10: what a real morning and a real deploy
bring, on the production launcher (``python -m voiceai.ops.serve``) with the
production defaults.

- ``trial_rest_burst``: many ``POST /api/v1/sessions/`` from a few threads
  at once; answers by status class and the PostgreSQL connections the
  server process holds meanwhile (its own sockets to PostgreSQL, matched to
  ``pg_stat_activity`` by client port);
- ``trial_connect_cost``: server CPU per producer connect (``Begin``
  received, no audio) on an otherwise idle server;
- ``trial_connect_storm``: every producer connects at once and streams from
  its ``Begin`` on (what a drain's 1012 sends to the survivors): time until
  all are connected, p99 per second of the run;
- ``trial_watched``: producers on process A, one viewer each on process B,
  the fake engine emitting a final every second of audio: viewer and
  producer latency, every final at every viewer exactly once and in order.

The servers get ``BenchContext.server_env`` minus the settings the capacity
trials tune (``PRODUCTION_TUNED``), so they run on the defaults a new
operator gets. The only other differences from production are the fake
echo engine (the load generator times frames by its byte offsets) and
``DRAIN_SECONDS=1``, which only shortens stopping a server between trials.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bench import procs, provision
from bench.trials import P99_LIMIT_MS, BenchContext, _Sampler, run_loadgen, trial_platform

# Targets of issue 10 (one core per server process).
TARGETS = {
    "rest_5xx": 0,
    "pg_connections_default_max": 20,
    "all_connected_s": 5.0,
    "p99_holds_from_s": 10,
    "cpu_ms_per_connect": 3.0,
    "viewer_p99_ms": 300.0,
    "producer_p99_ms": P99_LIMIT_MS,
}

# Settings ``BenchContext.server_env`` sets for the capacity trials that a
# production deployment would not: left at their defaults here.
PRODUCTION_TUNED = ("STREAM_TOKEN_TTL_SECONDS",)

# The fake engine's final cadence for the watched sessions: one final per
# second of audio, i.e. one per flush (AUDIO_FLUSH_SECONDS).
ECHO_FINAL_MS = 1000


def production_env(ctx: BenchContext, **extra: str) -> dict[str, str]:
    env = ctx.server_env()
    for name in PRODUCTION_TUNED:
        if name not in ctx.extra_env:  # unless the caller asked for it
            env.pop(name, None)
    env.update(extra)
    return env


# --- PostgreSQL connections of one process ----------------------------------------


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _local_ports_to(pid: int, inodes: set[str], remote_port: int) -> set[int]:
    """Local ports of the established TCP sockets among ``inodes`` whose
    peer listens on ``remote_port`` (the process's network namespace)."""
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[9] not in inodes or fields[3] != "01":  # 01: ESTABLISHED
                        continue
                    if int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


class PgConnectionSampler:
    """Samples, every ``interval`` seconds, the PostgreSQL connections one
    server process holds: its own TCP sockets to PostgreSQL's port, and the
    backends of ``pg_stat_activity`` whose client port is one of them (with
    their state: active, idle, idle in transaction)."""

    def __init__(self, server: procs.ServerProcess, database_url: str, interval: float = 0.05) -> None:
        self.server = server
        self.interval = interval
        parts = urlsplit(database_url)
        self.pg_port = parts.port or 5432
        self.database_url = database_url
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self, conn) -> dict[str, Any]:
        pids = self.server.tree()
        ports = _local_ports_to(self.server.pid, _socket_inodes(pids), self.pg_port)
        states: dict[str, int] = {}
        if ports:
            rows = conn.execute(
                "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity WHERE client_port = ANY(%s) GROUP BY 1",
                (list(ports),),
            ).fetchall()
            states = {state: n for state, n in rows}
        # The settings name each process's connections ``<name>:<pid>`` (a
        # cross-check of the port match; 0 where they don't).
        named, total = conn.execute(
            "SELECT count(*) FILTER (WHERE application_name LIKE %s), count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend'",
            (f"%:{self.server.pid}",),
        ).fetchone()
        return {
            "sockets": len(ports),
            "backends": sum(states.values()),
            "named": named,
            "states": states,
            "server_total": total,
        }

    def _loop(self) -> None:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stop.is_set():
                self.samples.append(self.sample(conn))
                self._stop.wait(self.interval)
            # One at the end too: a burst shorter than the interval (a smoke
            # test's few requests on a fast machine) would otherwise have been
            # sampled only before its first request opened the pool.
            self.samples.append(self.sample(conn))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pg-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def summary(self) -> dict[str, Any]:
        s = self.samples
        return {
            "samples": len(s),
            "max_sockets": max((x["sockets"] for x in s), default=0),
            "max_backends": max((x["backends"] for x in s), default=0),
            "max_named": max((x["named"] for x in s), default=0),
            "max_idle": max((x["states"].get("idle", 0) for x in s), default=0),
            "max_server_total": max((x["server_total"] for x in s), default=0),
        }


def pool_settings() -> dict[str, Any]:
    """The database connection settings the servers run with (this process
    reads the same environment): the psycopg pool's bounds if there is one."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    pool = (db.get("OPTIONS") or {}).get("pool")
    out: dict[str, Any] = {"conn_max_age": db.get("CONN_MAX_AGE"), "pool": bool(pool)}
    if pool:
        options = pool if isinstance(pool, dict) else {}
        min_size = options.get("min_size", 4)  # psycopg_pool's defaults
        out["pool_min"] = min_size
        out["pool_max"] = options.get("max_size") or min_size
    return out


# --- REST burst ---------------------------------------------------------------------


def _burst(port: int, api_key: str, *, requests: int, threads: int) -> dict[str, Any]:
    """``requests`` session creates from ``threads`` threads, each on its
    own keep-alive connection."""
    body = json.dumps({"sample_rate": 16000}).encode()
    headers = {
        "Authorization": f"Api-Key {api_key}",
        "Content-Type": "application/json",
        "Host": "127.0.0.1",
    }
    lock = threading.Lock()
    remaining = [requests]
    statuses: dict[str, int] = {}
    latencies: list[float] = []

    def take() -> bool:
        with lock:
            if remaining[0] <= 0:
                return False
            remaining[0] -= 1
            return True

    def count(key: str) -> None:
        with lock:
            statuses[key] = statuses.get(key, 0) + 1

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while take():
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/sessions/", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                count(str(resp.status))
                with lock:
                    latencies.append(time.perf_counter() - t0)
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                count(f"exception:{type(exc).__name__}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker) for _ in range(threads)]:
            f.result()
    wall = time.perf_counter() - t0
    latencies.sort()
    classes: dict[str, int] = {}
    for key, n in statuses.items():
        cls = key if key.startswith("exception") else f"{key[0]}xx"
        classes[cls] = classes.get(cls, 0) + n
    return {
        "requests": requests,
        "threads": threads,
        "seconds": round(wall, 2),
        "statuses": statuses,
        "classes": classes,
        "created": statuses.get("201", 0),
        "creates_per_s": round(statuses.get("201", 0) / wall, 1) if wall else None,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 1)
        if latencies
        else None,
    }


def trial_rest_burst(ctx: BenchContext, *, requests: int = 300, threads: int = 8) -> dict[str, Any]:
    bc = provision.bench_clinic("burst")
    server = procs.start_asgi("serve", env=production_env(ctx), core=ctx.server_core, log_dir=ctx.work_dir / "logs")
    try:
        sampler = PgConnectionSampler(server, ctx.database_url)
        sampler.start()
        cpu0 = server.cpu_seconds()
        try:
            burst = _burst(server.port, bc.api_key_raw, requests=requests, threads=threads)
        finally:
            sampler.stop()
        # Server CPU per answer: unlike creates/s, it survives a busy machine.
        burst["cpu_ms_per_request"] = round(1000 * (server.cpu_seconds() - cpu0) / max(1, requests), 2)
        during = sampler.summary()
        # What the process keeps once the burst is over.
        time.sleep(1.0)
        import psycopg

        with psycopg.connect(ctx.database_url, autocommit=True) as conn:
            after = sampler.sample(conn)
        crashed = None if server.alive() else server.log_tail()
    finally:
        server.stop()
    result: dict[str, Any] = {
        "trial": "rest_burst",
        **burst,
        "pg": {
            **during,
            "after_sockets": after["sockets"],
            "after_backends": after["backends"],
            "after_named": after["named"],
        },
        "db_settings": pool_settings(),
    }
    if crashed:
        result["crashed"] = crashed
    return _judge_rest(result)


def _judge_rest(r: dict[str, Any]) -> dict[str, Any]:
    classes = r["classes"]
    server_errors = classes.get("5xx", 0) + sum(n for k, n in classes.items() if k.startswith("exception"))
    bound = r["db_settings"].get("pool_max") or TARGETS["pg_connections_default_max"]
    held = max(r["pg"]["max_sockets"], r["pg"]["max_backends"], r["pg"]["max_named"])
    r["targets"] = {
        "no_5xx": server_errors == 0,
        "pg_connections_bounded": held <= bound,
    }
    r["pg_bound"] = bound
    r["pass"] = all(r["targets"].values()) and not r.get("crashed")
    r["why"] = _why(r)
    return r


# --- connects --------------------------------------------------------------------------


def _producer_specs(sessions: list[provision.BenchSession], port: int) -> list[dict[str, Any]]:
    return [
        {
            "host": "127.0.0.1",
            "port": port,
            "path": f"/ws/v1/sessions/{s.id}/stream?token={quote(s.producer_token)}",
            "viewer": None,
        }
        for s in sessions
    ]


def trial_connect_cost(
    ctx: BenchContext, n: int, *, concurrency: int = 50, warm: int = 10, profiler: Any = None
) -> dict[str, Any]:
    """Server CPU per producer connect: the process's CPU delta while ``n``
    producers connect (``Begin`` received) without streaming, ÷ n. A few
    connects first warm the process up (first database connection, lazy
    imports), so the figure is a steady cost, not a start-up one."""
    bc = provision.bench_clinic("connect")
    cid = str(bc.clinic.pk)
    warm_sessions = provision.sessions_with_tokens(bc, warm, viewer_tokens=False)
    sessions = provision.sessions_with_tokens(bc, n, viewer_tokens=False)
    server = procs.start_asgi("serve", env=production_env(ctx), core=ctx.server_core, log_dir=ctx.work_dir / "logs")
    try:
        origin = f"http://127.0.0.1:{server.port}"
        if warm:
            run_loadgen(
                ctx, {"mode": "connect_only", "origin": origin, "streams": _producer_specs(warm_sessions, server.port)}
            )
            time.sleep(1.0)
        if profiler is not None:  # bench.connect_cpu --profile: py-spy on the measured connects
            profiler.attach(server.pid)
        sampler = _Sampler([server], None, [])
        spec = {
            "mode": "connect_only",
            "origin": origin,
            "connect_concurrency": concurrency,
            "streams": _producer_specs(sessions, server.port),
        }
        lg = run_loadgen(ctx, spec, sampler)
        if profiler is not None:
            profiler.stop()
        cpu = sampler.cpu1[0] - sampler.cpu0[0]
        wall = sampler.t1 - sampler.t0
        crashed = None if server.alive() else server.log_tail()
    finally:
        server.stop()
        if ctx.redis_url:
            provision.redis_delete(ctx.redis_url, [f"*{cid}*"])
    begun = lg["begun"]
    per_connect = 1000 * cpu / begun if begun else None
    result: dict[str, Any] = {
        "trial": "connect_cost",
        "n": n,
        "loadgen": lg,
        "server_cpu_s": round(cpu, 3),
        "wall_s": round(wall, 2),
        "cpu_ms_per_connect": round(per_connect, 2) if per_connect is not None else None,
        "connects_per_s": round(begun / wall, 1) if wall else None,
    }
    if crashed:
        result["crashed"] = crashed
    result["targets"] = {
        "cpu_per_connect": per_connect is not None and per_connect <= TARGETS["cpu_ms_per_connect"],
        "no_failed_connects": begun == n and not lg["errors"],
    }
    result["pass"] = all(result["targets"].values()) and not crashed
    result["why"] = _why(result)
    return result


def long_pauses(log_path: Path, started_at: float | None) -> list[dict[str, Any]]:
    """The server's ``gc_pause``, ``malloc_trim_slow`` and ``event_loop_lag``
    log lines (50 ms or more: voiceai/ops/collector.py, malloc.py and
    loop_lag.py), each
    placed in the second of the trial it happened in (from the load
    generator's wall-clock start)."""
    out: list[dict[str, Any]] = []
    if started_at is None or not log_path.exists():
        return out
    for line in log_path.read_text(errors="replace").splitlines():
        if '"gc_pause"' not in line and '"malloc_trim_slow"' not in line and '"event_loop_lag"' not in line:
            continue
        try:
            rec = json.loads(line)
            at = dt.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError):
            continue
        out.append(
            {
                "second": round(at - started_at, 2),
                "event": rec.get("event"),
                "generation": rec.get("generation"),
                "ms": rec.get("pause_ms", rec.get("trim_ms", rec.get("lag_ms"))),
            }
        )
    return out


def trial_connect_storm(ctx: BenchContext, n: int, *, seconds: float = 30.0) -> dict[str, Any]:
    bc = provision.bench_clinic("storm")
    cid = str(bc.clinic.pk)
    sessions = provision.sessions_with_tokens(bc, n, viewer_tokens=False)
    server = procs.start_asgi("serve", env=production_env(ctx), core=ctx.server_core, log_dir=ctx.work_dir / "logs")
    try:
        sampler = _Sampler([server], None, [])
        spec = {
            "mode": "storm",
            "origin": f"http://127.0.0.1:{server.port}",
            "duration": seconds,
            "drain": 2.0,
            "p99_limit_ms": P99_LIMIT_MS,
            "streams": _producer_specs(sessions, server.port),
        }
        lg = run_loadgen(ctx, spec, sampler)
        crashed = None if server.alive() else server.log_tail()
        stats = sampler.server_stats([n])
    finally:
        server.stop()
        if ctx.redis_url:
            provision.redis_delete(ctx.redis_url, [f"*{cid}*"])
    result: dict[str, Any] = {
        "trial": "connect_storm",
        "n": n,
        "loadgen": lg,
        "servers": stats,
        "core_busy": sampler.core_busy(),
        "loadavg": sampler.loadavg,
        "long_pauses": long_pauses(server.log_path, lg.get("started_at")),
    }
    if crashed:
        result["crashed"] = crashed
    all_s = lg["all_connected_s"]
    holds = lg["p99_holds_from_s"]
    result["targets"] = {
        "all_connected": all_s is not None and all_s <= TARGETS["all_connected_s"],
        "p99_recovers": holds is not None and holds <= TARGETS["p99_holds_from_s"],
        "no_failed_connects": lg["begun"] == n and not lg["errors"],
    }
    result["pass"] = all(result["targets"].values()) and not crashed
    result["why"] = _why(result)
    return result


# --- watched sessions ---------------------------------------------------------------


def trial_watched(ctx: BenchContext, n: int) -> dict[str, Any]:
    """Producers on process A, one viewer each on process B; every session
    ends with CloseStream so its finals can be counted at every viewer."""
    env = production_env(ctx, FAKE_ENGINE_ECHO_FINAL_MS=str(ECHO_FINAL_MS))
    r = trial_platform(
        ctx, n, server_kind="serve", viewers=True, label="watched", env=env, loadgen_extra={"finals": True}
    )
    lg = r.get("loadgen") or {}
    finals = lg.get("finals") or {}
    faults = sum(finals.get(k, 0) for k in ("missing", "duplicate", "out_of_order", "unexpected"))
    viewer_p99 = (lg.get("viewer") or {}).get("p99_ms")
    producer_p99 = (lg.get("producer") or {}).get("p99_ms")
    r["targets"] = {
        "viewer_p99": viewer_p99 is not None and viewer_p99 <= TARGETS["viewer_p99_ms"],
        "producer_p99": producer_p99 is not None and producer_p99 < TARGETS["producer_p99_ms"],
        "finals_exactly_once_in_order": bool(finals.get("viewer"))
        and faults == 0
        and not finals.get("viewers_without_end")
        and not finals.get("producers_short_of_stored")
        and not finals.get("producers_without_metadata")
        # Seq gaps are reported, not judged: the relay numbers events a
        # viewer is never sent (presence, takeover), so a gap alone proves
        # no loss; a seq that goes backwards is wrong whatever the numbering.
        and not finals.get("seq_regressions"),
        "no_errors": lg.get("connected") == n and not lg.get("errors") and not lg.get("missing_transcripts"),
    }
    r["pass"] = all(r["targets"].values()) and not r.get("crashed")
    r["why"] = _why(r)
    return r


def _why(r: dict[str, Any]) -> str:
    if r.get("crashed"):
        return "server crashed"
    missed = [name for name, ok in r["targets"].items() if not ok]
    return "ok" if not missed else "missed: " + ", ".join(missed)


def run_crowds(
    ctx: BenchContext, *, burst: int, storm_n: int, connect_n: int, watched_n: int, log, skip: frozenset = frozenset()
) -> dict[str, Any]:
    """The four trials in order; ``skip`` names any of: burst, connect, storm, watched."""
    from bench import report

    out: dict[str, Any] = {}
    if "burst" not in skip:
        log(f"crowds: REST burst, {burst} creates from 8 threads")
        out["rest_burst"] = trial_rest_burst(ctx, requests=burst)
        log(report.crowd_line(out["rest_burst"]))
    if "connect" not in skip:
        log(f"crowds: server CPU per connect, {connect_n} producers, no audio")
        out["connect_cost"] = trial_connect_cost(ctx, connect_n)
        log(report.crowd_line(out["connect_cost"]))
    if "storm" not in skip:
        log(f"crowds: connect storm, {storm_n} producers streaming from Begin")
        out["connect_storm"] = trial_connect_storm(ctx, storm_n)
        log(report.crowd_line(out["connect_storm"]))
    if "watched" not in skip:
        log(f"crowds: {watched_n} watched sessions (producers on A, viewers on B)")
        out["watched"] = trial_watched(ctx, watched_n)
        log(report.crowd_line(out["watched"]))
    return out
