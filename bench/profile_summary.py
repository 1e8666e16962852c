"""Summarise a py-spy ``--format raw`` profile (collapsed stacks,
``frame;frame;... count`` per line, each frame ``function (file:line)``)
into what the report needs: where the server's CPU time goes, by leaf
function and by package, as shares of all samples."""

from __future__ import annotations

import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")

# Package buckets by file path, checked in order.
_BUCKETS = [
    # The launcher is the root of every stack: counting it as project code
    # would put everything under the project.
    ("uvicorn", "/voiceai/ops/serve.py"),
    ("project: transcription", "/transcription/"),
    ("project: sessions/clinics/voiceai", ("/sessions/", "/clinics/", "/voiceai/")),
    ("channels", "/channels/"),
    ("channels_redis", "/channels_redis/"),
    ("redis client", "/redis/"),
    ("asgiref (sync_to_async)", "/asgiref/"),
    ("django", "/django/"),
    ("uvicorn", "/uvicorn/"),
    ("daphne/twisted/autobahn", ("/daphne/", "/twisted/", "/autobahn/")),
    ("hypercorn/wsproto/h11", ("/hypercorn/", "/wsproto/", "/h11/")),
    ("websockets", "/websockets/"),
    ("json", "/json/"),
    ("asyncio", "/asyncio/"),
    ("storage / file io", ("/storages/", "/boto", "/botocore/")),
]


# Function names whose inclusive share the report shows: the per-frame
# costs the measured facts (docs/architecture.md) warn about.
HOT_SPOTS = ("close_old_connections", "sync_to_async", "dumps", "group_send", "execute", "_write_audio", "write")


def _short(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return m.group("func"), path


def _bucket(path: str) -> str:
    full = "/" + path
    for name, marks in _BUCKETS:
        for mark in (marks,) if isinstance(marks, str) else marks:
            if mark in full:
                return name
    return "other"


def summarise_collapsed(text: str, top: int = 12) -> dict[str, object]:
    leaf: Counter[str] = Counter()
    inclusive_bucket: Counter[str] = Counter()
    self_bucket: Counter[str] = Counter()
    inclusive_func: Counter[str] = Counter()
    hot: Counter[str] = Counter()
    in_pool = 0  # samples on worker threads (sync_to_async, run_in_executor)
    total = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_short(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if any(f == "_worker" and p.endswith("concurrent/futures/thread.py") for f, p in frames):
            in_pool += count
        func, path = frames[-1]
        leaf[f"{func} ({path})"] += count
        self_bucket[_bucket(path)] += count
        # Per stack, once: time spent under these (no double counting of
        # recursion or nesting).
        for name in HOT_SPOTS:
            if any(name in f for f, _ in frames):
                hot[name] += count
        seen_b: set[str] = set()
        seen_f: set[str] = set()
        for func_i, path_i in frames:
            b = _bucket(path_i)
            if b not in seen_b:
                seen_b.add(b)
                inclusive_bucket[b] += count
            key = f"{func_i} ({path_i})"
            if key not in seen_f:
                seen_f.add(key)
                inclusive_func[key] += count

    def pct(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)] if total else []

    return {
        "samples": total,
        "worker_threads_pct": round(100 * in_pool / total, 1) if total else 0.0,
        "self_by_function": pct(leaf, top),
        "self_by_package": pct(self_bucket, top),
        "inclusive_by_package": pct(inclusive_bucket, top),
        "hot_spots_inclusive_pct": {k: round(100 * hot[k] / total, 1) if total else 0.0 for k in HOT_SPOTS},
        "top_inclusive_functions": pct(inclusive_func, top),
    }
