"""The allocator policy of the launcher (voiceai/ops/malloc.py): memory a
worker thread freed goes back to the kernel instead of staying in its
malloc arena for the life of the process."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from voiceai.ops import collector, malloc

glibc_only = pytest.mark.skipif(malloc._glibc() is None, reason="glibc's malloc_trim/mallopt")


def _rss_mb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024


def _fragment_a_thread_arena(kept: list[bytes]) -> None:
    """What a worker thread does all day: buffers larger than Python's own
    allocator serves (here 60 MB of 20 KB blocks), nearly all freed, a few
    kept — so no arena can shrink from its top."""

    def work() -> None:
        blocks = [bytes(bytearray(20_000)) for _ in range(3000)]
        kept.extend(blocks[::50])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


@glibc_only
def test_it_gives_a_worker_threads_freed_memory_back_to_the_kernel():
    kept: list[bytes] = []
    _fragment_a_thread_arena(kept)
    before = _rss_mb()
    assert malloc.release_free_memory()
    after = _rss_mb()
    assert before - after >= 30, (before, after)
    assert len(kept) == 60  # the live blocks are untouched


@glibc_only
def test_it_trims_on_its_own_every_interval(monkeypatch):
    calls = threading.Event()
    stop = threading.Event()
    monkeypatch.setattr(malloc, "_trimmer", None)
    monkeypatch.setattr(malloc, "release_free_memory", lambda: calls.set() or True)
    try:
        assert malloc.start_trimmer(interval=0.01, stop=stop)
        assert calls.wait(5)
    finally:
        stop.set()
        malloc._trimmer.join(5)


@glibc_only
def test_it_caps_the_malloc_arenas():
    assert malloc.limit_arenas(2)


def test_it_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(malloc, "_glibc", lambda: None)
    monkeypatch.setattr(malloc, "_trimmer", None)
    assert not malloc.release_free_memory()
    assert not malloc.limit_arenas()
    assert not malloc.start_trimmer()
    assert malloc._trimmer is None


def test_the_launcher_sets_the_policy_before_serving(monkeypatch):
    from voiceai.ops import serve

    order: list[str] = []
    monkeypatch.setattr(malloc, "configure_for_long_running_server", lambda: order.append("malloc"))
    monkeypatch.setattr(collector, "install_timing", lambda: order.append("gc timing"))

    class Server:
        def run(self) -> None:
            order.append("serve")

    monkeypatch.setattr(serve, "build", lambda host, port: Server())
    monkeypatch.setattr("logging.captureWarnings", lambda capture: None)
    serve.main(["--host", "127.0.0.1", "--port", "0"])
    assert order == ["malloc", "gc timing", "serve"]


@glibc_only
def test_it_times_every_trim_into_its_histogram():
    before = REGISTRY.get_sample_value("voiceai_malloc_trim_seconds_count") or 0.0
    assert malloc.release_free_memory()
    assert REGISTRY.get_sample_value("voiceai_malloc_trim_seconds_count") == before + 1
