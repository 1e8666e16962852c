"""A local multi-process VoiceAI cluster: N app processes (the production
launcher, ``python -m voiceai.ops.serve``) behind HAProxy, on the machine's
PostgreSQL and Redis. ``make cluster`` runs ``main()``; the cluster tests
(tests/ops/test_cluster.py) drive ``Cluster`` directly.

    make cluster                         # 2 processes, http://127.0.0.1:8080
    CLUSTER_PROCESSES=3 CLUSTER_PORT=9000 CLUSTER_REDIS_DB=5 make cluster

Everything binds to 127.0.0.1. Ctrl-C drains and stops every process.
Only the standard library here: the app processes import Django, this
supervisor does not.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).resolve().parent / "haproxy.cfg.tmpl"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python() -> str:
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def haproxy_binary(*, install: bool = False) -> str | None:
    """The haproxy binary; with ``install``, apt-get it when missing (Debian)."""
    found = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy") or None
    if found or not install:
        return found
    print("cluster: installing haproxy (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-qq", "haproxy"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "haproxy"], env=env, check=True)
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def _child_setup() -> None:  # pragma: no cover - runs in the child
    """Own session: a Ctrl-C in the terminal reaches only the supervisor,
    which drains the apps first and stops HAProxy last. SIGTERM (a drain)
    when the supervisor dies, so nothing outlives it."""
    os.setsid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def render_haproxy_config(*, port: int, stats_port: int, app_ports: list[int], check_interval_ms: int = 1000) -> str:
    def servers(prefix: str) -> str:
        return "\n".join(f"    server {prefix}{i} 127.0.0.1:{p} check" for i, p in enumerate(app_ports, start=1))

    return TEMPLATE.read_text().format(
        bind="127.0.0.1",
        port=port,
        stats_port=stats_port,
        check_interval_ms=check_interval_ms,
        http_servers=servers("app"),
        ws_servers=servers("app"),
    )


@dataclass
class AppProcess:
    index: int
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    """``env``: the app processes' environment (DATABASE_URL, REDIS_URL,
    MEDIA_ROOT, SECRET_KEY, ...), merged over os.environ."""

    env: dict[str, str]
    processes: int = 2
    port: int = 0
    stats_port: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="voiceai-cluster-")))
    check_interval_ms: int = 1000
    apps: list[AppProcess] = field(default_factory=list)
    haproxy: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}/"

    # --- lifecycle ----------------------------------------------------------------

    def start(self, *, haproxy: str, timeout: float = 60.0) -> Cluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.stats_port = self.stats_port or free_port()
        self.apps = [
            AppProcess(index=i, port=free_port(), log_path=self.workdir / f"app{i + 1}.log")
            for i in range(self.processes)
        ]
        try:
            for app in self.apps:
                self._spawn(app)
            for app in self.apps:
                self.wait_ready(app, timeout)
            config = self.workdir / "haproxy.cfg"
            config.write_text(
                render_haproxy_config(
                    port=self.port,
                    stats_port=self.stats_port,
                    app_ports=[a.port for a in self.apps],
                    check_interval_ms=self.check_interval_ms,
                )
            )
            check = subprocess.run([haproxy, "-c", "-q", "-f", str(config)], capture_output=True, text=True)
            if check.returncode != 0:
                raise RuntimeError(f"haproxy rejected {config}: {check.stdout}{check.stderr}")
            log = (self.workdir / "haproxy.log").open("ab")
            self.haproxy = subprocess.Popen(  # -db: foreground, no daemon
                [haproxy, "-db", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_child_setup,
            )
            self._wait_url(f"{self.url}/readyz", timeout, lambda: self.haproxy.poll() is None)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, app: AppProcess) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env.setdefault("DJANGO_SETTINGS_MODULE", "voiceai.settings")
        if env["DJANGO_SETTINGS_MODULE"] == "voiceai.settings_test":
            env["DJANGO_SETTINGS_MODULE"] = "voiceai.settings"
        log = app.log_path.open("ab")
        app.proc = subprocess.Popen(
            [python(), "-m", "voiceai.ops.serve", "--host", "127.0.0.1", "--port", str(app.port)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup,
        )
        log.close()

    def wait_ready(self, app: AppProcess, timeout: float = 60.0) -> None:
        def alive() -> bool:
            if not app.alive():
                tail = app.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"app{app.index + 1} exited:\n{tail}")
            return True

        self._wait_url(f"{app.url}/readyz", timeout, alive)

    @staticmethod
    def _wait_url(url: str, timeout: float, alive) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError(f"process behind {url} exited")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 - loopback
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{url} not ready after {timeout:.0f} s")

    def terminate(self, index: int, timeout: float = 60.0) -> int | None:
        """SIGTERM (the app drains, then exits) and wait."""
        app = self.apps[index]
        if app.alive():
            app.proc.send_signal(signal.SIGTERM)
            try:
                app.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                app.proc.kill()
                app.proc.wait(10)
        return app.proc.returncode if app.proc else None

    def kill(self, index: int) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        app = self.apps[index]
        if app.alive():
            app.proc.kill()
            app.proc.wait(10)

    def start_app(self, index: int, timeout: float = 60.0) -> None:
        app = self.apps[index]
        self._spawn(app)
        self.wait_ready(app, timeout)

    def restart(self, index: int, timeout: float = 60.0) -> None:
        """Rolling-restart step: drain and stop one process, start it again."""
        self.terminate(index, timeout)
        self.start_app(index, timeout)

    def app_by_pid(self, pid: int) -> int | None:
        for app in self.apps:
            if app.proc is not None and app.proc.pid == pid:
                return app.index
        return None

    def stop(self) -> None:
        """Drain every app process (SIGTERM, in parallel), then stop HAProxy."""
        for app in self.apps:
            if app.alive():
                app.proc.send_signal(signal.SIGTERM)
        for app in self.apps:
            if app.proc is not None:
                try:
                    app.proc.wait(60)
                except subprocess.TimeoutExpired:
                    app.proc.kill()
                    app.proc.wait(10)
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait(10)


# --- `make cluster` -------------------------------------------------------------------


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def ensure_database(server_url: str, name: str) -> None:
    """CREATE DATABASE ``name`` unless it exists (psql from Debian's client)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(f"unsupported database name {name!r}")
    admin = _with_db(server_url, "postgres")
    exists = subprocess.run(
        ["psql", admin, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],  # noqa: S608 - validated
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True)
        print(f"cluster: created database {name}", flush=True)


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([python(), "manage.py", *args], cwd=REPO_ROOT, env={**os.environ, **env}, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ops/cluster/cluster.py", description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=int(os.environ.get("CLUSTER_PROCESSES", "2")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CLUSTER_PORT", "8080")))
    parser.add_argument("--stats-port", type=int, default=int(os.environ.get("CLUSTER_STATS_PORT", "8404")))
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CLUSTER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/voiceai_cluster"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("CLUSTER_REDIS_URL", "redis://127.0.0.1:6379"))
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("CLUSTER_REDIS_DB", "3")))
    args = parser.parse_args(argv)
    if args.processes < 2:
        parser.error("--processes must be at least 2")

    haproxy = haproxy_binary(install=True)
    var = REPO_ROOT / "var" / "cluster"
    var.mkdir(parents=True, exist_ok=True)
    secret_file = var / "secret-key"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
        secret_file.chmod(0o600)
    env = {
        "DJANGO_SETTINGS_MODULE": "voiceai.settings",
        "SECRET_KEY": secret_file.read_text().strip(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": _with_redis_db(args.redis_url, args.redis_db),
        "MEDIA_ROOT": str(var / "media"),
        "TRANSCRIPTION_ENGINE": os.environ.get("TRANSCRIPTION_ENGINE", "fake"),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "DRAIN_SECONDS": os.environ.get("DRAIN_SECONDS", "20"),
    }
    ensure_database(args.database_url, urlsplit(args.database_url).path.lstrip("/"))
    _manage(env, "migrate", "--noinput", "-v", "0")
    _manage(env, "collectstatic", "--noinput", "-v", "0")
    # The cluster's own database: its demo key file is its own too (not make run's).
    _manage(env, "seed_demo", "--force", "--key-file", str(var / "demo-api-key.txt"))

    cluster = Cluster(env=env, processes=args.processes, port=args.port, stats_port=args.stats_port, workdir=var)
    stopping = False

    def on_signal(signum: int, frame) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    # Explicitly: a supervisor started in the background inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cluster.start(haproxy=haproxy)
        print(f"cluster: {args.processes} app processes behind HAProxy", flush=True)
        print(f"  app        {cluster.url}/   (console; API {cluster.url}/api/v1/)", flush=True)
        for app in cluster.apps:
            print(f"  app{app.index + 1}       {app.url}   /metrics  /readyz   log {app.log_path}", flush=True)
        print(f"  haproxy    {cluster.stats_url}   (stats)", flush=True)
        print(f"  database   {args.database_url}   redis {env['REDIS_URL']}", flush=True)
        print("Ctrl-C drains and stops everything.", flush=True)
        while True:
            for app in cluster.apps:
                if not app.alive() and not stopping:
                    print(f"cluster: app{app.index + 1} exited ({app.proc.returncode}); restarting", flush=True)
                    cluster.start_app(app.index)
            if cluster.haproxy is not None and cluster.haproxy.poll() is not None:
                print("cluster: haproxy exited; stopping", flush=True)
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\ncluster: draining and stopping", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
