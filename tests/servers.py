"""Real server processes for tests, benchmarks and cluster tests.

``start_server`` runs ``uvicorn voiceai.asgi:application`` in a child process
bound to 127.0.0.1 on a free port, pointed at the *current* pytest database
(so tests that use it need ``transactional_db``: the child can only see
committed rows), and waits until it answers HTTP. Every process started here
is killed when the test ends (``server_factory`` fixture) and, as a safety
net, when the Python process that started it dies (PR_SET_PDEATHSIG).

    def test_it_streams(transactional_db, server_factory):
        a = server_factory(env={"TRANSCRIPTION_ENGINE": "fake"})
        ... a.ws_url ... a.kill()
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1
METRICS_TOKEN = "test-scrape-token"


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def current_database_url() -> str:
    """DATABASE_URL of the database the running test uses (the test DB)."""
    from django.db import connection

    cfg = connection.settings_dict
    if "postgresql" in cfg["ENGINE"]:
        user = quote(cfg.get("USER") or "postgres")
        password = cfg.get("PASSWORD") or ""
        auth = f"{user}:{quote(password)}@" if password else f"{user}@"
        host = cfg.get("HOST") or "127.0.0.1"
        port = cfg.get("PORT") or 5432
        return f"postgres://{auth}{host}:{port}/{cfg['NAME']}"
    if "sqlite" in cfg["ENGINE"]:
        name = str(cfg["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            raise RuntimeError("an in-memory SQLite test database can't be shared with a server process")
        return f"sqlite:///{name}"
    raise RuntimeError(f"unsupported database engine {cfg['ENGINE']}")


def requires_shared_database() -> pytest.MarkDecorator:
    """Skip marker for real-process tests when the test DB is in-memory SQLite."""
    url = os.environ.get("DATABASE_URL", "")
    return pytest.mark.skipif(
        not url.startswith(("postgres", "postgresql")), reason="real-process tests need PostgreSQL (DATABASE_URL)"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class ServerProcess:
    port: int
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, like a crash: nothing gets a chance to clean up."""
        if self.alive():
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait for a graceful exit; SIGKILL after ``timeout``."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def output(self) -> str:
        """What the server logged (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def base_env(media_root: str | os.PathLike, **overrides: str) -> dict[str, str]:
    """The environment a test server needs; ``overrides`` win."""
    env = {
        "DJANGO_SETTINGS_MODULE": "voiceai.settings",
        "SECRET_KEY": _secret_key(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": current_database_url(),
        "MEDIA_ROOT": str(media_root),
        "TRANSCRIPTION_ENGINE": "fake",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        # Without DEBUG, /metrics exists only with a token (tests.ops.streaming.scrape sends it).
        "METRICS_TOKEN": METRICS_TOKEN,
        # Test servers share the test's database: no background reaping
        # unless a test asks for it.
        "ABANDONED_SESSION_CHECK_SECONDS": "0",
    }
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(overrides)
    return env


def _secret_key() -> str:
    # Same key as the test process so stream tokens issued in the test verify.
    from django.conf import settings

    return settings.SECRET_KEY


def _uvicorn_cmd(port: int, extra_args: list[str] | None) -> list[str]:
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return [
        str(venv_python) if venv_python.exists() else sys.executable,
        "-m",
        "uvicorn",
        "voiceai.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ws",
        "websockets",
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "10",
        *(extra_args or []),
    ]


def _serve_cmd(port: int, extra_args: list[str] | None) -> list[str]:
    """The production launcher (``python -m voiceai.ops.serve``): uvicorn whose
    SIGTERM drains the process first (voiceai.ops.drain)."""
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    return [python, "-m", "voiceai.ops.serve", "--host", "127.0.0.1", "--port", str(port), *(extra_args or [])]


def spawn_server(
    *,
    env: dict[str, str],
    port: int | None = None,
    extra_args: list[str] | None = None,
    launcher: str | None = None,
) -> ServerProcess:
    """Start the process without waiting (see ``wait_ready``)."""
    port = port or free_port()
    full_env = {**os.environ, **env}
    # pytest-django exports the test settings module; servers run the real one.
    full_env["DJANGO_SETTINGS_MODULE"] = env.get("DJANGO_SETTINGS_MODULE", "voiceai.settings")
    log_fd, log_name = tempfile.mkstemp(prefix=f"voiceai-server-{port}-", suffix=".log")
    try:
        proc = subprocess.Popen(
            # The production launcher by default, so real-process tests run
            # what the image runs; launcher="uvicorn" (or
            # TEST_SERVER_LAUNCHER=uvicorn) for the plain uvicorn CLI.
            (_uvicorn_cmd if (launcher or os.environ.get("TEST_SERVER_LAUNCHER")) == "uvicorn" else _serve_cmd)(
                port, extra_args
            ),
            cwd=REPO_ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    finally:
        os.close(log_fd)
    return ServerProcess(port=port, proc=proc, log_path=Path(log_name), env=env)


def wait_ready(server: ServerProcess, startup_timeout: float = 30.0) -> ServerProcess:
    try:
        _wait_ready(server, startup_timeout)
    except BaseException:
        server.kill()
        raise
    return server


def start_server(
    *,
    env: dict[str, str],
    port: int | None = None,
    startup_timeout: float = 30.0,
    extra_args: list[str] | None = None,
    launcher: str | None = None,
) -> ServerProcess:
    """Start uvicorn with ``env`` (merged over os.environ; build it with
    ``base_env``) and wait until it serves HTTP. Raises RuntimeError with the
    server's log if it does not come up in time."""
    return wait_ready(spawn_server(env=env, port=port, extra_args=extra_args, launcher=launcher), startup_timeout)


def _wait_ready(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.output()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            # /healthz missing (404) still proves the app serves requests.
            if exc.code < 500:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {server.port} not ready after {timeout}s:\n{server.output()[-4000:]}")


@pytest.fixture
def server_factory(tmp_path) -> Iterator:
    """``server_factory(env=..., port=None)``: start a server and wait for it;
    ``server_factory.many(n, env=...)`` starts n at once (start-up overlaps).
    All are killed at teardown. ``env`` overrides ``base_env(tmp_path/'media')``,
    so the servers of one test share a media root (``server_factory.media_root``)."""
    servers: list[ServerProcess] = []
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)

    def factory(*, env: dict[str, str] | None = None, port: int | None = None, **kwargs) -> ServerProcess:
        server = spawn_server(
            env=base_env(media, **(env or {})),
            port=port,
            extra_args=kwargs.get("extra_args"),
            launcher=kwargs.get("launcher"),
        )
        servers.append(server)
        return wait_ready(server, kwargs.get("startup_timeout", 30.0))

    def many(n: int, *, env: dict[str, str] | None = None, launcher: str | None = None) -> list[ServerProcess]:
        started = [spawn_server(env=base_env(media, **(env or {})), launcher=launcher) for _ in range(n)]
        servers.extend(started)
        return [wait_ready(server) for server in started]

    factory.media_root = media  # type: ignore[attr-defined]
    factory.many = many  # type: ignore[attr-defined]
    yield factory
    for server in servers:
        server.kill()
        with contextlib.suppress(OSError):
            server.log_path.unlink()
