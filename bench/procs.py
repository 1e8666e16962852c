"""Server processes for the benchmark: start them pinned to a core, wait
until they accept connections, sample their CPU and memory from /proc,
stop them.

Every server binds 127.0.0.1 on a free port and is terminated by
``ServerProcess.stop`` (SIGTERM, then SIGKILL after a grace period), so a
failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_BIN = Path(PY).parent


def raise_fd_limit() -> None:
    """Thousands of sockets per process: lift the soft file limit to the
    hard one (children inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    candidate = _BIN / name
    return str(candidate) if candidate.exists() else name


def _uvicorn_app(app: str, port: int) -> list[str]:
    """Bare uvicorn with its defaults, for another app module (the A/B
    variants: compare them with ``uvicorn-auto``)."""
    return [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


def _uvicorn_ws(ws: str, port: int) -> list[str]:
    """uvicorn on the project's app with one WebSocket implementation."""
    return [
        *_uvicorn_app("voiceai.asgi:application", port),
        *("--loop", "uvloop", "--http", "httptools", "--ws", ws, "--no-access-log", "--log-level", "warning"),
    ]


# The ASGI servers compared on the WebSocket path. Each entry turns a port
# into an argv. All of them serve the same ``voiceai.asgi:application``.
ASGI_SERVERS: dict[str, object] = {
    "uvicorn": lambda port: _uvicorn_ws("websockets", port),
    # Bare uvicorn with its defaults: uvloop, httptools, and --ws auto, which
    # is websockets-sansio in uvicorn 0.54.
    "uvicorn-auto": lambda port: _uvicorn_app("voiceai.asgi:application", port),
    # The production launcher, what the Dockerfile runs (voiceai/ops/serve.py:
    # uvicorn, ws="websockets-sansio", no per-message deflate, drain on SIGTERM).
    "serve": lambda port: [PY, "-m", "voiceai.ops.serve", "--host", "127.0.0.1", "--port", str(port)],
    "uvicorn-gcprobe": lambda port: _uvicorn_app("bench.asgi_gcprobe:application", port),
    "uvicorn-nofreeze": lambda port: _uvicorn_app("bench.asgi_unfrozen:application", port),
    "uvicorn-gcdefault": lambda port: _uvicorn_app("bench.asgi_gcdefault:application", port),
    "uvicorn-sansio": lambda port: _uvicorn_ws("websockets-sansio", port),
    "uvicorn-wsproto": lambda port: _uvicorn_ws("wsproto", port),
    "daphne": lambda port: [_bin("daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0", "voiceai.asgi:application"],
    "hypercorn": lambda port: [
        _bin("hypercorn"),
        "-b",
        f"127.0.0.1:{port}",
        "-k",
        "uvloop",
        "--log-level",
        "warning",
        "voiceai.asgi:application",
    ],
    "granian": lambda port: [
        _bin("granian"),
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--runtime-threads",
        "1",
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
        "--ws",
        "voiceai.asgi:application",
    ],
}


def server_available(name: str) -> bool:
    if name in ("hypercorn", "granian", "daphne"):
        exe = _bin(name)
        return os.path.isabs(exe) and os.path.exists(exe)
    return True


@dataclass
class ServerProcess:
    name: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tree(self) -> list[int]:
        """The server's pid and its descendants (granian and hypercorn run
        their workers as child processes)."""
        parents: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(parents.get(pid, []))
        return out

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime and stime are fields 14 and 15 of stat (1-based), i.e.
            # 11 and 12 after the command name.
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
        return total

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                            break
            except OSError:
                continue
        return total

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _taskset(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None else []


def _wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")


def start_asgi(
    kind: str, *, env: dict[str, str], core: int | None, log_dir: Path, timeout: float = 60.0
) -> ServerProcess:
    port = free_port()
    argv = _taskset(core) + ASGI_SERVERS[kind](port)  # type: ignore[operator]
    log_path = log_dir / f"{kind}-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = ServerProcess(kind, port, proc, log_path)
    try:
        _wait_port(port, proc, timeout)
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f"{kind}: {exc}\n{server.log_tail()}") from None
    return server


def start_baseline(*, core: int | None, log_dir: Path, timeout: float = 20.0) -> ServerProcess:
    argv = [*_taskset(core), PY, "-m", "bench.baseline_server", "--port", "0"]
    log_path = log_dir / "baseline.log"
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=open(log_path, "wb"),  # noqa: SIM115 - lives as long as the process
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if line.startswith(b"LISTENING"):
            port = int(line.split()[1])
            server = ServerProcess("baseline", port, proc, log_path)
            _wait_port(port, proc, 5)
            return server
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"baseline server did not start: {line!r}")
