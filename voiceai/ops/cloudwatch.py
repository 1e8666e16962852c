"""Publishes the three numbers only the app knows to CloudWatch, once a
minute per task, for auto-scaling and alarms (docs/operations.md has the
contract): LiveConnectionsPerTask, LiveSessions and EngineStreamsActive
(per Transcribe region).

Values are read from this process's Prometheus registry, so /metrics and
CloudWatch can never disagree. It runs in a daemon thread: boto3 is
blocking, and once a minute is far from the audio path.
"""

import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from voiceai.logging import get_logger

log = get_logger(__name__)

INTERVAL_SECONDS = 60


def _gauge_samples(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    for family in registry.collect():
        if family.name == name:
            return [(dict(s.labels), s.value) for s in family.samples if s.name == name]
    return []


def metric_data(*, registry: CollectorRegistry = REGISTRY, service: str, now: float) -> list[dict[str, Any]]:
    """The datapoints for this minute. Timestamped at the start of the
    minute so every task's points line up and Sum is the cluster total."""
    minute = datetime.fromtimestamp(now - now % 60, tz=UTC)
    service_dim = {"Name": "Service", "Value": service}

    def datum(name: str, value: float, extra: list[dict[str, str]] | None = None) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Dimensions": [service_dim, *(extra or [])],
            "Timestamp": minute,
            "Value": float(value),
            "Unit": "Count",
        }

    connections = sum(v for _, v in _gauge_samples(registry, "voiceai_ws_connections"))
    sessions = sum(v for _, v in _gauge_samples(registry, "voiceai_live_sessions"))
    data = [datum("LiveConnectionsPerTask", connections), datum("LiveSessions", sessions)]
    by_region: dict[str, float] = defaultdict(float)
    for labels, value in _gauge_samples(registry, "voiceai_engine_region_streams"):
        by_region[labels.get("region", "")] += value
    for region, value in sorted(by_region.items()):
        if region:
            data.append(datum("EngineStreamsActive", value, [{"Name": "Region", "Value": region}]))
    return data


def publish_once(client: Any, *, namespace: str, service: str, registry: CollectorRegistry = REGISTRY) -> int:
    data = metric_data(registry=registry, service=service, now=time.time())
    client.put_metric_data(Namespace=namespace, MetricData=data)
    return len(data)


_started = False
_lock = threading.Lock()


def start_publisher() -> bool:
    """Start the background publisher once per process when
    CLOUDWATCH_METRICS_NAMESPACE is set (on AWS). Returns whether it runs."""
    global _started
    namespace = settings.CLOUDWATCH_METRICS_NAMESPACE
    if not namespace:
        return False
    with _lock:
        if _started:
            return True
        _started = True
    import boto3

    client = boto3.client("cloudwatch", region_name=settings.AWS_S3_REGION_NAME)
    service = settings.CLOUDWATCH_METRICS_SERVICE
    thread = threading.Thread(target=_loop, args=(client, namespace, service), name="cloudwatch-metrics", daemon=True)
    thread.start()
    return True


def _loop(client: Any, namespace: str, service: str) -> None:
    while True:
        # Sleep to just after the next minute boundary, then publish the
        # minute that has begun: one point per minute, aligned across tasks.
        time.sleep(INTERVAL_SECONDS - time.time() % INTERVAL_SECONDS + 1)
        try:
            publish_once(client, namespace=namespace, service=service)
        except Exception as exc:  # a CloudWatch hiccup must never take the process down
            log.warning("cloudwatch_publish_failed", error=type(exc).__name__)
