"""The CloudWatch publisher against moto's server: the real boto3 client
over HTTP, mocked only at the network edge."""

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto.server import ThreadedMotoServer
from prometheus_client import CollectorRegistry, Gauge

from voiceai.ops.cloudwatch import metric_data, publish_once


@pytest.fixture
def cloudwatch():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "cloudwatch",
        region_name="ap-northeast-1",
        endpoint_url=f"http://{host}:{port}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    yield client
    server.stop()


@pytest.fixture
def registry():
    registry = CollectorRegistry()
    connections = Gauge("voiceai_ws_connections", "", ["kind"], registry=registry)
    connections.labels(kind="producer").set(7)
    connections.labels(kind="viewer").set(3)
    sessions = Gauge("voiceai_live_sessions", "", ["clinic"], registry=registry)
    sessions.labels(clinic="a").set(4)
    sessions.labels(clinic="b").set(2)
    regions = Gauge("voiceai_engine_region_streams", "", ["region"], registry=registry)
    regions.labels(region="ap-northeast-1").set(5)
    regions.labels(region="us-west-2").set(1)
    return registry


def test_it_sums_this_process_gauges_into_one_point_per_metric_at_the_minute(registry):
    data = metric_data(registry=registry, service="VoiceAi", now=1_800_000_042.5)
    by_name = {(d["MetricName"], tuple(x["Value"] for x in d["Dimensions"])): d for d in data}
    assert by_name[("LiveConnectionsPerTask", ("VoiceAi",))]["Value"] == 10
    assert by_name[("LiveSessions", ("VoiceAi",))]["Value"] == 6
    assert by_name[("EngineStreamsActive", ("VoiceAi", "ap-northeast-1"))]["Value"] == 5
    assert by_name[("EngineStreamsActive", ("VoiceAi", "us-west-2"))]["Value"] == 1
    assert {d["Timestamp"].second for d in data} == {0}


def test_it_publishes_to_cloudwatch_with_the_real_client(cloudwatch, registry):
    assert publish_once(cloudwatch, namespace="VoiceAI", service="VoiceAi", registry=registry) == 4
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="VoiceAI")["Metrics"]}
    assert names == {"LiveConnectionsPerTask", "LiveSessions", "EngineStreamsActive"}
    now = datetime.now(tz=UTC)
    stats = cloudwatch.get_metric_statistics(
        Namespace="VoiceAI",
        MetricName="LiveConnectionsPerTask",
        Dimensions=[{"Name": "Service", "Value": "VoiceAi"}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )
    assert [p["Sum"] for p in stats["Datapoints"]] == [10.0]
