"""The ALB, the Fargate service, its roles and its auto-scaling.

WebSocket streams last a whole consultation, so the ALB keeps idle sockets
for an hour, pins a client to its task with a cookie (a resume lands where
its state is warm), and drains a task for ``deregistration_delay`` before
ECS sends SIGTERM. The task's own drain (fail /readyz, flush, ack, close
producers with 1012) then has ``stop_timeout`` before SIGKILL.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from .config import DeploymentConfig
from .data import DB_NAME, DB_USER, Cache, Database
from .network import APP_PORT, Network
from .storage import CLINIC_KEY_TAG, AudioStorage

# The custom metrics the app publishes (docs/operations.md, "CloudWatch").
METRIC_NAMESPACE = "VoiceAI"
METRIC_LIVE_CONNECTIONS = "LiveConnectionsPerTask"
METRIC_LIVE_SESSIONS = "LiveSessions"
METRIC_ENGINE_STREAMS = "EngineStreamsActive"
# Dimension every VoiceAI datapoint carries; its value is the stack name,
# handed to the app as CLOUDWATCH_METRICS_SERVICE.
METRIC_SERVICE_DIMENSION = "Service"

# The smallest task disk Fargate lets a stack state (GiB); it holds the image
# layers and the temp files of uploads in flight.
EPHEMERAL_STORAGE_GIB = 21
BATCH_UPLOAD_MAX_BYTES = 200 * 1024 * 1024
CPU_TARGET_PERCENT = 70
MEMORY_TARGET_PERCENT = 80
CONNECTIONS_PER_TASK_TARGET = 500
STICKINESS = Duration.hours(4)  # Transcribe's maximum stream length


def voiceai_metric(
    name: str, service: str, *, statistic: str, extra: dict[str, str] | None = None
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=METRIC_NAMESPACE,
        metric_name=name,
        dimensions_map={METRIC_SERVICE_DIMENSION: service, **(extra or {})},
        statistic=statistic,
        period=Duration.minutes(1),
    )


class WebService(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        network: Network,
        storage: AudioStorage,
        database: Database,
        cache: Cache,
        certificate_arn: str,
        domain_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.metrics_service = stack.stack_name

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=network.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,  # RunningTaskCount / DesiredTaskCount
            enable_fargate_capacity_providers=True,
        )

        self.app_secret = secretsmanager.Secret(
            self,
            "DjangoSecretKey",
            description="VoiceAI SECRET_KEY (Django signing: sessions, stream tokens)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_characters=" \"'\\`$"
            ),
        )

        task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="VoiceAI app: Transcribe streaming, its bucket, clinic keys, its own metrics",
        )
        self._grant_least_privilege(task_role, storage=storage, region=stack.region)
        self.task_role = task_role

        task_def = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=1024,
            memory_limit_mib=2048,
            # Stated, not left to the platform default: request bodies are
            # refused by size before they touch it (voiceai/body_limits.py;
            # the limits are set below), uploads spool here on their way to S3.
            ephemeral_storage_gib=EPHEMERAL_STORAGE_GIB,
            task_role=task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.THREE_MONTHS)
        repository = ecr.Repository.from_repository_name(self, "Repo", config.ecr_repository)
        origin = f"https://{domain_name}"
        self.environment = {
            # voiceai/settings.py reads each of these.
            "DEBUG": "0",
            "PORT": str(APP_PORT),
            "ALLOWED_HOSTS": domain_name,
            "CSRF_TRUSTED_ORIGINS": origin,
            "WS_ALLOWED_ORIGINS": origin,
            "BEHIND_TLS_PROXY": "1",
            "SECURE_COOKIES": "1",
            # No password in the URL: libpq takes it from PGPASSWORD (a secret below).
            "DATABASE_URL": (
                f"postgres://{DB_USER}@{database.instance.db_instance_endpoint_address}:"
                f"{database.instance.db_instance_endpoint_port}/{DB_NAME}?sslmode=require"
            ),
            "REDIS_URL": cache.url,
            "AWS_STORAGE_BUCKET_NAME": storage.bucket.bucket_name,
            "AWS_S3_REGION_NAME": stack.region,
            "TRANSCRIPTION_ENGINE": "aws",
            "AWS_TRANSCRIBE_REGIONS": ",".join(config.transcribe_regions),
            # Cluster-wide per region (transcription/engine_quota.py), so the
            # account's quota itself; the engine-quota alarm uses the same figure.
            "ENGINE_STREAMS_PER_REGION": str(config.transcribe_stream_quota),
            "LOG_LEVEL": "INFO",
            # Request bodies (voiceai/body_limits.py): refused by Content-Length
            # before anything is read, so an attacker can't fill the small disk.
            "DATA_UPLOAD_MAX_MEMORY_SIZE": str(1_000_000),
            "BATCH_UPLOAD_MAX_BYTES": str(BATCH_UPLOAD_MAX_BYTES),
            # For the CloudWatch publisher (docs/operations.md).
            "CLOUDWATCH_METRICS_NAMESPACE": METRIC_NAMESPACE,
            "CLOUDWATCH_METRICS_SERVICE": self.metrics_service,
            # The app's drain must finish before ECS's SIGKILL.
            "DRAIN_SECONDS": str(max(1, config.stop_timeout_seconds - 15)),
            # No FORWARDED_ALLOW_IPS: tasks sit in private subnets reachable
            # only from the ALB, and BEHIND_TLS_PROXY makes the app take the
            # last X-Forwarded-For hop (the address the ALB saw) for audit rows
            # (voiceai/client_ip.py). uvicorn trusting "*" would take the first,
            # client-chosen entry.
        }
        task_def.add_container(
            "app",
            image=ecs.ContainerImage.from_ecr_repository(repository, config.image_tag),
            port_mappings=[ecs.PortMapping(container_port=APP_PORT)],
            environment=self.environment,
            secrets={
                "SECRET_KEY": ecs.Secret.from_secrets_manager(self.app_secret),
                "PGPASSWORD": ecs.Secret.from_secrets_manager(database.secret, "password"),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="app", log_group=log_group),
            stop_timeout=Duration.seconds(config.stop_timeout_seconds),
        )
        self.task_definition = task_def

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=task_def,
            desired_count=config.min_tasks,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[network.app_sg],
            assign_public_ip=False,
            # Rolling deploys start the new tasks before stopping old ones,
            # and roll back on their own when the new ones never get healthy.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=Duration.seconds(60),
            # The design's 30 % Spot for cost, with the minimum always on demand.
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider="FARGATE", base=config.min_tasks, weight=7),
                ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=3),
            ],
            enable_ecs_managed_tags=True,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

        self.alb = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=network.vpc,
            internet_facing=True,
            security_group=network.alb_sg,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            idle_timeout=Duration.seconds(3600),  # the design: 3,600 s for live sockets
            drop_invalid_header_fields=True,
            deletion_protection=True,
        )
        self.alb.log_access_logs(storage.log_bucket, prefix="alb")
        self.alb.add_redirect(source_port=80, target_port=443)
        https = self.alb.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[acm.Certificate.from_certificate_arn(self, "Cert", certificate_arn)],
            ssl_policy=elbv2.SslPolicy.TLS13_13,
            open=False,  # the ALB security group already opens 443
        )
        self.target_group = https.add_targets(
            "App",
            port=APP_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service],
            # /readyz also fails when PostgreSQL or Redis is unreachable, i.e.
            # on every task at once during a Multi-AZ failover (1-2 min). ECS
            # replaces unhealthy tasks, so a short threshold would restart the
            # whole fleet and cut every live stream; 10 x 15 s rides a failover
            # out. A crashed process is replaced at once anyway (container exit).
            # Timeout 10 s: readyz runs up to three 2 s checks one after another.
            health_check=elbv2.HealthCheck(
                path="/readyz",
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(10),
                healthy_threshold_count=2,
                unhealthy_threshold_count=10,
            ),
            stickiness_cookie_duration=STICKINESS,
            deregistration_delay=Duration.seconds(config.deregistration_delay_seconds),
        )
        # /metrics names clinics and sizes; it is for the VPC's scraper, not the internet.
        https.add_action(
            "HideMetrics",
            priority=10,
            conditions=[elbv2.ListenerCondition.path_patterns(["/metrics", "/metrics/*"])],
            action=elbv2.ListenerAction.fixed_response(404, content_type="text/plain", message_body="Not Found"),
        )
        self.https_listener = https
        # cfn-lint W3005: CDK adds an explicit DependsOn from the service to
        # the listener rule/target group that a Ref already implies. It is
        # harmless (CloudFormation orders them either way), so it is ignored
        # for this one resource only, not for the whole template.
        cfn_service: ecs.CfnService = self.service.node.default_child  # type: ignore[assignment]
        cfn_service.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})

        self._autoscale(config)

    def _grant_least_privilege(self, role: iam.Role, *, storage: AudioStorage, region: str) -> None:
        # Streaming transcription has no resource type to scope to; the two
        # actions are all the engine adapter calls (HTTP/2 and WebSocket).
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TranscribeStreaming",
                actions=["transcribe:StartStreamTranscription", "transcribe:StartStreamTranscriptionWebSocket"],
                resources=["*"],
            )
        )
        # Objects only under {clinic_id}/{session_id}/ — never at the top level.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="SessionObjects",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                resources=[storage.bucket.arn_for_objects("*/*/*")],
            )
        )
        # Listing is needed for export and purge, and so that a missing
        # object answers 404 rather than 403.
        role.add_to_policy(
            iam.PolicyStatement(sid="ListBucket", actions=["s3:ListBucket"], resources=[storage.bucket.bucket_arn])
        )
        # SSE-KMS needs no more: GenerateDataKey to write (and for multipart
        # uploads), Decrypt to read.
        kms_actions = ["kms:Decrypt", "kms:GenerateDataKey"]
        via_s3 = {"kms:ViaService": f"s3.{region}.amazonaws.com"}
        role.add_to_policy(
            iam.PolicyStatement(
                sid="BucketDefaultKey",
                actions=kms_actions,
                resources=[storage.key.key_arn],
                conditions={"StringEquals": via_s3},
            )
        )
        # Per-clinic keys are created by operators after deployment
        # (Clinic.kms_key_id); the role may use a key only if it is tagged
        # as a clinic key, and only through S3.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ClinicKeys",
                actions=kms_actions,
                resources=[f"arn:{Aws.PARTITION}:kms:{region}:{Aws.ACCOUNT_ID}:key/*"],
                conditions={"StringEquals": via_s3, "Null": {f"aws:ResourceTag/{CLINIC_KEY_TAG}": "false"}},
            )
        )
        # PutMetricData has no resource type either; the namespace condition
        # keeps the app to its own metrics.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="OwnMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}},
            )
        )

    def _autoscale(self, config: DeploymentConfig) -> None:
        scaling = self.service.auto_scale_task_count(min_capacity=config.min_tasks, max_capacity=config.max_tasks)
        # Scale out fast (a task takes 45-60 s to start), in slowly: a
        # scale-in moves live consultations (the design: 10 min cool-down).
        scale_in = Duration.minutes(10)
        scale_out = Duration.minutes(2)
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=CPU_TARGET_PERCENT,
            scale_in_cooldown=scale_in,
            scale_out_cooldown=scale_out,
        )
        scaling.scale_on_memory_utilization(
            "Memory",
            target_utilization_percent=MEMORY_TARGET_PERCENT,
            scale_in_cooldown=scale_in,
            scale_out_cooldown=scale_out,
        )
        scaling.scale_to_track_custom_metric(
            "LiveConnections",
            metric=voiceai_metric(METRIC_LIVE_CONNECTIONS, self.metrics_service, statistic="Average"),
            target_value=CONNECTIONS_PER_TASK_TARGET,
            scale_in_cooldown=scale_in,
            scale_out_cooldown=scale_out,
        )
