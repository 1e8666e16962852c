"""A repeatable probe of server CPU per producer connect (issue 10, target 3).

    python -m bench.connect_cpu [--n 300] [--repeat 3] [--profile]

The production launcher (``python -m voiceai.ops.serve``, default settings,
PostgreSQL + Redis, fake echo engine) pinned to core 0; the load generator
on core 1 connects ``n`` producers (``Begin`` received, no audio) after a
warm-up of a few, and the server's CPU (``/proc/<pid>/stat`` utime+stime)
over that window ÷ n is the figure — ``crowds.trial_connect_cost``, the
``make bench`` trial, run alone and repeated. ``--profile`` runs it once
more under py-spy (non-blocking, 200 Hz) and prints where the time went:
leaf functions and the connect's own stages, inclusive.

Same environment as ``python -m bench`` (BENCH_DATABASE_URL, BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import crowds, procs, provision
from bench.run import DEFAULT_DB, DEFAULT_REDIS
from bench.trials import BenchContext

# Inclusive shares of these frames (function names as py-spy prints them):
# the connect's stages, so a profile says which one still costs.
STAGES = (
    "producer_connect",
    "authorize",
    "stream_token_spend",
    "claim_slot_sync",
    "stream_start",
    "_session_go_live",
    "position_sync",
    "start",  # ProducerStream.start
    "subscribe",
    "open_replaying",
    "run_asgi",
    "send_json",
    "info",  # a structlog line
    "execute",
    "db_async",
)


def _context() -> BenchContext:
    database_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_DB
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS
    provision.ensure_database(database_url)
    secret_key = secrets.token_urlsafe(40)
    provision.django_setup(
        {
            "DJANGO_SETTINGS_MODULE": "voiceai.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": secret_key,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "TRANSCRIPTION_ENGINE": "fake",
            "LOG_LEVEL": "WARNING",
        }
    )
    provision.migrate()
    return BenchContext(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secret_key,
        work_dir=Path(tempfile.mkdtemp(prefix="voiceai-connect-cpu-")),
    )


class _Profiler:
    """py-spy on the server for the measured window only (started at the
    load generator's ``measure_start``, stopped at ``measure_end``)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen | None = None

    def attach(self, pid: int) -> None:
        py_spy = Path(procs.PY).parent / "py-spy"
        argv = ["taskset", "-c", "1", str(py_spy), "record", "--nonblocking", "-r", "200", "-f", "raw"]
        argv += ["-o", str(self.out), "-p", str(pid)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # py-spy's attach, before the connects begin

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)


def _summarise(raw: str) -> dict[str, Any]:
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf[frames[-1].strip()] += n
        names = {f.strip().split(" (", 1)[0] for f in frames}
        for stage in STAGES:
            if stage in names:
                inclusive[stage] += n
    return {
        "samples": total,
        "leaf_top": [(f, round(100 * n / total, 1)) for f, n in leaf.most_common(25)] if total else [],
        "stages_pct": {s: round(100 * inclusive[s] / total, 1) for s in STAGES} if total else {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.connect_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="one more run under py-spy")
    args = parser.parse_args(argv)
    procs.raise_fd_limit()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    ctx = _context()
    figures = []
    for i in range(args.repeat):
        r = crowds.trial_connect_cost(ctx, args.n)
        figures.append(r["cpu_ms_per_connect"])
        print(
            f"run {i + 1}: {r['cpu_ms_per_connect']} ms CPU/connect, {r['connects_per_s']} connects/s, "
            f"begun {r['loadgen']['begun']}/{args.n}, errors {r['loadgen']['errors']}",
            flush=True,
        )
    if figures and all(f is not None for f in figures):
        print(f"median {statistics.median(figures)} ms (runs: {figures})", flush=True)
    if args.profile:
        out = ctx.work_dir / "connect-profile.txt"
        profiler = _Profiler(out)
        r = crowds.trial_connect_cost(ctx, args.n, profiler=profiler)
        print(f"profiled run: {r['cpu_ms_per_connect']} ms CPU/connect (py-spy attached)", flush=True)
        if out.exists():
            summary = _summarise(out.read_text())
            print(f"py-spy samples: {summary['samples']} (raw: {out})")
            print("stages, inclusive % of samples:")
            for stage, pct in summary["stages_pct"].items():
                print(f"  {stage:20} {pct:5.1f}")
            print("leaf functions, % of samples:")
            for frame, pct in summary["leaf_top"]:
                print(f"  {pct:5.1f}  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
