"""CloudWatch alarms for the design's thresholds, all to one SNS topic.

The same thresholds as ops/alerts.yml (Prometheus, for the local cluster
and any self-hosted scraper); docs/operations.md lists both side by side.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from .config import DeploymentConfig
from .data import Cache, Database
from .service import METRIC_ENGINE_STREAMS, METRIC_LIVE_SESSIONS, WebService, voiceai_metric
from .storage import REPLICATION_RULE_ID, AudioStorage

LIVE_SESSIONS_MAX = 800
ERROR_RATE_MAX_PERCENT = 5
CPU_MAX_PERCENT = 70
MEMORY_MAX_PERCENT = 80
ENGINE_QUOTA_MAX_FRACTION = 0.8
REDIS_MEMORY_MAX_PERCENT = 80
# Replication Time Control's promise; beyond it the replica is no longer a
# 15-minute-old copy (docs/deployment.md, region loss).
REPLICATION_LATENCY_MAX_SECONDS = 15 * 60
DB_FREE_STORAGE_MIN_BYTES = 20 * 1024**3  # 20 % of the 100 GiB allocated

_ONE_MINUTE = Duration.minutes(1)


class Alarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        web: WebService,
        database: Database,
        cache: Cache,
        storage: AudioStorage,
    ) -> None:
        super().__init__(scope, construct_id)
        # CloudWatch must be allowed to use the topic's key, so not the AWS-managed SNS key.
        topic_key = kms.Key(self, "TopicKey", enable_key_rotation=True, description="VoiceAI alarm topic")
        topic_key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(self, "Topic", display_name="VoiceAI alarms", master_key=topic_key)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="TlsOnly",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"Bool": {"aws:SecureTransport": "false"}},
            )
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self._action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        service = web.service
        cluster_dims = {"ClusterName": web.cluster.cluster_name, "ServiceName": service.service_name}
        alb = web.alb.load_balancer_full_name

        # Critical: live sessions > 800 for 2 min (the cluster's sum: every
        # task publishes one datapoint per minute, see docs/operations.md).
        self._alarm(
            "LiveSessionsHigh",
            "Critical: more than 800 live sessions for 2 minutes",
            voiceai_metric(METRIC_LIVE_SESSIONS, web.metrics_service, statistic="Sum"),
            threshold=LIVE_SESSIONS_MAX,
            periods=2,
        )

        # Critical: 5xx error rate > 5 % for 5 min (target and ALB 5xx over all requests).
        def alb_metric(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/ApplicationELB",
                metric_name=name,
                dimensions_map={"LoadBalancer": alb},
                statistic="Sum",
                period=_ONE_MINUTE,
            )

        error_rate = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)",
            using_metrics={
                "requests": alb_metric("RequestCount"),
                "target5xx": alb_metric("HTTPCode_Target_5XX_Count"),
                "elb5xx": alb_metric("HTTPCode_ELB_5XX_Count"),
            },
            period=_ONE_MINUTE,
            label="5xx error rate (%)",
        )
        self._alarm(
            "ErrorRateHigh",
            "Critical: 5xx error rate above 5 % for 5 minutes",
            error_rate,
            threshold=ERROR_RATE_MAX_PERCENT,
            periods=5,
        )

        # Critical: a task down — fewer running than desired for 5 minutes
        # (a start takes 45-60 s, so a normal scale-out does not page).
        def insights(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="ECS/ContainerInsights",
                metric_name=name,
                dimensions_map=cluster_dims,
                statistic="Average",
                period=_ONE_MINUTE,
            )

        missing_tasks = cloudwatch.MathExpression(
            expression="desired - running",
            using_metrics={"desired": insights("DesiredTaskCount"), "running": insights("RunningTaskCount")},
            period=_ONE_MINUTE,
            label="tasks missing",
        )
        self._alarm(
            "TasksBelowDesired",
            "Critical: running tasks below desired for 5 minutes",
            missing_tasks,
            threshold=1,
            periods=5,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        self._alarm(
            "UnhealthyTargets",
            "Critical: a task fails /readyz for 3 minutes",
            web.target_group.metrics.unhealthy_host_count(statistic="Maximum", period=_ONE_MINUTE),
            threshold=1,
            periods=3,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )

        # Warning: CPU > 70 % and memory > 80 % for 10 minutes — auto-scaling
        # aims at the same figures, so this means it could not keep up.
        self._alarm(
            "CpuHigh",
            "Warning: service CPU above 70 % for 10 minutes",
            service.metric_cpu_utilization(statistic="Average", period=_ONE_MINUTE),
            threshold=CPU_MAX_PERCENT,
            periods=10,
        )
        self._alarm(
            "MemoryHigh",
            "Warning: service memory above 80 % for 10 minutes",
            service.metric_memory_utilization(statistic="Average", period=_ONE_MINUTE),
            threshold=MEMORY_MAX_PERCENT,
            periods=10,
        )

        # Warning: Transcribe streams at 80 % of the region's quota, per region.
        for region in config.transcribe_regions:
            self._alarm(
                f"EngineQuota-{region}",
                f"Warning: Transcribe streams in {region} at 80 % of the quota ({config.transcribe_stream_quota})",
                voiceai_metric(METRIC_ENGINE_STREAMS, web.metrics_service, statistic="Sum", extra={"Region": region}),
                threshold=ENGINE_QUOTA_MAX_FRACTION * config.transcribe_stream_quota,
                periods=3,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            )

        # Warning: storage (the design's "Storage 使用量 > 80 %").
        self._alarm(
            "DatabaseStorageLow",
            "Warning: PostgreSQL free storage below 20 %",
            database.instance.metric_free_storage_space(statistic="Minimum", period=Duration.minutes(5)),
            threshold=DB_FREE_STORAGE_MIN_BYTES,
            periods=3,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        )
        self._alarm(
            "RedisMemoryHigh",
            "Warning: Redis memory above 80 %",
            cloudwatch.Metric(
                namespace="AWS/ElastiCache",
                metric_name="DatabaseMemoryUsagePercentage",
                dimensions_map={"ReplicationGroupId": cache.group.ref},
                statistic="Maximum",
                period=Duration.minutes(5),
            ),
            threshold=REDIS_MEMORY_MAX_PERCENT,
            periods=2,
        )

        # Warning: the audio replica falls behind or fails (the region-loss RPO).
        def replication(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/S3",
                metric_name=name,
                dimensions_map={
                    "SourceBucket": storage.bucket.bucket_name,
                    "DestinationBucket": storage.replica_bucket_name,
                    "RuleId": REPLICATION_RULE_ID,
                },
                statistic=statistic,
                period=Duration.minutes(5),
            )

        self._alarm(
            "ReplicationLate",
            "Warning: audio replication to the replica region later than 15 minutes",
            replication("ReplicationLatency", "Maximum"),
            threshold=REPLICATION_LATENCY_MAX_SECONDS,
            periods=2,
        )
        self._alarm(
            "ReplicationFailing",
            "Warning: audio objects failing to replicate",
            replication("OperationsFailedReplication", "Sum"),
            threshold=0,
            periods=2,
        )

    def _alarm(
        self,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        periods: int,
        comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            comparison_operator=comparison,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms[name] = alarm
