"""Prometheus metrics of one process. Each app process serves its own
``/metrics``; Prometheus (or the CloudWatch agent) scrapes every task.

Names are documented in docs/operations.md and used by ops/alerts.yml and
ops/grafana-dashboard.json — rename nothing without updating those.
Labels never carry session ids (unbounded cardinality) and never anything
about patients: clinic ids only where a per-clinic view is needed.
"""

from prometheus_client import Counter, Gauge, Histogram

LIVE_SESSIONS = Gauge("voiceai_live_sessions", "Live producer sessions in this process", ["clinic"])
WS_CONNECTIONS = Gauge("voiceai_ws_connections", "Open WebSocket connections in this process", ["kind"])
AUDIO_SECONDS = Counter("voiceai_audio_seconds_total", "Seconds of audio received from producers")
FRAME_TO_TRANSCRIPT = Histogram(
    "voiceai_frame_to_transcript_seconds",
    "Time from an audio frame's arrival to the first transcript event that covers it",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.093, 0.2, 0.5, 1.0, 2.0, 5.0),
)
ENGINE_STREAM_STARTS = Counter("voiceai_engine_stream_starts_total", "Upstream engine streams opened", ["engine"])
ENGINE_STREAM_FAILURES = Counter(
    "voiceai_engine_stream_failures_total", "Upstream engine stream failures", ["engine", "retryable"]
)
ENGINE_STREAMS_ACTIVE = Gauge("voiceai_engine_streams_active", "Upstream engine streams open in this process")
ENGINE_REGION_STREAMS = Gauge(
    "voiceai_engine_region_streams", "Upstream engine streams open in this process, per Transcribe region", ["region"]
)
ENGINE_QUEUE_LENGTH = Gauge("voiceai_engine_queue_length", "Sessions waiting for an engine stream slot")
ENGINE_STREAM_QUOTA = Gauge("voiceai_engine_stream_quota", "Configured concurrent engine streams per region")
HTTP_REQUESTS = Counter("voiceai_http_requests_total", "HTTP requests by status class", ["status_class"])
STORAGE_ERRORS = Counter("voiceai_storage_errors_total", "Failed storage writes or reads", ["operation"])
DURABLE_ACK_LAG = Gauge(
    "voiceai_durable_ack_lag_seconds", "Largest gap between audio received and audio durably stored, in seconds"
)
WS_CLOSES = Counter("voiceai_ws_closes_total", "WebSocket closes by close code", ["code"])
# Pauses that stop the event loop, hence every stream of the process at once
# (voiceai/ops/collector.py): a collection of 0.1 s is a second whose p99 misses
# the 93 ms budget.
PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.093, 0.2, 0.5, 1.0)
GC_PAUSE = Histogram(
    "voiceai_gc_pause_seconds",
    "Garbage-collector pauses of this process's interpreter, by generation",
    ["generation"],
    buckets=PAUSE_BUCKETS,
)
LOOP_LAG = Histogram(
    "voiceai_event_loop_lag_seconds",
    "How late the event loop ran a timer set every 50 ms: whatever held the loop, every stream waited as long",
    buckets=PAUSE_BUCKETS,
)
MALLOC_TRIM = Histogram(
    "voiceai_malloc_trim_seconds",
    "Time the C allocator's periodic trim held its arena locks",
    buckets=PAUSE_BUCKETS,
)
