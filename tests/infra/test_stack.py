"""Assertions on the synthesized CloudFormation: each test pins one property
of the design (docs/deployment.md) so a later edit that drops it fails here."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.conftest import CERT_ARN, DOMAIN, Synth

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template(synth: Synth) -> Template:
    return Template.from_json(synth.primary)


@pytest.fixture(scope="module")
def replica_template(synth: Synth) -> Template:
    return Template.from_json(synth.replica)


def _resources(tpl: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in tpl["Resources"].items() if r["Type"] == kind}


def _one(tpl: dict[str, Any], kind: str) -> dict[str, Any]:
    found = list(_resources(tpl, kind).values())
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]["Properties"]


def _attrs(props: dict[str, Any], key: str) -> dict[str, Any]:
    return {a["Key"]: a["Value"] for a in props[key]}


def _container(tpl: dict[str, Any]) -> dict[str, Any]:
    (container,) = _one(tpl, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    return container


def _statements(tpl: dict[str, Any], role_logical_prefix: str | None = None) -> list[dict[str, Any]]:
    out = []
    for policy in _resources(tpl, "AWS::IAM::Policy").values():
        roles = [r.get("Ref", "") for r in policy["Properties"].get("Roles", [])]
        if role_logical_prefix is None or any(r.startswith(role_logical_prefix) for r in roles):
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- synth ---------------------------------------------------------------------


def test_it_synthesizes_both_stacks_without_an_aws_account(synth: Synth) -> None:
    stacks = synth.manifest_stacks
    assert set(stacks) == {"VoiceAi", "VoiceAiReplica"}
    assert stacks["VoiceAi"].environment.account == "unknown-account"
    assert stacks["VoiceAi"].environment.region == "ap-northeast-1"
    assert stacks["VoiceAiReplica"].environment.region == "ap-northeast-3"
    # The replica bucket must exist before the primary configures replication.
    assert [d.id for d in stacks["VoiceAi"].dependencies if d.id.startswith("VoiceAiReplica")] == ["VoiceAiReplica"]
    # CDK's own template validation found nothing.
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    assert report.get("pluginReports") == []


def test_it_asks_for_certificate_and_domain_as_parameters_when_not_given(synth_without_context: Synth) -> None:
    tpl = synth_without_context.primary
    assert {"CertificateArn", "DomainName"} <= set(tpl["Parameters"])
    https = [
        p["Properties"]
        for p in _resources(tpl, "AWS::ElasticLoadBalancingV2::Listener").values()
        if p["Properties"]["Port"] == 443
    ]
    assert https[0]["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    env = {e["Name"]: e["Value"] for e in _container(tpl)["Environment"]}
    assert env["ALLOWED_HOSTS"] == {"Ref": "DomainName"}


# --- load balancer -------------------------------------------------------------


def test_it_terminates_tls_13_with_the_given_certificate_and_redirects_http(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {
            "Port": 443,
            "Protocol": "HTTPS",
            "SslPolicy": "ELBSecurityPolicy-TLS13-1-3-2021-06",
            "Certificates": [{"CertificateArn": CERT_ARN}],
        },
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {
            "Port": 80,
            "Protocol": "HTTP",
            "DefaultActions": [
                {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}
            ],
        },
    )
    template.resource_count_is("AWS::ElasticLoadBalancingV2::Listener", 2)


def test_it_keeps_idle_websockets_open_for_an_hour(synth: Synth) -> None:
    alb = _one(synth.primary, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    attrs = _attrs(alb, "LoadBalancerAttributes")
    assert attrs["idle_timeout.timeout_seconds"] == "3600"
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert alb["Scheme"] == "internet-facing"


def test_it_pins_clients_with_a_cookie_and_checks_readyz(synth: Synth) -> None:
    group = _one(synth.primary, "AWS::ElasticLoadBalancingV2::TargetGroup")
    attrs = _attrs(group, "TargetGroupAttributes")
    assert attrs["stickiness.enabled"] == "true"
    assert attrs["stickiness.type"] == "lb_cookie"
    assert int(attrs["stickiness.lb_cookie.duration_seconds"]) >= 3600
    assert group["HealthCheckPath"] == "/readyz"
    # A Multi-AZ database or Redis failover (up to ~2 min) fails /readyz on
    # every task at once; ECS must not replace the whole fleet for it.
    assert group["UnhealthyThresholdCount"] * group["HealthCheckIntervalSeconds"] >= 120
    # readyz runs its checks (2 s timeout each: database, Redis, storage) in turn.
    assert group["HealthCheckTimeoutSeconds"] >= 3 * 2
    assert group["Matcher"] == {"HttpCode": "200"}
    assert group["Port"] == 8000


def test_it_hides_metrics_from_the_internet(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::ListenerRule",
        {
            "Conditions": Match.array_with(
                [
                    Match.object_like(
                        {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/metrics", "/metrics/*"]}}
                    )
                ]
            ),
            "Actions": [
                Match.object_like(
                    {"Type": "fixed-response", "FixedResponseConfig": Match.object_like({"StatusCode": "404"})}
                )
            ],
        },
    )


def test_it_gives_a_stopping_task_time_to_drain_before_sigkill(synth: Synth) -> None:
    group = _one(synth.primary, "AWS::ElasticLoadBalancingV2::TargetGroup")
    delay = int(_attrs(group, "TargetGroupAttributes")["deregistration_delay.timeout_seconds"])
    container = _container(synth.primary)
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    # Long enough for streams to see it coming, short enough for a deploy.
    assert 30 <= delay <= 300
    assert container["StopTimeout"] == 120  # Fargate's maximum
    # The app's own drain deadline ends before ECS kills it.
    assert 0 < int(env["DRAIN_SECONDS"]) < container["StopTimeout"]
    # The app picks the client IP from X-Forwarded-For's last hop itself;
    # uvicorn trusting every proxy would hand it the client-chosen first entry.
    assert env["BEHIND_TLS_PROXY"] == "1" and "FORWARDED_ALLOW_IPS" not in env


# --- service and scaling -------------------------------------------------------


def test_it_runs_one_vcpu_two_gb_tasks_in_private_subnets(synth: Synth) -> None:
    task = _one(synth.primary, "AWS::ECS::TaskDefinition")
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    service = _one(synth.primary, "AWS::ECS::Service")
    vpc_conf = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert vpc_conf["AssignPublicIp"] == "DISABLED"
    private = {
        k
        for k, s in _resources(synth.primary, "AWS::EC2::Subnet").items()
        if not s["Properties"].get("MapPublicIpOnLaunch", False) and "app" in k
    }
    assert {s["Ref"] for s in vpc_conf["Subnets"]} == private
    assert len(private) >= 2  # multi-AZ
    assert service["DesiredCount"] == 2
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


def test_it_puts_data_stores_in_isolated_subnets_across_azs(synth: Synth) -> None:
    subnets = _resources(synth.primary, "AWS::EC2::Subnet")
    azs = {json.dumps(s["Properties"]["AvailabilityZone"]) for k, s in subnets.items() if "data" in k}
    assert len(azs) >= 2
    routes = _resources(synth.primary, "AWS::EC2::Route")
    data_tables = {k for k in _resources(synth.primary, "AWS::EC2::RouteTable") if "data" in k}
    # No route at all out of the data tier (no NAT, no internet gateway).
    assert not [r for r in routes.values() if r["Properties"]["RouteTableId"]["Ref"] in data_tables]


def test_it_scales_between_2_and_20_tasks_on_cpu_memory_and_live_connections(synth: Synth) -> None:
    target = _one(synth.primary, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 20)
    configs = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for p in _resources(synth.primary, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    ]
    assert len(configs) == 3
    by_kind = {}
    for c in configs:
        kind = c.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType") or "custom"
        by_kind[kind] = c
    assert by_kind["ECSServiceAverageCPUUtilization"]["TargetValue"] == 70
    assert by_kind["ECSServiceAverageMemoryUtilization"]["TargetValue"] == 80
    custom = by_kind["custom"]
    assert custom["TargetValue"] == 500
    spec = custom["CustomizedMetricSpecification"]
    assert (spec["Namespace"], spec["MetricName"], spec["Statistic"]) == (
        "VoiceAI",
        "LiveConnectionsPerTask",
        "Average",
    )
    assert spec["Dimensions"] == [{"Name": "Service", "Value": "VoiceAi"}]
    # Scale in slowly: a scale-in moves live consultations.
    assert all(c["ScaleInCooldown"] >= 600 for c in configs)


# --- data stores ---------------------------------------------------------------


def test_it_runs_redis_multi_az_encrypted_in_transit_and_at_rest(synth: Synth) -> None:
    redis = _one(synth.primary, "AWS::ElastiCache::ReplicationGroup")
    assert redis["MultiAZEnabled"] is True
    assert redis["AutomaticFailoverEnabled"] is True
    assert redis["NumCacheClusters"] >= 2
    assert redis["TransitEncryptionEnabled"] is True
    assert redis["TransitEncryptionMode"] == "required"
    assert redis["AtRestEncryptionEnabled"] is True
    assert "KmsKeyId" in redis
    env = {e["Name"]: e["Value"] for e in _container(synth.primary)["Environment"]}
    assert env["REDIS_URL"]["Fn::Join"][1][0] == "rediss://"


def test_it_runs_postgres_multi_az_encrypted_with_point_in_time_backups(synth: Synth) -> None:
    db = _one(synth.primary, "AWS::RDS::DBInstance")
    assert db["MultiAZ"] is True
    assert db["StorageEncrypted"] is True
    assert "KmsKeyId" in db
    assert db["BackupRetentionPeriod"] >= 7
    assert db["DeletionProtection"] is True
    assert db["PubliclyAccessible"] is False
    assert db["Engine"] == "postgres"
    params = _one(synth.primary, "AWS::RDS::DBParameterGroup")
    assert params["Parameters"]["rds.force_ssl"] == "1"


# --- storage -------------------------------------------------------------------


def _bucket_with_replication(tpl: dict[str, Any]) -> dict[str, Any]:
    (bucket,) = [
        b["Properties"]
        for b in _resources(tpl, "AWS::S3::Bucket").values()
        if "ReplicationConfiguration" in b["Properties"]
    ]
    return bucket


def test_it_encrypts_the_audio_bucket_with_kms_and_blocks_public_access(synth: Synth, template: Template) -> None:
    bucket = _bucket_with_replication(synth.primary)
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    # enforce_ssl: a bucket policy denies any request without TLS.
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_it_tiers_and_expires_audio_with_lifecycle_rules(synth: Synth) -> None:
    rules = {r["Id"]: r for r in _bucket_with_replication(synth.primary)["LifecycleConfiguration"]["Rules"]}
    tiering = rules["intelligent-tiering"]
    assert tiering["Status"] == "Enabled"
    assert tiering["Transitions"] == [{"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": 0}]
    cleanup = rules["expire-noncurrent-and-abort-uploads"]
    assert cleanup["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert cleanup["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1


def test_it_replicates_the_audio_bucket_to_the_replica_region(synth: Synth, replica_template: Template) -> None:
    config = _bucket_with_replication(synth.primary)["ReplicationConfiguration"]
    (rule,) = config["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["DeleteMarkerReplication"] == {"Status": "Enabled"}
    assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
    dest = rule["Destination"]
    dest_arn = json.dumps(dest["Bucket"])
    assert "voiceai-audio-replica-" in dest_arn and "-ap-northeast-3" in dest_arn
    assert "ap-northeast-3" in json.dumps(dest["EncryptionConfiguration"]["ReplicaKmsKeyID"])
    assert dest["ReplicationTime"]["Status"] == "Enabled"
    # The replica side: same name pattern, KMS, versioned, alias the primary points at.
    replica = _one(synth.replica, "AWS::S3::Bucket")
    assert "voiceai-audio-replica-" in json.dumps(replica["BucketName"])
    assert replica["VersioningConfiguration"] == {"Status": "Enabled"}
    assert (
        replica["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )
    replica_template.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/voiceai-audio-replica"})


# --- IAM -----------------------------------------------------------------------


def test_it_grants_no_wildcard_actions_anywhere(synth: Synth) -> None:
    for tpl in (synth.primary, synth.replica):
        for statement in _statements(tpl):
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"wildcard action {action!r} in {statement}"


def test_it_scopes_the_task_role_to_transcribe_its_bucket_and_tagged_keys(synth: Synth) -> None:
    statements = {s["Sid"]: s for s in _statements(synth.primary, "WebTaskRole")}
    assert set(statements) == {
        "TranscribeStreaming",
        "SessionObjects",
        "ListBucket",
        "BucketDefaultKey",
        "ClinicKeys",
        "OwnMetrics",
    }
    assert sorted(statements["TranscribeStreaming"]["Action"]) == [
        "transcribe:StartStreamTranscription",
        "transcribe:StartStreamTranscriptionWebSocket",
    ]
    # Only the two actions without resource types get Resource "*".
    star = [sid for sid, s in statements.items() if s["Resource"] == "*"]
    assert sorted(star) == ["OwnMetrics", "TranscribeStreaming"]
    assert statements["OwnMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "VoiceAI"}}
    # Objects only below {clinic_id}/{session_id}/.
    assert statements["SessionObjects"]["Resource"]["Fn::Join"][1][-1] == "/*/*/*"
    clinic = statements["ClinicKeys"]
    assert sorted(clinic["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]  # all SSE-KMS needs
    assert clinic["Condition"]["Null"] == {"aws:ResourceTag/voiceai:clinic": "false"}
    assert clinic["Condition"]["StringEquals"] == {"kms:ViaService": "s3.ap-northeast-1.amazonaws.com"}
    assert all(
        not a.startswith(("iam:", "kms:Create", "kms:Put", "kms:Schedule"))
        for s in statements.values()
        for a in _as_list(s["Action"])
    )


# --- settings wiring -----------------------------------------------------------


def _env_names_read_by_settings() -> set[str]:
    tree = ast.parse((ROOT / "voiceai" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id.startswith("env_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return names


def test_it_hands_the_app_the_settings_it_reads(synth: Synth) -> None:
    container = _container(synth.primary)
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    secrets = {s["Name"] for s in container["Secrets"]}
    read = _env_names_read_by_settings()
    required = {
        "DATABASE_URL",
        "REDIS_URL",
        "AWS_STORAGE_BUCKET_NAME",
        "TRANSCRIPTION_ENGINE",
        "AWS_TRANSCRIBE_REGIONS",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "BEHIND_TLS_PROXY",
    }
    assert required <= set(env)
    assert required <= read, "settings.py no longer reads some variable the stack sets"
    assert "SECRET_KEY" in read and "SECRET_KEY" in secrets and "SECRET_KEY" not in env
    assert env["TRANSCRIPTION_ENGINE"] == "aws"
    assert env["DEBUG"] == "0"
    assert env["ALLOWED_HOSTS"] == DOMAIN
    assert env["CSRF_TRUSTED_ORIGINS"] == f"https://{DOMAIN}"
    assert env["AWS_TRANSCRIBE_REGIONS"] == "ap-northeast-1,ap-southeast-1,us-west-2"
    assert env["BEHIND_TLS_PROXY"] == "1"
    # The app's cluster-wide engine quota is the figure the quota alarm measures against.
    assert "ENGINE_STREAMS_PER_REGION" in read
    assert env["ENGINE_STREAMS_PER_REGION"] == "25"


def test_it_keeps_passwords_out_of_the_task_definition(synth: Synth) -> None:
    container = _container(synth.primary)
    secrets = {s["Name"]: json.dumps(s["ValueFrom"]) for s in container["Secrets"]}
    # The database password comes from the RDS-generated secret, into libpq's PGPASSWORD.
    assert secrets["PGPASSWORD"].endswith(':password::"]]}')
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    db_url = env["DATABASE_URL"]["Fn::Join"][1]
    assert db_url[0] == "postgres://voiceai@"  # user only, no password
    assert db_url[-1].endswith("sslmode=require")
    assert not re.search(r"(?i)password|secret", json.dumps(env))


# --- alarms --------------------------------------------------------------------


def _alarms(tpl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        a["Properties"]["AlarmDescription"].split(":")[1].strip(): a["Properties"]
        for a in _resources(tpl, "AWS::CloudWatch::Alarm").values()
    }


def _alarm_metric_names(alarm: dict[str, Any]) -> set[str]:
    if "MetricName" in alarm:
        return {alarm["MetricName"]}
    return {m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}


@pytest.mark.parametrize(
    ("description", "metrics", "threshold", "periods", "operator"),
    [
        ("more than 800 live sessions for 2 minutes", {"LiveSessions"}, 800, 2, "GreaterThanThreshold"),
        (
            "5xx error rate above 5 % for 5 minutes",
            {"RequestCount", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"},
            5,
            5,
            "GreaterThanThreshold",
        ),
        (
            "running tasks below desired for 5 minutes",
            {"DesiredTaskCount", "RunningTaskCount"},
            1,
            5,
            "GreaterThanOrEqualToThreshold",
        ),
        ("service CPU above 70 % for 10 minutes", {"CPUUtilization"}, 70, 10, "GreaterThanThreshold"),
        ("service memory above 80 % for 10 minutes", {"MemoryUtilization"}, 80, 10, "GreaterThanThreshold"),
        (
            "Transcribe streams in ap-northeast-1 at 80 % of the quota (25)",
            {"EngineStreamsActive"},
            20,
            3,
            "GreaterThanOrEqualToThreshold",
        ),
    ],
)
def test_it_alarms_at_the_design_thresholds(
    synth: Synth, description: str, metrics: set[str], threshold: float, periods: int, operator: str
) -> None:
    alarm = _alarms(synth.primary)[description]
    assert _alarm_metric_names(alarm) == metrics
    assert alarm["Threshold"] == threshold
    assert alarm["EvaluationPeriods"] == periods
    assert alarm["DatapointsToAlarm"] == periods
    assert alarm["ComparisonOperator"] == operator
    period = alarm.get("Period") or next(m["MetricStat"]["Period"] for m in alarm["Metrics"] if "MetricStat" in m)
    assert period == 60  # so "periods" are minutes


def test_it_sends_every_alarm_to_the_encrypted_topic(synth: Synth) -> None:
    (topic_id,) = _resources(synth.primary, "AWS::SNS::Topic")
    topic = _one(synth.primary, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic
    alarms = _resources(synth.primary, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 6 + 2  # the design's six (engine quota per region) and storage
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    engine = [d for d in _alarms(synth.primary) if d.startswith("Transcribe streams in")]
    assert len(engine) == 3  # one per Transcribe region
    replication = {d: a for d, a in _alarms(synth.primary).items() if "replicat" in d}
    assert sorted(a["MetricName"] for a in replication.values()) == [
        "OperationsFailedReplication",
        "ReplicationLatency",
    ]
    for alarm in replication.values():
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dims["RuleId"] == "to-replica-region"
        assert "voiceai-audio-replica-" in json.dumps(dims["DestinationBucket"])
    subscription = _one(synth.primary, "AWS::SNS::Subscription")
    assert subscription["Protocol"] == "email"


# --- cfn-lint ------------------------------------------------------------------


def test_it_passes_cfn_lint(synth: Synth) -> None:
    templates = sorted(str(p) for p in synth.outdir.glob("*.template.json"))
    assert len(templates) == 2
    # The pinned cfn-lint (infra/requirements.txt) in this interpreter, not
    # whichever one is first on PATH: rule sets differ between releases.
    # No --ignore-checks: the one known-harmless W3005 is suppressed on the
    # ECS service resource itself (see infra/voiceai_infra/service.py).
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--format", "parseable", *templates], capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_it_states_a_small_task_disk_and_the_body_limits_that_protect_it(synth: Synth) -> None:
    task = _one(synth.primary, "AWS::ECS::TaskDefinition")
    assert task["EphemeralStorage"] == {"SizeInGiB": 21}
    env = {e["Name"]: e["Value"] for e in _container(synth.primary)["Environment"]}
    read = _env_names_read_by_settings()
    assert {"DATA_UPLOAD_MAX_MEMORY_SIZE", "BATCH_UPLOAD_MAX_BYTES"} <= read
    assert int(env["DATA_UPLOAD_MAX_MEMORY_SIZE"]) <= 1_000_000
    assert int(env["BATCH_UPLOAD_MAX_BYTES"]) <= 200 * 1024 * 1024
    # HTTPS only behind the ALB: the settings turn HSTS and the redirect on from these two.
    assert (env["DEBUG"], env["BEHIND_TLS_PROXY"]) == ("0", "1")
